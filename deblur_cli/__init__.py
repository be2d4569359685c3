"""deblur: video deblurring with DBLRNet / DBLRGAN.

The front door of the library; the ``deblur`` command is a thin layer over these names::

    from deblur_cli import load_model, Deblurrer
    model = load_model("dblrnet")
    engine = Deblurrer(model)              # device/precision "auto"
    for payload, plane in engine.stream(frames):   # (payload, float32 luma) pairs
        ...
"""

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
    "load_model",
    "resolve_weights",
    "save_model",
]
