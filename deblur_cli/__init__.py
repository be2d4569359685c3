"""deblur: video deblurring with DBLRNet / DBLRGAN.

The front door of the library; the ``deblur`` command is a thin layer over these names::

    from deblur_cli import load_model, Deblurrer
    model = load_model("dblrnet")
    engine = Deblurrer(model)              # device/precision "auto"
    for payload, plane in engine.stream(frames):   # (payload, float32 luma) pairs
        ...
    deblur_video("in.mp4", "out.mp4", engine)      # -> Summary (frames, seconds, fps)
    deblur_frames("frames/", "frames_out/", engine)
    for image in deblur_images(rgb_arrays, engine): ...
"""

from deblur_cli.api import Summary, deblur_frames, deblur_images, deblur_video
from deblur_cli.engine import Deblurrer
from deblur_cli.errors import DeblurError
from deblur_cli.models import FAST, PAPER, TINY, DBLRNet, DBLRNetConfig
from deblur_cli.weights import MODELS, load_model, resolve_weights, save_model

__all__ = [
    "FAST",
    "MODELS",
    "PAPER",
    "TINY",
    "DBLRNet",
    "DBLRNetConfig",
    "DeblurError",
    "Deblurrer",
    "Summary",
    "deblur_frames",
    "deblur_images",
    "deblur_video",
    "load_model",
    "resolve_weights",
    "save_model",
]
