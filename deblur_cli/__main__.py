"""``python -m deblur_cli``: the same entry point as the ``deblur`` command."""

from deblur_cli.cli import main

if __name__ == "__main__":
    main()
