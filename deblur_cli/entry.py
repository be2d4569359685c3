"""The ``deblur`` console script: imports the CLI lazily so Ctrl-C during start-up exits cleanly.

Importing torch takes a second or two; a Ctrl-C in that window would otherwise print a traceback
from deep inside the import machinery.
"""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from deblur_cli.cli import main
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    main()
