"""The synthesis package makes bit for bit the clips of the single module it replaced (issue 17).

``deblur_cli/synth.py`` (one 1,300-line module) was split into ``deblur_cli/synth/`` by physics:
trajectories, exposures, sensor and codec, sources, dead leaves, the PSF process. A refactor
that changed one random draw or one float operation would silently change every dataset made
from a seed, so the SHA-256 of small clips of every process was recorded from the old module
(commit 2d7f7c2) and is checked here against the package. H.264 is off in every case: its round
trip is not bit-reproducible (see ``BlurRanges.codec_probs``).

One deliberate change since: session 7 samples the shake process's sub-exposures bicubic
instead of bilinear (see ``synth.exposure._render``), so the three digests of the shake and
mixed processes were re-recorded then; the other six still come from the old module.

The digests depend on the numeric libraries' builds, so they are checked only with the numpy
and OpenCV versions they were recorded with; with other versions the test is skipped, not failed.
They also depend on the CPU: without AVX-512, numpy's sin/cos/exp take another code path (last-bit
differences in the trajectory's poses) and the PSF blur rounds a few pixels the other way. The
digests above were recorded on AVX-512 machines (AMD Zen 5); the three that differ on an AVX2-only
CPU (AMD Zen 3, session 17) were recorded there from the package, so on such a CPU the test ties
the package to itself, and the tie to the old module is made on AVX-512 machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy._core._multiarray_umath import __cpu_features__

from deblur_cli import synth

RECORDED_WITH = {"numpy": "2.4.6", "cv2": "5.0.0"}
# Recorded from the old deblur_cli/synth.py (commit 2d7f7c2) by compute_digests; shake,
# dataset_shake and dataset_mixed re-recorded after the bicubic sub-exposures (session 7).
DIGESTS = {
    "trajectory": "552a76aee7bfb59f2b43e4b7be6b09ec16773b285da966ad4674b3372d2fd753",
    "shake": "faeae9f6df75820453d61c756eadc49444a748fc56dcd9b1952ccb6aed7a5055",
    "average": "d1231e4269763e9fab8197e31c0768921bac2e0e7bdfa5def0a99e279c9827a1",
    "psf": "803e1295a4c8028e6646b5e0fbe55fd9a638e1be47a2c4f45dd6f6088f790190",
    "dead_leaves": "8d95c3d33a20e1d1cac09903912eb2055f818a05d30cf5ae0e8724565520133b",
    "dataset_shake": "3fc5107752a8abbc2a44e637b597d2eef5024e61e60ad3e57205345e7fd314ff",
    "dataset_average": "4e6f97b7f867bde7b39b1f759dcb2fb54389b2f6d2ea5672134f12e3cd95bebe",
    "dataset_psf": "397ee8b2a47d81d9e82548ac4d934cad05cc4b72c6405c42ed2af8a89f0a692e",
    "dataset_mixed": "40657ad0ab78449b5c47fbc1d88059ca220345948fddcdb7045e52a52b82a08c",
}
# The same computation on a CPU without AVX-512 (AMD Zen 3): see the module docstring.
WITHOUT_AVX512 = {
    "trajectory": "b945cd6d6c90dd54b7412fda0824be7aec70439ec85b68d3028a38e69cbd34da",
    "psf": "59a60d423d2a7c2d5840f55936d1dd4ab8f639971c8894a3638855f47f0f7883",
    "dataset_psf": "7e7e12598d9d224c75962796f39abb9cf5cc05e8118281fc8ffa18c3ef4936b3",
}


def expected_digests() -> dict[str, str]:
    """The recorded digests for this CPU's numpy code path."""
    return DIGESTS if __cpu_features__.get("AVX512_SKX") else {**DIGESTS, **WITHOUT_AVX512}


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour picture, made with numpy and OpenCV only."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 1.5) * 3 - 255, 0, 255).astype(np.uint8)


def digest(*parts: object) -> str:
    """SHA-256 over arrays (bytes, shape and dtype) and JSON-able values, in order."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            sha.update(f"{part.shape}{part.dtype}".encode())
            sha.update(np.ascontiguousarray(part).tobytes())
        else:
            sha.update(json.dumps(part, sort_keys=True, default=repr).encode())
    return sha.hexdigest()


def clip_digest(clip: synth.SynthClip) -> str:
    """Frames, name and meta; the source path is cut to its name, which is what the seed fixes."""
    meta = {**clip.meta, "source": Path(clip.meta.get("source", "")).name}
    return digest(clip.blurry, clip.sharp, clip.name, meta)


def write_sources(root: Path) -> list[Path]:
    """A still and a folder of frames with a scene cut, as PNG (lossless, so reproducible)."""
    cv2.imwrite(str(root / "still.png"), texture(90, 120, 5))
    frames = root / "clip"
    frames.mkdir()
    first, second = texture(100, 140, 7), texture(100, 140, 8) // 2
    for k in range(24):
        frame = np.roll(first if k < 16 else second, 2 * k, axis=1)
        cv2.imwrite(str(frames / f"frame_{k:03d}.png"), frame)
    return [root / "still.png", frames]


def compute_digests(root: Path) -> dict[str, str]:
    """One digest per process, each from a fixed seed and tiny sizes."""
    # Every process with noise and JPEG on, so the sensor and codec stages are covered too.
    noisy = dataclasses.replace(synth.BlurRanges(), noise_free_prob=0.0, codec_probs=(0, 1, 0))
    still, video = texture(80, 96, 1), np.stack([texture(60, 80, 2 + k) for k in range(9)])
    rng = synth.clip_rng(11, 0)
    trajectory, meta = synth._random_trajectory(rng, 6, (40, 48), 0.6, synth.BlurRanges())
    paths = write_sources(root)
    out = {
        "trajectory": digest(trajectory.poses, meta),
        "shake": clip_digest(synth.shake_clip(still, 4, (40, 48), synth.clip_rng(1, 0), noisy)),
        "average": clip_digest(synth.average_clip(video, 3, (40, 48), synth.clip_rng(2, 0), noisy)),
        "psf": clip_digest(synth.psf_clip(still, 4, (40, 48), synth.clip_rng(3, 0), noisy)),
        "dead_leaves": digest(synth.dead_leaves_image(synth.clip_rng(4, 0), size=48)),
    }
    for process in synth.PROCESSES:
        clips = synth.synthesize_dataset(paths, 3, 4, (40, 48), seed=5, process=process)
        out[f"dataset_{process}"] = digest(*map(clip_digest, clips))
    return out


def test_package_reexports_the_old_module_names() -> None:
    """Every name other modules, tests and scripts import from ``deblur_cli.synth``."""
    names = [
        "BlurRanges",
        "SynthClip",
        "LAYOUTS",
        "PROCESSES",
        "IMAGE_EXTS",
        "VIDEO_EXTS",
        "VAL_SOURCES",
        "shake_clip",
        "average_clip",
        "psf_clip",
        "synthesize_dataset",
        "write_dataset",
        "clip_rng",
        "bundled_sources",
        "expand_sources",
        "load_source",
        "read_image",
        "read_video",
        "dead_leaves_image",
        "write_dead_leaves",
        "srgb_to_linear",
        "linear_to_srgb",
        "scene_segments",
        "_random_trajectory",
    ]
    assert [n for n in names if not hasattr(synth, n)] == []


def test_clips_are_bit_identical_to_the_old_module(tmp_path: Path) -> None:
    versions = {"numpy": np.__version__, "cv2": cv2.__version__}
    if versions != RECORDED_WITH:
        pytest.skip(f"digests recorded with {RECORDED_WITH}, running {versions}")
    assert compute_digests(tmp_path) == expected_digests()


def test_a_share_of_the_indices_makes_exactly_those_clips(tmp_path: Path) -> None:
    # make_data.py --jobs splits a set between processes by clip index; this is what makes the
    # parallel set identical to the one-process set.
    paths = write_sources(tmp_path)
    whole = list(synth.synthesize_dataset(paths, 5, 4, (40, 48), seed=5, process="mixed"))
    share = synth.synthesize_dataset(paths, 5, 4, (40, 48), seed=5, process="mixed", indices=[3, 1])
    assert [clip_digest(c) for c in share] == [clip_digest(whole[3]), clip_digest(whole[1])]
    with pytest.raises(IndexError):
        next(synth.synthesize_dataset(paths, 5, 4, (40, 48), seed=5, indices=[5]))
