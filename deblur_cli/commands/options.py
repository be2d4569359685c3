"""Options shared by every subcommand that runs a model (video, frames, bench)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from deblur_cli.engine import DEVICES, PRECISIONS, Deblurrer
from deblur_cli.weights import AUTO_MODEL, DEFAULT_MODEL, load_model

_ENGINE_OPTIONS = [
    click.option(
        "--model",
        "-m",
        default=AUTO_MODEL,
        show_default=True,
        help="Shipped name (dblrnet, dblrgan, dblrnet-fast), a .safetensors path, "
        "or hf://owner/repo/file.safetensors. auto: dblrnet-fast (the best shipped model, "
        "on a CPU and on CUDA).",
    ),
    click.option(
        "--device",
        type=click.Choice(DEVICES),
        default="auto",
        show_default=True,
        help="auto picks CUDA, then MPS, then the CPU.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32.",
    ),
    click.option(
        "--batch",
        "batch_size",
        type=click.IntRange(0, 256),
        default=0,
        help="Windows per forward pass (0: 1 on CPU, 4 on CUDA).",
    ),
    click.option(
        "--tile",
        type=click.IntRange(min=32),
        default=None,
        help="Process frames in tiles of this many pixels (with overlap); "
        "default: tile only when a frame would not fit the memory budget.",
    ),
    click.option(
        "--compile",
        "compile_model",
        is_flag=True,
        help="torch.compile the network (after the first 64 frames, so short clips never pay "
        "the compile time). Measured no faster than the default on CPUs with bf16.",
    ),
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="CPU threads for the network (default: one per physical core).",
    ),
]


strength_option = click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="How much of the network's change to keep: output luma = input + S x (restored - "
    "input); 0 gives back the input's luma exactly.",
)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --model/--device/--precision/--batch/--tile/--compile/--threads to a command."""
    for option in reversed(_ENGINE_OPTIONS):
        command = option(command)
    return command


def chosen_model(model: str) -> str:
    """``--model auto`` -> the default shipped model; any other value as it is."""
    return DEFAULT_MODEL if model == AUTO_MODEL else model


def make_engine(
    model: str,
    device: str,
    precision: str,
    batch_size: int,
    tile: int | None,
    compile_model: bool = False,
    threads: int | None = None,
) -> Deblurrer:
    """Load the model named on the command line (already through :func:`chosen_model`) and
    prepare it for inference."""
    return Deblurrer(
        load_model(model),
        device=device,
        precision=precision,
        batch_size=batch_size,
        tile=tile,
        compile=compile_model,
        threads=threads,
    )
