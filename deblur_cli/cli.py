"""The ``deblur`` command: a click group whose subcommands live in ``deblur_cli.commands``.

This module only wires things up and turns library errors into one-line messages with distinct
exit codes; all work is done by the library API.
"""

from __future__ import annotations

import sys

import click

from deblur_cli.commands.bench import bench_command
from deblur_cli.commands.frames import frames_command
from deblur_cli.commands.preview import preview_command
from deblur_cli.commands.synth import synth
from deblur_cli.commands.train import export_command, train_command
from deblur_cli.commands.video import video_command
from deblur_cli.errors import DeblurError


class DeblurGroup(click.Group):
    """Reports DeblurError as ``error: ...`` on one line (traceback only with --debug)."""

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


COMMANDS = (
    video_command,
    frames_command,
    preview_command,
    synth,
    train_command,
    export_command,
    bench_command,
)
for command in COMMANDS:
    main.add_command(command)
