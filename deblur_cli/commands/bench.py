"""``deblur bench``: quality and speed tables, a thin wrapper over :mod:`deblur_cli.bench`."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from deblur_cli import bench, datasets
from deblur_cli.engine import DEVICES, PRECISIONS, Deblurrer
from deblur_cli.errors import DatasetError
from deblur_cli.weights import HF_PREFIX, MODELS, load_model, resolve_weights, shipped_weights_dir

DATASETS = ("kitti", "dvd", "gopro", "folder", "synthetic")
PER_SEQUENCE_ROWS = 12


def model_label(spec: str, taken: set[str]) -> str:
    """A short row name: the shipped name, or the file stem of a path / hf:// spec."""
    base = spec if spec in MODELS else Path(spec.removeprefix(HF_PREFIX)).stem
    label, n = base, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label


def installed_models() -> list[str]:
    return [name for name, e in MODELS.items() if (shipped_weights_dir() / e.filename).is_file()]


def load_sequences(
    dataset: str, root: Path | None, split: str, limit: int | None
) -> tuple[list[datasets.Sequence], Path]:
    """Find the dataset (``--root``, else the default place) and read its sequences."""
    where = Path(root).expanduser() if root else datasets.default_data_root(dataset)
    try:
        if dataset == "synthetic":
            sequences = bench.synthetic_sequences(where)
        else:
            sequences = datasets.find_sequences(dataset, where, split)
    except DatasetError as exc:
        if root is None:
            hint = "pass --root PATH or set DEBLUR_DATA to the folder holding it"
            raise DatasetError(f"{exc} ({hint})") from exc
        raise
    return sequences[:limit] if limit else sequences, where


def fmt(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def quality_table(result: bench.BenchResult) -> Table:
    """Averages over sequences; PSNR-LEFT/RIGHT columns for Blurred KITTI (Table IV)."""
    kitti = result.is_kitti
    table = Table(title="Average over sequences: 8-bit RGB and Y")
    table.add_column("model")
    names = ["PSNR", "SSIM", "PSNR-Y", "SSIM-Y"]
    names += ["PSNR-LEFT", "PSNR-RIGHT"] if kitti else []
    for name in [*names, "flicker", "sharpness"]:
        table.add_column(name, justify="right")
    for model in result.models:
        groups = result.groups(model)
        avg = groups["average"] or {}
        row = [model, fmt(avg["psnr_rgb"]), fmt(avg["ssim_rgb"], 4)]
        row += [fmt(avg["psnr_y"]), fmt(avg["ssim_y"], 4)]
        if kitti:
            row += [fmt((groups[g] or {}).get("psnr_rgb")) for g in ("left", "right")]
        row += [fmt(avg["flicker"], 3), fmt(avg["sharpness"])]
        table.add_row(*row)
    return table


def speed_table(result: bench.BenchResult) -> Table:
    table = Table(title="Speed (network only)")
    for name in ("model", "device", "precision", "ms/frame", "frames/s", "GFLOP/s"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for model, speed in result.speed.items():
        table.add_row(
            model,
            speed.device,
            speed.precision,
            fmt(speed.ms_per_frame, 1),
            fmt(speed.fps),
            fmt(speed.gflops, 1),
        )
    return table


def sequence_table(result: bench.BenchResult) -> Table:
    """Per-sequence PSNR/SSIM (RGB), one column pair per model, like the paper's Table III."""
    table = Table(title="Per sequence: PSNR / SSIM (8-bit RGB)")
    table.add_column("sequence")
    table.add_column("frames", justify="right")
    for model in result.models:
        table.add_column(model, justify="right")
    by_model = {m: {s.sequence: s for s in result.sequence_scores(m)} for m in result.models}
    for name in dict.fromkeys(s.sequence for s in result.scores):
        first = by_model[result.models[0]][name]
        cells = [
            f"{fmt(s.psnr_rgb)} / {fmt(s.ssim_rgb, 4)}"
            for s in (by_model[m][name] for m in result.models)
        ]
        table.add_row(name, str(first.frames), *cells)
    return table


@click.command("bench")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    required=True,
    help="Layout of the test set; 'synthetic' is built locally (no download).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset folder (default: $DEBLUR_DATA/<dataset>, else the per-user data folder, "
    "e.g. ~/.local/share/deblur/<dataset>).",
)
@click.option(
    "--split",
    type=click.Choice(["test", "train", "all"]),
    default="test",
    show_default=True,
    help="dvd: Su et al.'s 10 test videos / the others / all; gopro: test/train/all.",
)
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Repeatable. Shipped name, .safetensors path or hf://... "
    "Default: every installed shipped model.",
)
@click.option("--no-baseline", is_flag=True, help="Leave out the blurry-input row.")
@click.option(
    "--protocol",
    type=click.Choice(bench.PROTOCOLS),
    default="all",
    show_default=True,
    help="Frames scored: all, or dbn = the first 30 frames of each sequence.",
)
@click.option(
    "--crop-border",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Pixels ignored on every side before scoring.",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N sequences.")
@click.option(
    "--max-frames", type=click.IntRange(1), default=None, help="At most N scored frames each."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write all results as JSON (schema 1, see docs/BENCH.md).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one row per (model, sequence) plus AVERAGE rows as CSV.",
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write blurry | output | sharp crops (PNG) of each sequence's middle frame here.",
)
@click.option(
    "--per-sequence/--no-per-sequence",
    default=None,
    help=f"Per-sequence table (default: when at most {PER_SEQUENCE_ROWS} sequences).",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(0, 256), default=0)
@click.option("--tile", type=click.IntRange(min=32), default=None)
def bench_command(
    dataset: str,
    root: Path | None,
    split: str,
    models: tuple[str, ...],
    no_baseline: bool,
    protocol: str,
    crop_border: int,
    limit: int | None,
    max_frames: int | None,
    json_path: Path | None,
    csv_path: Path | None,
    save_dir: Path | None,
    per_sequence: bool | None,
    device: str,
    precision: str,
    batch_size: int,
    tile: int | None,
) -> None:
    """Score models on a test set: PSNR, SSIM, flicker, sharpness and speed.

    \b
    Quality is measured on the final 8-bit RGB output (restored Y recombined with the blurry
    frame's Cb/Cr, clipped and rounded) against the 8-bit ground truth, and on its BT.601 Y:
      PSNR   10 log10(255^2 / MSE) per frame (identical frames count as 100 dB)
      SSIM   Wang et al. 2004, 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03;
             RGB: mean of the three channels
      flicker   mean |out_t - out_t-1| minus mean |gt_t - gt_t-1| (8-bit units; > 0 = jumpier)
      sharpness mean gradient magnitude of the output's Y (no reference)
    Per-frame values are averaged per sequence; the average row is the mean over sequences
    (Blurred KITTI also gets PSNR-LEFT/RIGHT = image_2/image_3). Frames: all (default) or
    --protocol dbn (the first 30 of each). Edge frames repeat when a window leaves the
    sequence. Speed counts network time only. See docs/BENCH.md.

    \b
    Layouts (--root, or $DEBLUR_DATA/<dataset>, or ~/.local/share/deblur/<dataset>):
      dvd    quantitative_datasets/<video>/{input,GT}/*.jpg     (Su et al. CVPR 2017)
      gopro  {train,test}/<seq>/{blur,sharp}/*.png              (Nah et al. CVPR 2017)
      kitti  'blur image'/{image_2,image_3}/%06d_{09,10,11}.png + 'clean image'/...
             (Pan et al. CVPR 2017)
      folder <seq>/{blur|blurry|input} + <seq>/{sharp|gt|GT}
      synthetic  built once from bundled validation sources (no download)
    """
    console = Console()
    if not console.is_terminal:  # files and pipes: do not squeeze tables into 80 columns
        console = Console(width=max(console.width, 140))
    sequences, where = load_sequences(dataset, root, split, limit)
    specs = list(models) or installed_models()
    if not specs:
        console.print("[yellow]no shipped model is installed: scoring the input only[/]")
    taken: set[str] = set()
    engines: dict[str, Deblurrer | None] = {} if no_baseline else {bench.INPUT_ROW: None}
    taken.update(engines)
    spec_of: dict[str, str] = {}
    for spec in specs:
        label = model_label(spec, taken)
        engines[label] = Deblurrer(load_model(spec), device, precision, batch_size, tile)
        spec_of[label] = str(resolve_weights(spec)) if not spec.startswith(HF_PREFIX) else spec
    if not engines:
        raise click.UsageError("nothing to score: give --model or drop --no-baseline")

    frames = sum(len(bench.scored_frames(len(s), protocol, max_frames)) for s in sequences)
    console.print(
        f"{dataset} at {where}: {len(sequences)} sequences, {frames} scored frames per model, "
        f"protocol {protocol}, border {crop_border}"
    )
    with console.status("") as status:

        def on_sequence(model: str, sequence: str) -> None:
            status.update(f"{model}: {sequence}")

        result = bench.run_bench(
            sequences,
            engines,
            protocol=protocol,
            save_dir=save_dir,
            crop_border=crop_border,
            max_frames=max_frames,
            on_sequence=on_sequence,
        )
    result.dataset, result.root, result.specs = dataset, str(where), spec_of

    show_sequences = (
        per_sequence if per_sequence is not None else len(sequences) <= PER_SEQUENCE_ROWS
    )
    if show_sequences:
        console.print(sequence_table(result))
    console.print(quality_table(result))
    if result.speed:
        console.print(speed_table(result))
    if json_path:
        bench.write_json(result, json_path)
        console.print(f"wrote {json_path}")
    if csv_path:
        bench.write_csv(result, csv_path)
        console.print(f"wrote {csv_path}")
    if save_dir:
        console.print(f"crops in {save_dir}")
