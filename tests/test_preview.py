"""Issue 15: `deblur preview`, `--strength`, and the time estimate printed before a run.

Real encoded clips and real frame folders through the real CLI, with the tiny model; the
faster-model suggestion is checked with the shipped models on a small frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_audio_only, make_clip, pattern_planes, planes_to_frame, read_clip

from deblur_cli.api import deblur_images
from deblur_cli.engine import Deblurrer
from deblur_cli.estimate import estimate_run, format_duration
from deblur_cli.frames import read_image, write_image
from deblur_cli.preview import compose, edge_region, preview, sharpness
from deblur_cli.weights import load_model

WIDTH, HEIGHT = 64, 48
BLURRED = 3  # the frame blurred on purpose
LOSSLESS = ["--crf", "0", "--preset", "ultrafast"]


def run_cli(*args: object):
    from deblur_cli.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def blurred_planes(index: int) -> list[np.ndarray]:
    """The conftest texture, with frame ``BLURRED``'s luma blurred as camera shake would."""
    planes = pattern_planes(index, WIDTH, HEIGHT)
    if index == BLURRED:
        planes[0] = cv2.GaussianBlur(planes[0], (0, 0), 2.5)
    return planes


def clip_with_one_blurred_frame(path: Path, frames: int = 7) -> Path:
    """A lossless H.264 clip at 25 fps whose frame ``BLURRED`` (0.12 s) is the blurry one."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for index in range(frames):
            frame = planes_to_frame(blurred_planes(index), "yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def rgb_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def check_halves(png: Path, before: np.ndarray) -> None:
    """2H x 2W; the top-left quarter is the input frame, the top-right one its restoration."""
    image = read_image(png)
    height, width = before.shape[:2]
    assert image.shape == (2 * height, 2 * width, 3)
    left, right = image[:height, :width].astype(int), image[:height, width:].astype(int)
    assert np.abs(left - before).mean() < 1.0
    assert np.abs(right - left).mean() > 0.5  # the model changed it
    assert image[height:].any()  # the zoomed crops


def test_preview_of_a_video_picks_the_blurred_frame_and_prints_an_estimate(tmp_path, model_args):
    clip = clip_with_one_blurred_frame(tmp_path / "shake.mp4")
    png = tmp_path / "look.png"

    result = run_cli("preview", clip, "-o", png, *model_args)

    assert result.exit_code == 0, result.output
    first, estimate = result.stdout.strip().splitlines()
    assert first.startswith(f"{png}: frame at 0.12 s (blurriest")
    assert re.search(
        r"7 frames 64x48, 1 tile, [\d.e-]+ s/frame measured, about .* in all", estimate
    )
    check_halves(png, rgb_frames(clip)[BLURRED])


def test_preview_at_a_time_and_past_the_end(tmp_path, model_args):
    clip = clip_with_one_blurred_frame(tmp_path / "shake.mp4")
    result = run_cli("preview", clip, "--at", "0.2", *model_args)
    assert result.exit_code == 0, result.output
    assert "frame at 0.20 s (--at)" in result.stdout
    check_halves(tmp_path / "shake_preview.png", rgb_frames(clip)[5])

    result = run_cli("preview", clip, "--at", "9", "--overwrite", *model_args)
    assert result.exit_code == 4
    assert (
        result.output.strip() == f"error: --at 9 is past the end of {clip} (last frame at 0.24 s)"
    )


def test_preview_of_a_frame_folder_picks_the_blurrier_of_two(tmp_path, model_args):
    folder = tmp_path / "shots"
    folder.mkdir()
    images = []
    for index, name in enumerate(["a.png", "b.png"]):
        luma = blurred_planes(BLURRED if index == 1 else 0)[0]
        images.append(np.repeat(luma[:, :, None], 3, axis=2))
        write_image(folder / name, images[-1])

    result = run_cli("preview", folder, *model_args)

    assert result.exit_code == 0, result.output
    assert "b.png, frame 1 (0.04 s at 25 fps) (blurriest" in result.stdout
    assert "2 frames 64x48" in result.stdout
    check_halves(tmp_path / "shots_preview.png", images[1])


def test_sharpness_ranks_blur_and_compose_zooms_the_edgy_corner():
    sharp = blurred_planes(0)[0].astype(np.float32) / 255
    assert sharpness(cv2.GaussianBlur(sharp, (0, 0), 1.5)) < sharpness(sharp)
    luma = np.zeros((80, 120), np.float32)
    luma[40:, 60:] = np.random.default_rng(0).random((40, 60))  # texture only bottom right
    rows, cols = edge_region(luma, 40, 60)
    assert rows.start >= 38 and cols.start >= 58  # the textured quarter (give or take its rim)
    before = np.repeat((luma * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    image = compose(before, 255 - before, luma)
    assert image.shape == (160, 240, 3)
    np.testing.assert_array_equal(image[:80, :120], before)
    np.testing.assert_array_equal(image[:80, 120:], 255 - before)
    zoomed = np.kron(before[rows, cols], np.ones((2, 2, 1), np.uint8))
    np.testing.assert_array_equal(image[80:, :120], zoomed)
    np.testing.assert_array_equal(image[80:, 120:], 255 - zoomed)


# -- strength --------------------------------------------------------------------------------


def test_strength_zero_gives_back_the_input_luma_through_a_lossless_codec(tmp_path, model_args):
    clip = make_clip(tmp_path / "in.mp4", frames=5, options={"crf": "0", "preset": "ultrafast"})
    out = tmp_path / "out.mp4"

    result = run_cli("video", clip, "-o", out, "--strength", "0", "-q", *LOSSLESS, *model_args)

    assert result.exit_code == 0, result.output
    source, written = read_clip(clip), read_clip(out)
    for before, after in zip(source.planes, written.planes, strict=True):
        np.testing.assert_array_equal(after[0], before[0])


def test_strength_blends_input_and_output_through_the_api(tiny_model_path):
    engine = Deblurrer(load_model(str(tiny_model_path)), device="cpu", precision="fp32")
    images = [np.moveaxis(np.stack(pattern_planes(i, 32, 24)[:1] * 3), 0, -1) for i in range(4)]

    def run(strength: float) -> list[np.ndarray]:
        return [i.astype(int) for i in deblur_images(images, engine, strength=strength)]

    unchanged, full, half = run(0.0), run(1.0), run(0.5)
    for image, zero, one, mid in zip(images, unchanged, full, half, strict=True):
        np.testing.assert_array_equal(zero, image)
        assert np.abs(one - image).max() > 2
        assert np.abs(2 * mid - (image + one)).max() <= 2  # halfway, up to rounding
    with pytest.raises(ValueError, match="between 0 and 1"):
        run(1.5)


def test_strength_is_checked_on_the_command_line(tmp_path, model_args):
    clip = make_clip(tmp_path / "in.mp4", frames=2)
    result = run_cli("video", clip, "--strength", "2", *model_args)
    assert result.exit_code == 2 and "0.0<=x<=1.0" in result.output


# -- the line before the run ----------------------------------------------------------------------


def test_estimate_line_comes_first_on_stderr_and_not_with_quiet(tmp_path, model_args):
    clip = make_clip(tmp_path / "in.mp4", frames=6)
    loud = run_cli("video", clip, "-o", tmp_path / "a.mp4", *model_args)
    quiet = run_cli("video", clip, "-o", tmp_path / "b.mp4", "-q", *model_args)

    assert loud.exit_code == 0 and quiet.exit_code == 0, loud.output + quiet.output
    estimate, summary = loud.stderr.strip().splitlines()
    assert estimate.startswith(f"{tiny_name(model_args)} on cpu (fp32): 6 frames 64x48, 1 tile, ")
    assert estimate.endswith(" in all") and "dblrnet-fast" not in estimate
    assert summary.startswith(f"{clip} -> ")
    assert quiet.stderr == "" and loud.stdout == quiet.stdout == ""


def test_frames_prints_the_estimate_with_tiles(tmp_path, model_args):
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(3):
        write_image(folder / f"f{index}.png", pattern_planes(index, 96, 80)[0])

    loud = run_cli("frames", folder, "--tile", "48", *model_args)
    quiet = run_cli("frames", folder, "--tile", "48", "-q", "--overwrite", *model_args)

    assert loud.exit_code == 0 and quiet.exit_code == 0, loud.output + quiet.output
    assert ": 3 frames 96x80, 4 tiles, " in loud.stderr.splitlines()[0]
    assert quiet.stderr == ""


def tiny_name(model_args: list[str]) -> str:
    return model_args[model_args.index("--model") + 1]


def named_faster_than(estimate, factor: float) -> bool:
    """Whether ``estimate`` names a faster model measured more than ``factor`` times faster."""
    return estimate.faster is not None and estimate.faster.factor > factor


def test_a_long_cpu_run_names_the_faster_model_measured():
    engine = Deblurrer(load_model("dblrnet"), device="cpu", precision="fp32")
    window = np.repeat(blurred_planes(0)[:1], 5, axis=0).astype(np.float32) / 255

    short = estimate_run(engine, window, 10, "dblrnet")
    assert short.faster is None
    # Best of three: the ratio of two timings reads low when other work shares the cores
    # (1.35x once with two trainings running; under 1x, so no model named, once beside one
    # training and a fresh engine's first run), and the claim is what the machine can do.
    longs = [estimate_run(engine, window, 10**7, "dblrnet", short.seconds_per_frame)]
    while not named_faster_than(longs[-1], 1.5) and len(longs) < 3:
        longs.append(estimate_run(engine, window, 10**7, "dblrnet"))
    long = longs[-1]

    assert long.faster is not None and long.faster.model == "dblrnet-fast"
    assert long.faster.factor > 1.5
    assert long.faster.total_seconds == pytest.approx(long.total_seconds / long.faster.factor)
    assert f"--model dblrnet-fast measured {long.faster.factor:.1f}x faster here" in long.line()
    fast = Deblurrer(load_model("dblrnet-fast"), device="cpu", precision="fp32")
    assert estimate_run(fast, window, 10**7, "dblrnet-fast", 1.0).faster is None


def test_durations_read_naturally():
    assert [format_duration(s) for s in (3.21, 42, 250, 11_400)] == [
        "3.2 s",
        "42 s",
        "4 min 10 s",
        "3 h 10 min",
    ]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated", "audio_only"])
def test_bad_input_gets_the_same_error_as_video(tmp_path, model_args, case):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    bad = {
        "missing": tmp_path / "nope.mp4",
        "empty": tmp_path / "empty.mp4",
        "text": tmp_path / "notes.mp4",
        "truncated": tmp_path / "cut.mp4",
        "audio_only": tmp_path / "sound.m4a",
    }[case]
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "text":
        bad.write_text("this is not a video\n" * 50)
    elif case == "truncated":
        bad.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif case == "audio_only":
        make_audio_only(bad)

    video = run_cli("video", bad, *model_args)
    look = run_cli("preview", bad, *model_args)

    assert look.exit_code == video.exit_code != 0
    assert look.output == video.output and len(look.output.splitlines()) == 1
    assert look.output.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir() if "preview" in p.name) == []


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [("exists", 5, "--overwrite"), ("same", 5, "is the input"), ("not_png", 5, ".png")],
)
def test_bad_output_is_refused_before_any_work(tmp_path, model_args, case, code, message):
    clip = make_clip(tmp_path / "clip.mp4", frames=3)
    target = {"exists": tmp_path / "clip_preview.png", "same": clip, "not_png": tmp_path / "x.mp4"}
    if case == "exists":
        target[case].write_bytes(b"keep me")

    result = run_cli("preview", clip, "-o", target[case], *model_args)

    assert result.exit_code == code
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
    assert case != "exists" or target[case].read_bytes() == b"keep me"


def test_preview_api_defaults(tmp_path, tiny_model_path):
    clip = clip_with_one_blurred_frame(tmp_path / "shake.mp4", frames=4)
    engine = Deblurrer(load_model(str(tiny_model_path)), device="cpu", precision="fp32")

    result = preview(clip, engine=engine, strength=0.0)

    assert result.path == tmp_path / "shake_preview.png" and result.seconds == pytest.approx(0.12)
    assert result.estimate.frames == 4 and result.estimate.model == "the model"
    image = read_image(result.path)
    np.testing.assert_array_equal(image[:HEIGHT, :WIDTH], image[:HEIGHT, WIDTH:])
