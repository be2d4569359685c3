"""``deblur bench`` and the bench library on tiny fixtures in real dataset layouts."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deblur_cli import bench, datasets
from deblur_cli.cli import main
from deblur_cli.engine import Deblurrer
from deblur_cli.models import TINY, DBLRNet
from deblur_cli.weights import save_model

H, W = 24, 32


def textured(seed: int, count: int) -> list[np.ndarray]:
    """Smooth random RGB frames (uint8) that drift a little from frame to frame."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(40, 215, (H + 8, W + 8, 3)), (5, 5), 1.5)
    return [np.clip(base[k % 8 : k % 8 + H, 0:W], 0, 255).astype(np.uint8) for k in range(count)]


def write_rgb(folder: Path, name: str, rgb: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), np.ascontiguousarray(rgb[..., ::-1]))


def make_dvd(root: Path, videos: dict[str, int], offset: int = 0) -> Path:
    """DVD layout; blurry frames are the sharp ones plus ``offset`` (a known PSNR)."""
    for v, (video, count) in enumerate(videos.items()):
        for k, sharp in enumerate(textured(v, count)):
            base = root / "quantitative_datasets" / video
            write_rgb(base / "GT", f"{k:05d}.png", sharp)
            write_rgb(base / "input", f"{k:05d}.png", sharp + np.uint8(offset))
    return root


def make_kitti(root: Path, scenes: int = 2) -> Path:
    for c, camera in enumerate(("image_2", "image_3")):
        for scene in range(scenes):
            frames = textured(10 * c + scene, 3)
            for t, sharp in zip(("09", "10", "11"), frames, strict=True):
                name = f"{scene:06d}_{t}.png"
                write_rgb(root / "clean image" / camera, name, sharp)
                blurry = cv2.GaussianBlur(sharp, (5, 5), 1.0 + c)
                write_rgb(root / "blur image" / camera, name, blurry)
    return root


def identity_model() -> DBLRNet:
    """A TINY network whose last layer is zero: with the global residual it returns the centre
    frame exactly, so its scores must equal the input row's."""
    model = DBLRNet(TINY)
    with torch.no_grad():
        model.l35.weight.zero_()
        model.l35.bias.zero_()
    return model


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(DBLRNet(TINY), tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_scored_frames() -> None:
    assert bench.scored_frames(50, "all") == range(50)
    assert bench.scored_frames(50, "dbn") == range(30)
    assert bench.scored_frames(12, "dbn") == range(12)
    assert bench.scored_frames(50, "all", max_frames=4) == range(4)
    with pytest.raises(ValueError):
        bench.scored_frames(5, "paper")


@pytest.mark.parametrize("offset", [0, 4])
def test_input_row_known_psnr(tmp_path: Path, offset: int) -> None:
    seqs = datasets.dvd_sequences(make_dvd(tmp_path, {"a": 3, "b": 2}, offset), "all")
    result = bench.run_bench(seqs, {"input": None})
    average = result.groups("input")["average"]
    assert average is not None and average["frames"] == 5
    if offset == 0:
        assert average["psnr_rgb"] == bench.PSNR_CAP and average["ssim_rgb"] == pytest.approx(1.0)
        assert average["flicker"] == 0.0
    else:
        assert average["psnr_rgb"] == pytest.approx(20 * math.log10(255 / offset), abs=1e-9)
        # A constant RGB offset d shifts Y by exactly d as well (the luma weights sum to 1).
        assert average["psnr_y"] == pytest.approx(20 * math.log10(255 / offset), abs=1e-6)
        assert 0.9 < average["ssim_rgb"] < 1.0
    assert result.speed == {}


def test_identity_model_reproduces_the_input_and_is_timed(tmp_path: Path) -> None:
    seqs = datasets.dvd_sequences(make_dvd(tmp_path, {"a": 4}, offset=0), "all")
    # Blur the inputs so that scores are finite and meaningful.
    for path in seqs[0].blurry:
        cv2.imwrite(str(path), cv2.GaussianBlur(cv2.imread(str(path)), (5, 5), 1.2))
    engine = Deblurrer(identity_model(), device="cpu", precision="fp32")
    result = bench.run_bench(seqs, {"input": None, "same": engine}, max_frames=3)
    (base,), (same,) = result.sequence_scores("input"), result.sequence_scores("same")
    assert base.frames == same.frames == 3
    assert base.psnr_rgb is not None and base.psnr_rgb < 45
    for name in bench.SCORE_FIELDS:
        assert getattr(same, name) == pytest.approx(getattr(base, name), abs=1e-9)
    speed = result.speed["same"]
    # Three scored frames plus two context frames after them (window 5) went through the net.
    assert speed.frames == 4 and speed.pixels == 4 * H * W
    assert speed.seconds > 0 and speed.fps > 0 and speed.device == "cpu"
    expected = 2 * DBLRNet(TINY).macs_per_pixel() * speed.pixels / speed.seconds / 1e9
    assert speed.gflops == pytest.approx(expected)
    assert "run_windows" not in vars(engine)  # the timing wrapper is removed


def test_kitti_left_right_and_edges(tmp_path: Path, tiny_model_file: Path) -> None:
    from deblur_cli.weights import load_model

    seqs = datasets.kitti_sequences(make_kitti(tmp_path))
    engine = Deblurrer(load_model(str(tiny_model_file)), device="cpu", precision="fp32")
    result = bench.run_bench(seqs, {"input": None, "tiny": engine})
    assert result.is_kitti
    assert all(s.frames == 3 for s in result.scores)  # 3-frame sequences, 5-frame window
    groups = result.groups("input")
    left, right = groups["left"], groups["right"]
    assert left is not None and right is not None
    # The right camera was blurred more in the fixture, so it scores lower.
    assert left["psnr_rgb"] > right["psnr_rgb"]
    names = [s.sequence for s in result.sequence_scores("input")]
    expected = [s.psnr_rgb for s in result.sequence_scores("input") if s.sequence < "image_3"]
    assert left["psnr_rgb"] == pytest.approx(np.mean(expected))
    assert names[0] == "image_2/000000"


def test_flicker_sign(tmp_path: Path) -> None:
    """Ground truth that drifts and an input that does not: the input is smoother (< 0)."""
    still = textured(0, 1)[0]
    for k, sharp in enumerate(textured(0, 4)):
        write_rgb(tmp_path / "blur", f"{k}.png", still)
        write_rgb(tmp_path / "sharp", f"{k}.png", sharp)
    result = bench.run_bench(datasets.folder_sequences(tmp_path), {"input": None})
    (score,) = result.scores
    assert score.flicker is not None and score.flicker < 0


def test_json_and_csv_schema(tmp_path: Path) -> None:
    seqs = datasets.dvd_sequences(make_dvd(tmp_path / "d", {"a": 2}, offset=3), "all")
    result = bench.run_bench(seqs, {"input": None}, protocol="dbn", crop_border=2)
    bench.write_json(result, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema"] == 1
    assert set(data) == {
        "schema",
        "generator",
        "dataset",
        "root",
        "protocol",
        "crop_border",
        "models",
    }
    assert data["protocol"] == "dbn" and data["crop_border"] == 2
    (model,) = data["models"]
    assert set(model) == {"name", "spec", "speed", "average", "left", "right", "sequences"}
    assert set(model["average"]) == {"frames", *bench.SCORE_FIELDS}
    assert set(model["sequences"][0]) == {"sequence", "frames", *bench.SCORE_FIELDS}
    assert model["average"]["psnr_rgb"] == pytest.approx(20 * math.log10(255 / 3), abs=1e-5)

    bench.write_csv(result, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == bench.CSV_FIELDS
    assert [r["sequence"] for r in rows] == ["a", "AVERAGE"]


def test_perfect_frames_are_json_numbers(tmp_path: Path) -> None:
    seqs = datasets.dvd_sequences(make_dvd(tmp_path, {"a": 2}, offset=0), "all")
    text = json.dumps(bench.run_bench(seqs, {"input": None}).to_dict(), allow_nan=False)
    assert '"psnr_rgb": 100.0' in text


def test_synthetic_set_is_built_once(tmp_path: Path) -> None:
    spec = bench.SyntheticSpec(psf_clips=1, average_clips=1, frames=3, height=48, width=64)
    root = tmp_path / "synthetic"
    seqs = bench.synthetic_sequences(root, spec)
    assert len(seqs) == 2 and all(len(s) == 3 for s in seqs)
    assert {s.name.split("_")[1] for s in seqs} == {"psf", "average"}
    stamp = (root / "spec.json").stat().st_mtime_ns
    first = datasets.load_luma(seqs[0].blurry[0])
    again = bench.synthetic_sequences(root, spec)
    assert (root / "spec.json").stat().st_mtime_ns == stamp
    assert [s.name for s in again] == [s.name for s in seqs]
    np.testing.assert_array_equal(datasets.load_luma(again[0].blurry[0]), first)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_bench_table_files_and_crops(tmp_path: Path, tiny_model_file: Path) -> None:
    root = make_dvd(tmp_path / "dvd", {"IMG_0030": 3, "IMG_0100": 2}, offset=5)
    out = tmp_path / "out"
    args = ["bench", "--dataset", "dvd", "--root", str(root), "--model", str(tiny_model_file)]
    args += ["--model", str(tiny_model_file), "--precision", "fp32", "--device", "cpu"]
    args += ["--json", str(out / "r.json"), "--csv", str(out / "r.csv"), "--save", str(out / "c")]
    out.mkdir()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for text in ("IMG_0030", "PSNR", "input", "tiny-2", "ms/frame", "fp32"):
        assert text in result.output
    assert "IMG_0100" not in result.output  # not a test video
    data = json.loads((out / "r.json").read_text())
    assert [m["name"] for m in data["models"]] == ["input", "tiny", "tiny-2"]
    assert data["models"][1]["speed"]["precision"] == "fp32"
    assert data["models"][1]["spec"] == str(tiny_model_file)
    crops = sorted(p.name for p in (out / "c").iterdir())
    assert crops == ["IMG_0030_tiny-2_f0001.png", "IMG_0030_tiny_f0001.png"]
    panel = cv2.imread(str(out / "c" / crops[0]))
    assert panel.shape == (H, 3 * W + 8, 3)


def test_cli_default_root_from_env(
    tmp_path: Path, tiny_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_kitti(tmp_path / "kitti", scenes=1)
    monkeypatch.setenv("DEBLUR_DATA", str(tmp_path))
    args = ["bench", "--dataset", "kitti", "--model", str(tiny_model_file), "--precision", "fp32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "PSNR-LEFT" in result.output and "PSNR-RIGHT" in result.output


@pytest.mark.parametrize("dataset", ["dvd", "kitti", "gopro"])
def test_cli_missing_dataset_is_one_line(
    tmp_path: Path, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEBLUR_DATA", str(tmp_path))
    result = CliRunner().invoke(main, ["bench", "--dataset", dataset, "--no-baseline"])
    assert result.exit_code == 7
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert datasets.EXPECTED_LAYOUT[dataset] in lines[0]
    assert "CVPR 2017" in lines[0] and "DEBLUR_DATA" in lines[0]
    assert str(tmp_path / dataset) in lines[0]


def test_dbn_protocol_scores_30_frames_with_true_neighbours(tmp_path: Path) -> None:
    seqs = datasets.dvd_sequences(make_dvd(tmp_path, {"long": 35}, offset=2), "all")
    engine = Deblurrer(identity_model(), device="cpu", precision="fp32")
    result = bench.run_bench(seqs, {"input": None, "same": engine}, protocol="dbn")
    assert [s.frames for s in result.scores] == [30, 30]
    # Frames 0..29 are scored; frames 30 and 31 are read as context for frames 28 and 29.
    assert result.speed["same"].frames == 32
    assert [i for i, _, _ in bench.restore(seqs[0], None, range(30))] == list(range(30))
