"""A small residual network for small images (He, Zhang, Ren and Sun 2016, "Deep Residual
Learning for Image Recognition", sec. 4.2: the CIFAR-10 networks): the convolutional baseline
the Vision Transformer is measured against (`attnlab compare --family vision`).

A 3x3 convolution stem (no max-pool: the images are small), then stages of basic blocks
(two 3x3 convolutions with BatchNorm and ReLU, plus the input: y = relu(F(x) + shortcut(x))),
the channels doubling and the resolution halving (stride 2) at each stage after the first,
global average pooling and a linear head. Where a block changes the channels or the
resolution, its shortcut is a 1x1 convolution with BatchNorm (the paper's option B); the
CIFAR networks of sec. 4.2 used zero-padded identities (option A) instead. The defaults are
ResNet-20 of sec. 4.2 (width 16, three stages of three blocks, 0.27M parameters).

Unlike ViT, nothing here depends on the image size: any H x W works (global pooling);
`image_size` records the size the model was trained at (the image processor's size).

    model = build_model("resnet-tiny")
    out = model(pixel_values, labels=labels)   # (B, C, H, W) float, (B,) classes
    out.logits  # (B, num_labels); out.last_hidden_state (B, C_last, h, w): the last stage
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.models.common import (
    PretrainedModel,
    check_class_labels,
    check_pixel_batch,
    check_positive_ints,
)
from attnlab.models.vit import ImageClassifierOutput, check_labels

IMAGE_SIZE_LIMIT = 2**16  # pixels per side, as ViT
CHANNELS_LIMIT = 2**10
WIDTH_LIMIT = 2**14  # channels of the first stage
BLOCKS_LIMIT = 2**10  # blocks per stage
STAGES_LIMIT = 8


@dataclass(frozen=True)
class ResNetConfig:
    """Hyperparameters (defaults: ResNet-20 for 32 x 32 RGB images, He et al. 2016 sec. 4.2)."""

    model_type: ClassVar[str] = "resnet"

    image_size: int = 32
    num_channels: int = 3
    num_labels: int = 10  # > 0: a classification head; 0: features only
    labels: tuple[str, ...] = ()  # class names (empty, or one per label)
    width: int = 16  # channels of the first stage; stage i has width * 2**i
    depths: tuple[int, ...] = (3, 3, 3)  # basic blocks per stage
    dropout: float = 0.0  # before the head
    batch_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        try:
            check_positive_ints(self, ("image_size", "num_channels", "width"))
        except ValueError as error:
            raise ConfigError(str(error)) from None
        for name, bound in (("image_size", IMAGE_SIZE_LIMIT), ("num_channels", CHANNELS_LIMIT),
                            ("width", WIDTH_LIMIT)):
            if getattr(self, name) > bound:
                raise ConfigError(f"{name}={getattr(self, name)} is outside the sane range "
                                  f"[1, {bound:,}]")
        depths = self.depths
        if isinstance(depths, str) or not isinstance(depths, list | tuple) or not (
                1 <= len(depths) <= STAGES_LIMIT) or not all(
                isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= BLOCKS_LIMIT
                for d in depths):
            raise ConfigError(f"depths must be 1 to {STAGES_LIMIT} positive block counts (one "
                              f"per stage, each <= {BLOCKS_LIMIT}), got {depths!r}")
        object.__setattr__(self, "depths", tuple(depths))  # a JSON list reads back equal
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.batch_norm_eps > 0:
            raise ConfigError(f"batch_norm_eps must be > 0, got {self.batch_norm_eps!r}")
        check_labels(self)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each stage."""
        return tuple(self.width * 2**i for i in range(len(self.depths)))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, eps: float) -> nn.Sequential:
    """A bias-free convolution ("same" padding) and its BatchNorm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=eps))


class BasicBlock(nn.Module):
    """y = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); both convolutions 3x3, the first
    with `stride`; the shortcut is the identity, or a 1x1 convolution + BatchNorm where the
    shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride, eps)
        self.conv2 = conv_bn(c_out, c_out, 3, 1, eps)
        self.shortcut = (conv_bn(c_in, c_out, 1, stride, eps)
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        h = F.relu(self.conv1(x))
        return F.relu(self.conv2(h) + self.shortcut(x))


class ResNet(PretrainedModel):
    """forward(pixel_values (B, C, H, W) float, labels=None (B,) long, *,
    output_attentions=False) -> ImageClassifierOutput (attentions always None: a CNN has
    none; the flag is accepted so tools written for ViT run)."""

    config_class = ResNetConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # reads images, generates nothing
    main_input_name: ClassVar[str] = "pixel_values"

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.stem = conv_bn(c.num_channels, c.width, 3, 1, c.batch_norm_eps)
        blocks: list[nn.Module] = []
        c_in = c.width
        for i, (c_out, depth) in enumerate(zip(c.channels, c.depths, strict=True)):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, c.batch_norm_eps))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c_in, c.num_labels) if c.num_labels else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He et al. 2015 (fan-out normal) for convolutions, unit/zero BatchNorm, PyTorch's
        default uniform for the head."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                module.reset_parameters()

    def forward(self, pixel_values: Tensor, labels: Tensor | None = None, *,
                output_attentions: bool = False) -> ImageClassifierOutput:
        check_pixel_batch(pixel_values, self.config.num_channels)
        if labels is not None:
            check_class_labels(labels, pixel_values.size(0), self.config.num_labels)
        x = pixel_values.to(self.stem[0].weight.dtype)
        features = self.blocks(F.relu(self.stem(x)))  # (B, C_last, h, w)
        pooled = features.mean(dim=(2, 3))  # (B, C_last)
        out = ImageClassifierOutput(None, features, None, None, pooled)
        if self.classifier is None:
            return out
        out.logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if labels is not None:
            out.loss = F.cross_entropy(out.logits.float(), labels)
        return out


def count_parameters(**config: Any) -> int:
    """Parameters of `ResNet(ResNetConfig(**config))`, counted on the meta device (nothing
    allocated)."""
    with torch.device("meta"):
        return ResNet(ResNetConfig(**config)).num_parameters()


def width_matching(params: int, **config: Any) -> int:
    """The first-stage width whose ResNet (the other fields from `config`) has the parameter
    count nearest `params`: the baseline at equal parameters. Parameters grow with the
    square of the width, so one step of the width moves them by about 2 / width."""
    if isinstance(params, bool) or not isinstance(params, int) or params <= 0:
        raise ConfigError(f"params must be a positive integer, got {params!r}")
    config = {k: v for k, v in config.items() if k != "width"}
    base = ResNetConfig(**config)  # checks the other fields once, naming them
    high = 1
    while high < WIDTH_LIMIT and count_parameters(**{**vars_of(base), "width": high}) < params:
        high = min(2 * high, WIDTH_LIMIT)
    low = max(1, high // 2)
    while low < high:  # the smallest width with at least `params` parameters
        mid = (low + high) // 2
        if count_parameters(**{**vars_of(base), "width": mid}) >= params:
            high = mid
        else:
            low = mid + 1
    candidates = {w for w in (low - 1, low) if w >= 1}
    return min(candidates, key=lambda w: (abs(
        math.log(count_parameters(**{**vars_of(base), "width": w}) / params)), w))


def vars_of(config: ResNetConfig) -> dict[str, Any]:
    """The config's fields as keyword arguments."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


__all__ = ["BasicBlock", "ResNet", "ResNetConfig", "count_parameters", "width_matching"]
