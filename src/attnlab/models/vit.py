"""The Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale") and DeiT's distillation token (Touvron et al. 2021,
"Training data-efficient image transformers & distillation through attention").

An image is cut into P x P patches (a strided convolution: kernel = stride = P), each patch a
token; a learned [CLS] token (and with `distillation`, DeiT's distillation token) goes in front,
learned positions are added, a pre-norm encoder from `attnlab.nn` (exact-GELU feed-forward,
final LayerNorm) reads the sequence, and a linear head classifies the final [CLS] state.
With distillation a second head reads the distillation token and the logits are the mean of
both (Hugging Face's DeiTForImageClassificationWithTeacher); training on labels alone averages
the cross-entropy of both heads. DeiT's hard-label distillation needs a teacher's predictions
as the second head's target; no teacher is provided here.

    model = build_model("vit-tiny")
    out = model(pixel_values, labels=labels)   # (B, C, H, W) float, (B,) classes
    out.logits  # (B, num_labels); out.last_hidden_state (B, 1 + gh * gw, D)

The pieces the Audio Spectrogram Transformer reuses: `encoder_layer(config)`,
`encoder(config)`, `PatchEmbedding`, `init_weights`, `ImageClassifierOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError, DataError
from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.models.common import (
    PretrainedModel,
    check_class_labels,
    check_pixel_batch,
    check_positive_ints,
)
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import EncoderLayer
from attnlab.nn.conv_stem import ConvStem
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.norm import NORM
from attnlab.nn.position.grid import GRID_MODES, resize_grid_positions
from attnlab.nn.stack import Encoder

IMAGE_SIZE_LIMIT = 2**16  # pixels per side; far above any real checkpoint (ViT-G: 518)
CHANNELS_LIMIT = 2**10


@dataclass(frozen=True)
class ViTConfig:
    """Hyperparameters of ViT (defaults: ViT-B/16 at 224 x 224, Dosovitskiy et al. Table 1)."""

    model_type: ClassVar[str] = "vit"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    init_std: float = 0.02
    kernel: str = "sdpa"
    num_labels: int = 0  # > 0: classification head(s)
    labels: tuple[str, ...] = ()  # class names (empty, or one per label): id2label in HF
    distillation: bool = False  # DeiT's distillation token + second head
    position_interpolation: str = "bicubic"  # how learned positions resize to another grid
    pooler: bool = False  # HF ViTModel's tanh pooler (only for parity with ViTModel)
    # > 0: the paper's hybrid (sec. 3.1): patches of a conv stem's feature map with this many
    # channels (nn/conv_stem.py) instead of pixels; attnlab layout only
    stem_channels: int = 0

    def __post_init__(self) -> None:
        check_encoder_config(self)
        positive_ints(self, ("image_size", "patch_size", "num_channels"))
        for name, bound in (("image_size", IMAGE_SIZE_LIMIT), ("num_channels", CHANNELS_LIMIT)):
            if getattr(self, name) > bound:
                raise ConfigError(f"{name}={getattr(self, name)} is outside the sane range "
                                  f"[1, {bound:,}]")
        if self.patch_size > self.image_size:
            raise ConfigError(f"patch_size ({self.patch_size}) must be <= image_size "
                              f"({self.image_size})")
        if isinstance(self.stem_channels, bool) or not isinstance(self.stem_channels, int) or \
                not 0 <= self.stem_channels <= CHANNELS_LIMIT:
            raise ConfigError(f"stem_channels must be an integer in [0, {CHANNELS_LIMIT}], "
                              f"got {self.stem_channels!r}")
        if self.position_interpolation not in GRID_MODES:
            raise ConfigError(f"position_interpolation must be one of {list(GRID_MODES)}, "
                              f"got {self.position_interpolation!r}")
        check_labels(self)


def positive_ints(c: Any, names: tuple[str, ...]) -> None:
    """`check_positive_ints` (positive and within `attnlab.io.limits`) as a ConfigError."""
    try:
        check_positive_ints(c, names)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_encoder_config(c: Any) -> None:
    """The checks of the encoder fields ViT and AST share (ConfigError naming the field)."""
    positive_ints(c, ("d_model", "n_heads", "n_layers", "d_ff"))
    if c.d_model % c.n_heads:
        raise ConfigError(f"d_model ({c.d_model}) must be divisible by n_heads ({c.n_heads})")
    for name in ("dropout", "attention_dropout"):
        if not 0.0 <= getattr(c, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(c, name)!r}")
    if not c.layer_norm_eps > 0 or not c.init_std > 0:
        raise ConfigError(f"layer_norm_eps and init_std must be > 0, got {c.layer_norm_eps!r} "
                          f"and {c.init_std!r}")


def check_labels(c: Any) -> None:
    """num_labels >= 0 and `labels` empty or one name per label (stored as a tuple, so a
    config read from JSON, where it is a list, equals the one that was saved)."""
    if isinstance(c.num_labels, bool) or not isinstance(c.num_labels, int) or c.num_labels < 0:
        raise ConfigError(f"num_labels must be an integer >= 0, got {c.num_labels!r}")
    if isinstance(c.labels, str):
        raise ConfigError(f"labels must be a list of class names, got the string {c.labels!r}")
    object.__setattr__(c, "labels", tuple(c.labels))
    if c.labels and len(c.labels) != c.num_labels:
        raise ConfigError(f"labels must be empty or name each of the num_labels={c.num_labels} "
                          f"classes, got {len(c.labels)} names")
    if not all(isinstance(name, str) for name in c.labels):
        raise ConfigError(f"labels must be strings, got {list(c.labels)[:5]}")


@dataclass
class ImageClassifierOutput:
    logits: Tensor | None  # (B, num_labels), or None without a head
    last_hidden_state: Tensor  # (B, T, D) after the final norm; T = prefix + patches
    loss: Tensor | None = None  # float32 cross-entropy (mean over both heads with distillation)
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, T)
    pooler_output: Tensor | None = None  # (B, D) tanh pooler (config.pooler) or None
    cls_logits: Tensor | None = None  # (B, num_labels) the [CLS] head alone (distillation)
    distillation_logits: Tensor | None = None  # (B, num_labels) the distillation head


def layer_norm(c: Any) -> nn.Module:
    return NORM.build("layer", d_model=c.d_model, eps=c.layer_norm_eps)


def encoder_layer(c: Any) -> EncoderLayer:
    """One pre-norm layer: x + attn(LN(x)), then x + MLP(LN(x)) with exact GELU (or the
    feed-forward named by `c.activation` where the config has one: CLIP's "quick_gelu"); q, k,
    v carry biases when `c.qkv_bias` (the output projection always does)."""
    attention = ATTENTION.build("multi_head", d_model=c.d_model, n_heads=c.n_heads,
                                dropout=c.attention_dropout, kernel=c.kernel)
    if not c.qkv_bias:
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(attention, name, nn.Linear(c.d_model, c.d_model, bias=False))
    feed_forward = FEEDFORWARD.build(getattr(c, "activation", "gelu"), d_model=c.d_model,
                                     d_ff=c.d_ff)
    return EncoderLayer(attention, feed_forward, layer_norm(c), layer_norm(c),
                        dropout=c.dropout, norm_first=True)


def encoder(c: Any) -> Encoder:
    """`c.n_layers` pre-norm layers and the final LayerNorm."""
    return Encoder([encoder_layer(c) for _ in range(c.n_layers)], final_norm=layer_norm(c))


def init_weights(model: nn.Module, std: float) -> None:
    """Hugging Face's ViT initialisation: truncated N(0, std) for linear and convolution
    weights, learned tokens and position tables; zero biases; unit norms."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, PatchEmbedding):
            for p in (module.cls_token, module.distillation_token, module.position_embeddings):
                if p is not None:
                    nn.init.trunc_normal_(p, std=std)


class PatchEmbedding(nn.Module):
    """Patches of a (B, C, H, W) input -> (B, prefix + gh * gw, D) tokens: a Conv2d (kernel
    `patch_size`, `stride`) per patch, the [CLS] (and distillation) token in front, the learned
    positions `position_embeddings` (1, prefix + gh * gw, D) of the training `grid` added.
    `bias=False`: a convolution without bias (CLIP's)."""

    def __init__(self, d_model: int, in_channels: int, patch_size: tuple[int, int],
                 stride: tuple[int, int], grid: tuple[int, int], prefix_tokens: int = 1,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if prefix_tokens not in (1, 2):
            raise ValueError(f"prefix_tokens must be 1 or 2, got {prefix_tokens}")
        self.grid = tuple(grid)
        self.prefix_tokens = prefix_tokens
        self.projection = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=stride,
                                    bias=bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.distillation_token = (nn.Parameter(torch.zeros(1, 1, d_model))
                                   if prefix_tokens == 2 else None)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, prefix_tokens + grid[0] * grid[1], d_model))
        self.dropout = nn.Dropout(dropout)

    def positions(self, grid: tuple[int, int], mode: str = "bicubic") -> Tensor:
        """The position table for a `grid` of patches (1, prefix + gh * gw, D): the trained
        one at the training grid, else its patch part resized by `mode`."""
        if tuple(grid) == self.grid:
            return self.position_embeddings
        prefix = self.position_embeddings[:, : self.prefix_tokens]  # (1, P, D)
        patches = resize_grid_positions(self.position_embeddings[:, self.prefix_tokens:],
                                        self.grid, grid, mode)  # (1, gh * gw, D)
        return torch.cat([prefix, patches], dim=1)

    def forward(self, x: Tensor, *, interpolate: bool = False,
                mode: str = "bicubic") -> Tensor:
        patches = self.projection(x)  # (B, D, gh, gw)
        grid = tuple(patches.shape[-2:])
        if grid != self.grid and not interpolate:
            raise ValueError(f"a grid of {grid[0]} x {grid[1]} patches does not match the "
                             f"{self.grid[0]} x {self.grid[1]} the positions were learned for")
        B = x.size(0)
        tokens = [self.cls_token.expand(B, -1, -1)]  # (B, 1, D)
        if self.distillation_token is not None:
            tokens.append(self.distillation_token.expand(B, -1, -1))
        tokens.append(patches.flatten(2).transpose(1, 2))  # (B, gh * gw, D)
        h = torch.cat(tokens, dim=1) + self.positions(grid, mode)  # (B, P + gh * gw, D)
        return self.dropout(h)


class ViT(PretrainedModel):
    """forward(pixel_values (B, C, H, W) float, labels=None (B,) long, *,
    output_attentions=False, interpolate_pos_encoding=False) -> ImageClassifierOutput."""

    config_class = ViTConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # reads images, generates nothing
    main_input_name: ClassVar[str] = "pixel_values"  # as transformers names it

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        p = c.patch_size
        self.stem = ConvStem(c.num_channels, c.stem_channels) if c.stem_channels else None
        self.embeddings = PatchEmbedding(c.d_model, c.stem_channels or c.num_channels, (p, p),
                                         (p, p),
                                         self.patch_grid(c.image_size, c.image_size),
                                         prefix_tokens=self.num_prefix_tokens, dropout=c.dropout)
        self.encoder = encoder(c)
        self.pooler = nn.Linear(c.d_model, c.d_model) if c.pooler else None
        self.classifier = nn.Linear(c.d_model, c.num_labels) if c.num_labels else None
        self.distillation_classifier = (nn.Linear(c.d_model, c.num_labels)
                                        if c.num_labels and c.distillation else None)
        self.reset_parameters()

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.config.distillation else 1

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """(gh, gw): patches along the height and the width of an H x W image."""
        p = self.config.patch_size
        return height // p, width // p

    def reset_parameters(self) -> None:
        init_weights(self, self.config.init_std)

    def check_pixels(self, pixel_values: Tensor, interpolate: bool) -> None:
        c, name = self.config, "pixel_values"
        check_pixel_batch(pixel_values, c.num_channels, name)
        H, W = pixel_values.shape[-2:]
        if interpolate and min(H, W) < c.patch_size:
            raise DataError(f"{name}: an image of {H}x{W} is smaller than one "
                            f"{c.patch_size}x{c.patch_size} patch")
        if not interpolate and (H, W) != (c.image_size, c.image_size):
            raise DataError(f"{name}: image size {H}x{W} does not match the model's "
                            f"{c.image_size}x{c.image_size} (config.image_size); pass "
                            "interpolate_pos_encoding=True to resize the learned positions")


    def forward(self, pixel_values: Tensor, labels: Tensor | None = None, *,
                output_attentions: bool = False,
                interpolate_pos_encoding: bool = False) -> ImageClassifierOutput:
        self.check_pixels(pixel_values, interpolate_pos_encoding)
        if labels is not None:
            check_class_labels(labels, pixel_values.size(0), self.config.num_labels)
        x = pixel_values.to(self.embeddings.projection.weight.dtype)  # (B, C, H, W)
        if self.stem is not None:
            x = self.stem(x)  # (B, stem_channels, H, W)
        x = self.embeddings(x, interpolate=interpolate_pos_encoding,
                            mode=self.config.position_interpolation)  # (B, T, D)
        enc = self.encoder(x, output_attentions=output_attentions)
        hidden = enc.last_hidden_state  # (B, T, D)
        pooled = None if self.pooler is None else torch.tanh(self.pooler(hidden[:, 0]))
        out = ImageClassifierOutput(None, hidden, None, enc.attentions, pooled)
        if self.classifier is None:
            return out
        out.logits = self.classifier(hidden[:, 0])  # (B, num_labels)
        heads = [out.logits]
        if self.distillation_classifier is not None:
            out.cls_logits = out.logits
            out.distillation_logits = self.distillation_classifier(hidden[:, 1])  # (B, L)
            heads.append(out.distillation_logits)
            out.logits = (out.cls_logits + out.distillation_logits) / 2
        if labels is not None:
            out.loss = sum(F.cross_entropy(h.float(), labels) for h in heads) / len(heads)
        return out


__all__ = ["ImageClassifierOutput", "PatchEmbedding", "ViT", "ViTConfig", "check_encoder_config",
           "check_labels", "encoder", "encoder_layer", "init_weights", "layer_norm",
           "positive_ints"]
