"""Network definitions: the DBLRNet generator (and variants) and the DBLRGAN discriminator."""

from deblur_cli.models.dblrnet import (
    ARCHS,
    FAST,
    PAPER,
    TINY,
    DBLRNet,
    DBLRNetConfig,
    fold_batchnorm,
)

__all__ = ["ARCHS", "FAST", "PAPER", "TINY", "DBLRNet", "DBLRNetConfig", "fold_batchnorm"]
