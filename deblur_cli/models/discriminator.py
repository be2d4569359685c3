"""The DBLRGAN discriminator: a VGG-like CNN following the DCGAN guidelines (paper, Table II).

Fourteen 3x3 convolutions whose channels rise 64 -> 128 -> 256 -> 512, batch norm after every
convolution but the first (DCGAN), LeakyReLU(0.2), strided convolutions instead of pooling, then
FC 4096 and FC 2 (real sharp frame vs deblurred frame).

Deviation, recorded in MODEL_CARD.md: before the FC layers the 512-channel map is averaged to 1x1,
so the FC 4096 layer has 2 M weights instead of the ~134 M that flattening an 8x8x512 map of a
128x128 crop would need; this keeps the GAN stage affordable on a CPU and makes the
discriminator independent of the crop size.
"""

from __future__ import annotations

from torch import nn

# (output channels, stride) for the 14 convolutions.
LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 2),
    (128, 1), (128, 2),
    (256, 1), (256, 1), (256, 2),
    (512, 1), (512, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 2),
)  # fmt: skip


class Discriminator(nn.Module):
    """Maps N x 1 x H x W luma crops to N x 2 logits (index 1 = "real sharp frame")."""

    def __init__(self, width_scale: float = 1.0, fc_width: int = 4096) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for index, (channels, stride) in enumerate(LAYERS):
            cout = max(8, int(channels * width_scale))
            layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=index == 0))
            if index > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin, fc_width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(fc_width, 2),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        # Centre the input: the generator's output and real frames are both in [0, 1].
        return self.classifier(self.pool(self.features(x - 0.5)))
