"""`deblur frames` end to end on image folders written in the test, with a tiny model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deblur_cli.api import deblur_images
from deblur_cli.color import rgb_to_ycbcr
from deblur_cli.engine import Deblurrer
from deblur_cli.frames import merge_image, natural_key, read_image, split_image, write_image
from deblur_cli.weights import load_model


def run_cli(*args: object) -> object:
    from deblur_cli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def engine_for(model_args: list[str]) -> Deblurrer:
    return Deblurrer(load_model(model_args[1]), device="cpu", precision="fp32")


def texture(index: int, height: int = 40, width: int = 56, channels: int = 3) -> np.ndarray:
    """Float image in [0.1, 0.9]: moving stripes plus noise, distinct per frame."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.3 * np.sin((xx + 2 * index) / 3.0) * np.cos(yy / 5.0)
    image = base[..., None] + 0.1 * rng.standard_normal((height, width, channels))
    return np.clip(image, 0.1, 0.9)[..., 0] if channels == 1 else np.clip(image, 0.1, 0.9)


def as_dtype(image: np.ndarray, dtype: type) -> np.ndarray:
    scale = 255 if dtype == np.uint8 else 65535
    return np.rint(image * scale).astype(dtype)


def write_folder(folder: Path, names: list[str], **kind: object) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, name in enumerate(names):
        image = as_dtype(texture(index, **kind), np.uint8)
        write_image(folder / name, image)
        images.append(read_image(folder / name))  # what the file holds (lossy formats too)
    return images


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_natural_key_orders_numbers_as_numbers():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b.png", "a.png"]
    assert sorted(names, key=natural_key) == [
        "a.png",
        "Frame1.png",
        "frame2.png",
        "frame2b.png",
        "frame10.png",
    ]


def test_names_count_and_order_are_kept(tmp_path, model_args):
    """Output equals the engine run on the frames in natural order (not in name order)."""
    names = [f"frame{i}.png" for i in range(1, 12)]
    images = write_folder(tmp_path / "shots", names)

    result = run_cli("frames", tmp_path / "shots", *model_args)

    assert result.exit_code == 0, result.output
    out = tmp_path / "shots_deblurred"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    expected = list(deblur_images(images, engine_for(model_args)))
    for name, wanted in zip(names, expected, strict=True):
        np.testing.assert_array_equal(read_image(out / name), wanted)
    assert not np.array_equal(read_image(out / names[0]), images[0])
    assert "11 frames in" in result.output and "\x1b" not in result.output


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("deep.png", lambda i: as_dtype(texture(i), np.uint16)),
        ("gray.png", lambda i: as_dtype(texture(i, channels=1), np.uint8)),
        ("alpha.png", lambda i: as_dtype(texture(i, channels=4), np.uint8)),
        ("photo.jpg", lambda i: as_dtype(texture(i), np.uint8)),
        ("pic.webp", lambda i: as_dtype(texture(i), np.uint8)),
        ("scan.tif", lambda i: as_dtype(texture(i), np.uint16)),
        ("old.bmp", lambda i: as_dtype(texture(i, channels=1), np.uint8)),
    ],
)
def test_formats_keep_depth_channels_and_alpha(tmp_path, model_args, name, make):
    folder = tmp_path / "in"
    folder.mkdir()
    stem, suffix = name.split(".")
    for index in range(3):
        write_image(folder / f"{stem}{index}.{suffix}", make(index))
    originals = [read_image(folder / f"{stem}{i}.{suffix}") for i in range(3)]

    result = run_cli("frames", folder, "-o", tmp_path / "out", *model_args)

    assert result.exit_code == 0, result.output
    for index, original in enumerate(originals):
        restored = read_image(tmp_path / "out" / f"{stem}{index}.{suffix}")
        assert restored.dtype == original.dtype and restored.shape == original.shape
        if original.ndim == 3 and original.shape[2] == 4:
            np.testing.assert_array_equal(restored[..., 3], original[..., 3])
    if suffix == "png" and originals[0].dtype == np.uint16:
        assert cv2.imread(str(tmp_path / "out" / f"{stem}0.png"), -1).dtype == np.uint16


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_split_merge_round_trip_is_exact(dtype):
    """Chroma and alpha are carried exactly: unchanged luma gives back the same pixels."""
    image = as_dtype(texture(3, channels=4), dtype)
    luma, parts = split_image(image)
    np.testing.assert_array_equal(merge_image(luma, parts), image)
    gray = as_dtype(texture(4, channels=1), dtype)
    np.testing.assert_array_equal(merge_image(*split_image(gray)), gray)


def test_chroma_is_kept_when_luma_changes():
    image = texture(5).astype(np.float32)
    luma, parts = split_image(image)
    brighter = merge_image(luma + 0.05, parts)
    _, cb, cr = rgb_to_ycbcr(brighter)
    np.testing.assert_allclose(cb, parts.chroma[0], atol=1e-5)
    np.testing.assert_allclose(cr, parts.chroma[1], atol=1e-5)


def test_mixed_sizes_run_as_separate_sequences(tmp_path, model_args):
    folder = tmp_path / "mixed"
    big = write_folder(folder, ["f1.png", "f2.png", "f3.png"])
    small = write_folder(folder / "tmp", ["f4.png", "f5.png"], height=24, width=32)
    for path in (folder / "tmp").iterdir():
        path.rename(folder / path.name)
    (folder / "tmp").rmdir()

    result = run_cli("frames", folder, *model_args)

    assert result.exit_code == 0, result.output
    engine = engine_for(model_args)
    expected = [*deblur_images(big, engine), *deblur_images(small, engine)]
    for index, wanted in enumerate(expected, start=1):
        np.testing.assert_array_equal(
            read_image(tmp_path / "mixed_deblurred" / f"f{index}.png"), wanted
        )


def test_tiled_equals_untiled(tmp_path, model_args):
    write_folder(tmp_path / "in", ["a1.png", "a2.png", "a3.png"], height=64, width=80)
    assert run_cli("frames", tmp_path / "in", "-o", tmp_path / "whole", *model_args).exit_code == 0
    tiled = run_cli(
        "frames", tmp_path / "in", "-o", tmp_path / "tiles", "--tile", "32", *model_args
    )
    assert tiled.exit_code == 0, tiled.output
    for name in ("a1.png", "a2.png", "a3.png"):
        np.testing.assert_array_equal(
            read_image(tmp_path / "whole" / name), read_image(tmp_path / "tiles" / name)
        )


def test_unreadable_file_is_named_or_skipped(tmp_path, model_args):
    folder = tmp_path / "in"
    write_folder(folder, ["f1.png", "f2.png", "f3.png"])
    (folder / "f2b.png").write_bytes(b"not a png")

    result = run_cli("frames", folder, *model_args)
    assert result.exit_code == 4 and "f2b.png" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

    result = run_cli("frames", folder, "--skip-unreadable", *model_args)
    assert result.exit_code == 0, result.output
    assert "warning: skipped f2b.png" in result.output
    assert sorted(p.name for p in (tmp_path / "in_deblurred").iterdir()) == [
        "f1.png",
        "f2.png",
        "f3.png",
    ]


def test_existing_outputs_need_overwrite_and_other_files_survive(tmp_path, model_args):
    write_folder(tmp_path / "in", ["f1.png", "f2.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "f2.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")

    result = run_cli("frames", tmp_path / "in", "-o", out, *model_args)
    assert result.exit_code == 5 and "--overwrite" in result.output
    assert (out / "f2.png").read_bytes() == b"old" and sorted(p.name for p in out.iterdir()) == [
        "f2.png",
        "notes.txt",
    ]

    result = run_cli("frames", tmp_path / "in", "-o", out, "--overwrite", *model_args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["f1.png", "f2.png", "notes.txt"]
    assert read_image(out / "f2.png").shape == (40, 56, 3)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", 3, "no such folder"),
        ("file", 3, "is not a folder"),
        ("empty", 4, "no images"),
        ("same", 5, "is the input folder"),
    ],
)
def test_user_errors(tmp_path, model_args, case, code, message):
    folder = tmp_path / "in"
    write_folder(folder, ["f1.png"])
    args: list[object] = {
        "missing": [tmp_path / "nope"],
        "file": [folder / "f1.png"],
        "empty": [tmp_path / "void"],
        "same": [folder, "-o", folder],
    }[case]
    (tmp_path / "void").mkdir()
    before = digest(folder)

    result = run_cli("frames", *args, *model_args)

    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert digest(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "void"]
