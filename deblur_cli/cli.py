"""The ``deblur`` command: a click group whose subcommands live in ``deblur_cli.commands``.

This module only wires things up and turns library errors into one-line messages with distinct
exit codes; all work is done by the library API.
"""

from __future__ import annotations

import importlib
import sys

import click

from deblur_cli.errors import DeblurError

# Subcommand name -> module and attribute, imported only when the command runs (or --help
# lists them all): ``deblur train`` needs no PyAV, so it runs on a GPU machine that lacks it.
COMMANDS = {
    "video": ("deblur_cli.commands.video", "video_command"),
    "frames": ("deblur_cli.commands.frames", "frames_command"),
    "preview": ("deblur_cli.commands.preview", "preview_command"),
    "synth": ("deblur_cli.commands.synth", "synth"),
    "train": ("deblur_cli.commands.train", "train_command"),
    "export": ("deblur_cli.commands.train", "export_command"),
    "bench": ("deblur_cli.commands.bench", "bench_command"),
}


class DeblurGroup(click.Group):
    """Loads subcommands lazily; reports DeblurError as ``error: ...`` on one line (traceback
    only with --debug)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeblurError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=DeblurGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="deblur-cli")
def main(debug: bool) -> None:
    """Deblur videos and image sequences with DBLRNet / DBLRGAN (Zhang et al., TIP 2018)."""
