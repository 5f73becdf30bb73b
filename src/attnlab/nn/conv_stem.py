"""A convolutional stem: the feature map a hybrid Vision Transformer cuts into patches instead of
raw pixels (Dosovitskiy et al. 2021, sec. 3.1 "Hybrid Architecture"; Xiao et al. 2021, "Early
Convolutions Help Transformers See Better"). Two 3x3 convolutions with batch norm and GELU keep
the resolution, so the patch grid is the same as on pixels; they bring the locality a plain ViT
has to learn from data.
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvStem(nn.Module):
    """(B, in_channels, H, W) -> (B, channels, H, W): `layers` x (3x3 conv, BatchNorm, GELU)."""

    def __init__(self, in_channels: int, channels: int, layers: int = 2) -> None:
        super().__init__()
        if channels <= 0 or layers <= 0:
            raise ValueError(f"channels and layers must be positive, got {channels} and "
                             f"{layers}")
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1,
                                 bias=False),
                       nn.BatchNorm2d(channels), nn.GELU()]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, channels, H, W)
