"""Blur synthesis: realistic (blurry, sharp) video clip pairs made from sharp sources.

Why this package matters more than any other for quality: a deblurring network only generalises
to real blur as far as its training blur is broad and physically plausible (see issue 4). So
every process here works in linear light, integrates many sub-exposures along a continuous
trajectory, and degrades only the blurry frames with sensor noise and lossy compression.

Three processes:
- ``shake_clip``: hand-held camera shake (translation, roll, zoom, pan, jerks, slowdowns) plus
  independently moving pasted objects; the training workhorse.
- ``average_clip``: GoPro/DTBNet-style averaging of consecutive real video frames.
- ``psf_clip``: per-frame random-trajectory PSF kernels (Boracchi & Foi 2012); used only for
  validation, so that validation blur comes from a process the model never trained on.

Everything is driven by one ``np.random.Generator`` per clip, derived from ``(seed, clip index)``,
so clip k is identical whatever the number of clips requested.

The files follow the physics, in the order light travels through them:

- ``ranges``: every random range (``BlurRanges``), how values are drawn, the ``SynthClip`` made;
- ``trajectory``: the hand-held camera path;
- ``light``: the sRGB transfer curve and the clip's exposure tone;
- ``exposure``: rendering of exposures (``shake_clip``, ``average_clip``);
- ``degrade``: sensor noise and codecs, on the blurry frames only;
- ``sources``: reading and cropping stills, videos and frame folders; the bundled sources;
- ``dead_leaves``: procedural sources;
- ``psf``: the validation-only PSF process (``psf_clip``);
- ``dataset``: seeds per clip, ``synthesize_dataset`` and ``write_dataset``.

This module re-exports every name the single-module ``deblur_cli.synth`` had, so callers import
from ``deblur_cli.synth`` only; tests/test_synth_package.py checks the clips bit for bit.
"""

from __future__ import annotations

from deblur_cli.scenes import scene_segments
from deblur_cli.synth.dataset import (
    LAYOUTS,
    PROCESSES,
    clip_rng,
    synthesize_dataset,
    write_dataset,
)
from deblur_cli.synth.dead_leaves import dead_leaves_image, write_dead_leaves
from deblur_cli.synth.exposure import average_clip, shake_clip
from deblur_cli.synth.light import LINEAR_TO_SRGB, SRGB_TO_LINEAR, linear_to_srgb, srgb_to_linear
from deblur_cli.synth.psf import psf_clip
from deblur_cli.synth.ranges import REFERENCE_HEIGHT, BlurRanges, SynthClip
from deblur_cli.synth.sources import (
    IMAGE_EXTS,
    MAX_UPSCALE,
    VAL_SOURCES,
    VIDEO_EXTS,
    bundled_sources,
    expand_sources,
    load_source,
    read_image,
    read_video,
)
from deblur_cli.synth.trajectory import GRID_PER_FRAME, _random_trajectory

__all__ = [
    "GRID_PER_FRAME",
    "IMAGE_EXTS",
    "LAYOUTS",
    "LINEAR_TO_SRGB",
    "MAX_UPSCALE",
    "PROCESSES",
    "REFERENCE_HEIGHT",
    "SRGB_TO_LINEAR",
    "VAL_SOURCES",
    "VIDEO_EXTS",
    "BlurRanges",
    "SynthClip",
    "_random_trajectory",
    "average_clip",
    "bundled_sources",
    "clip_rng",
    "dead_leaves_image",
    "expand_sources",
    "linear_to_srgb",
    "load_source",
    "psf_clip",
    "read_image",
    "read_video",
    "scene_segments",
    "shake_clip",
    "srgb_to_linear",
    "synthesize_dataset",
    "write_dataset",
    "write_dead_leaves",
]
