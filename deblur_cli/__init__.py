"""deblur: video deblurring with DBLRNet / DBLRGAN.

The front door of the library; the ``deblur`` command is a thin layer over these names::

    from deblur_cli import load_model, Deblurrer, deblur_video
    engine = Deblurrer(load_model("dblrnet"))              # device/precision "auto"
    deblur_video("in.mp4", "out.mp4", engine)              # -> Summary (frames, seconds, fps)
    deblur_frames("frames/", "frames_out/", engine, strength=0.7)
    preview("in.mp4", "in_preview.png", engine)           # one frame + the whole run's time
    for image in deblur_images(rgb_arrays, engine): ...
    for payload, plane in engine.stream(pairs): ...        # (payload, float32 luma) pairs

Names are imported on first use (PEP 562), so ``import deblur_cli`` is instant and the
command-line entry point can turn a Ctrl-C during the heavy torch import into a clean exit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Summary": "deblur_cli.api",
    "deblur_frames": "deblur_cli.api",
    "deblur_images": "deblur_cli.api",
    "deblur_video": "deblur_cli.api",
    "preview": "deblur_cli.preview",
    "PreviewResult": "deblur_cli.preview",
    "RunEstimate": "deblur_cli.estimate",
    "estimate_run": "deblur_cli.estimate",
    "Deblurrer": "deblur_cli.engine",
    "DeblurError": "deblur_cli.errors",
    "FAST": "deblur_cli.models",
    "PAPER": "deblur_cli.models",
    "TINY": "deblur_cli.models",
    "DBLRNet": "deblur_cli.models",
    "DBLRNetConfig": "deblur_cli.models",
    "MODELS": "deblur_cli.weights",
    "load_model": "deblur_cli.weights",
    "resolve_weights": "deblur_cli.weights",
    "save_model": "deblur_cli.weights",
}
__all__ = [
    "FAST",
    "MODELS",
    "PAPER",
    "TINY",
    "DBLRNet",
    "DBLRNetConfig",
    "DeblurError",
    "Deblurrer",
    "PreviewResult",
    "RunEstimate",
    "Summary",
    "deblur_frames",
    "deblur_images",
    "deblur_video",
    "estimate_run",
    "load_model",
    "preview",
    "resolve_weights",
    "save_model",
]

if TYPE_CHECKING:
    from deblur_cli.api import Summary, deblur_frames, deblur_images, deblur_video
    from deblur_cli.engine import Deblurrer
    from deblur_cli.errors import DeblurError
    from deblur_cli.estimate import RunEstimate, estimate_run
    from deblur_cli.models import FAST, PAPER, TINY, DBLRNet, DBLRNetConfig
    from deblur_cli.preview import PreviewResult, preview
    from deblur_cli.weights import MODELS, load_model, resolve_weights, save_model


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'deblur_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
