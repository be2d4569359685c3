"""``python -m deblur_cli``: the same entry point as the ``deblur`` command."""

from deblur_cli.entry import run

if __name__ == "__main__":
    run()
