"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): a text Transformer and a Vision Transformer trained to agree, by a symmetric
contrastive loss over a batch of (image, caption) pairs, on which caption goes with which image.

Both encoders are ViT's pre-norm layers (`models/vit.py`: `encoder`, `PatchEmbedding`) with
CLIP's quick-GELU feed-forward. The text side adds learned positions to token embeddings, reads
with causal self-attention (and the padding mask), applies a final LayerNorm and pools the state
of the first <|endoftext|> of each row (transformers' rule; its legacy `eos_token_id == 2`
configs pool at argmax(input_ids)). The vision side has a bias-free patch convolution, a
LayerNorm right after the embeddings ("pre_layrnorm") and a LayerNorm on the pooled [CLS]
state. Linear projections without bias map both to one space; the logits are the cosine
similarities times exp(logit_scale), a learned temperature initialised at 1 / 0.07.

The paper clips the temperature so logits are never scaled by more than 100; transformers'
CLIPModel does not, so forward() scales by exp(logit_scale) as transformers does (parity with
released checkpoints, whose scale is 100.0003), and clamps it at 100 only on the training path
(`return_loss=True`), where logits and loss use the clamped scale.

    model = build_model("clip-tiny")
    out = model(input_ids, pixel_values, attention_mask, return_loss=True)
    out.logits_per_image  # (Bi, Bt); out.loss: contrastive_loss(out.logits_per_text)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError, DataError
from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.io.limits import SIZE_LIMITS
from attnlab.models.common import (
    PretrainedModel,
    check_input_ids,
    check_pixel_batch,
    key_padding_mask,
)
from attnlab.models.vit import CHANNELS_LIMIT, IMAGE_SIZE_LIMIT, PatchEmbedding, encoder, layer_norm
from attnlab.nn.position import POSITION

MAX_LOGIT_SCALE = 100.0  # the paper's clip on exp(logit_scale) (sec. 2.5)
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh", "relu", "silu")
# each size field -> the bound of `attnlab.io.limits` it shares
SIZES = {"vocab_size": "vocab_size", "text_max_len": "max_seq_len", "text_d_model": "d_model",
         "text_n_heads": "n_heads", "text_n_layers": "n_layers", "text_d_ff": "d_ff",
         "vision_d_model": "d_model", "vision_n_heads": "n_heads", "vision_n_layers": "n_layers",
         "vision_d_ff": "d_ff", "projection_dim": "d_model"}


@dataclass(frozen=True)
class CLIPConfig:
    """Hyperparameters of CLIP (defaults: openai/clip-vit-base-patch32, ViT-B/32)."""

    model_type: ClassVar[str] = "clip"

    vocab_size: int = 49408
    text_max_len: int = 77
    text_d_model: int = 512
    text_n_heads: int = 8
    text_n_layers: int = 12
    text_d_ff: int = 2048
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    vision_d_model: int = 768
    vision_n_heads: int = 12
    vision_n_layers: int = 12
    vision_d_ff: int = 3072
    projection_dim: int = 512
    logit_scale_init: float = 2.6592  # ln(1 / 0.07)
    layer_norm_eps: float = 1e-5
    activation: str = "quick_gelu"
    bos_token_id: int | None = 49406
    eos_token_id: int = 49407
    pad_token_id: int | None = 1
    dropout: float = 0.0  # residual and embedding dropout (transformers' CLIP has none)
    attention_dropout: float = 0.0
    init_std: float = 0.02
    kernel: str = "sdpa"

    def __post_init__(self) -> None:
        for name, bound_name in SIZES.items():
            value, bound = getattr(self, name), SIZE_LIMITS[bound_name]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            if value > bound:
                raise ConfigError(f"{name}={value} is outside the sane range [1, {bound:,}] "
                                  "(see attnlab.io.limits)")
        for name, bound in (("image_size", IMAGE_SIZE_LIMIT), ("patch_size", IMAGE_SIZE_LIMIT),
                            ("num_channels", CHANNELS_LIMIT)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
                raise ConfigError(f"{name} must be an integer in [1, {bound:,}], got {value!r}")
        if self.patch_size > self.image_size:
            raise ConfigError(f"patch_size ({self.patch_size}) must be <= image_size "
                              f"({self.image_size})")
        for side in ("text", "vision"):
            d, h = getattr(self, f"{side}_d_model"), getattr(self, f"{side}_n_heads")
            if d % h:
                raise ConfigError(f"{side}_d_model ({d}) must be divisible by {side}_n_heads "
                                  f"({h})")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.layer_norm_eps > 0 or not self.init_std > 0:
            raise ConfigError(f"layer_norm_eps and init_std must be > 0, got "
                              f"{self.layer_norm_eps!r} and {self.init_std!r}")
        if not math.isfinite(self.logit_scale_init):
            raise ConfigError(f"logit_scale_init must be finite, got {self.logit_scale_init!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {list(ACTIVATIONS)}, got "
                              f"{self.activation!r}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is None and name != "eos_token_id":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value < self.vocab_size:
                raise ConfigError(f"{name} must be a token id in [0, vocab_size="
                                  f"{self.vocab_size}), got {value!r}")

    def side(self, name: str) -> SimpleNamespace:
        """The encoder fields of one side ("text" or "vision") under the names ViT's builders
        (`vit.encoder`, `vit.layer_norm`) read."""
        return SimpleNamespace(
            d_model=getattr(self, f"{name}_d_model"), n_heads=getattr(self, f"{name}_n_heads"),
            n_layers=getattr(self, f"{name}_n_layers"), d_ff=getattr(self, f"{name}_d_ff"),
            dropout=self.dropout, attention_dropout=self.attention_dropout,
            layer_norm_eps=self.layer_norm_eps, qkv_bias=True, kernel=self.kernel,
            activation=self.activation)


@dataclass
class CLIPOutput:
    logits_per_image: Tensor | None  # (Bi, Bt) scale * image_embeds @ text_embeds.T
    logits_per_text: Tensor | None  # (Bt, Bi)
    text_embeds: Tensor | None  # (Bt, P) L2-normalised
    image_embeds: Tensor | None  # (Bi, P) L2-normalised
    loss: Tensor | None = None  # contrastive_loss(logits_per_text), with return_loss
    text_attentions: tuple[Tensor, ...] | None = None  # per layer (Bt, H, T, T)
    vision_attentions: tuple[Tensor, ...] | None = None  # per layer (Bi, H, 1 + N, 1 + N)


def contrastive_loss(logits_per_text: Tensor) -> Tensor:
    """The symmetric cross-entropy of CLIP (Radford et al. 2021, Figure 3) in float32: pair i
    is the right answer of row i (text -> image) and of column i (image -> text); the mean of
    both directions. `logits_per_text` (B, B)."""
    if logits_per_text.dim() != 2 or logits_per_text.size(0) != logits_per_text.size(1):
        raise DataError(f"logits_per_text must be a square (batch, batch) matrix of matched "
                        f"pairs, got {tuple(logits_per_text.shape)}")
    logits = logits_per_text.float()
    target = torch.arange(logits.size(0), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class CLIP(PretrainedModel):
    """forward(input_ids=None, pixel_values=None, attention_mask=None, *, return_loss=False,
    output_attentions=False) -> CLIPOutput; either side alone fills its own fields."""

    config_class = CLIPConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # embeds text and images, generates nothing
    main_input_name: ClassVar[str] = "pixel_values"  # as transformers names it

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = c = config
        text, vision = c.side("text"), c.side("vision")
        # text: tokens + learned positions -> causal pre-norm layers -> final LayerNorm
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_d_model)
        self.text_position = POSITION.build("learned", d_model=c.text_d_model,
                                            n_heads=c.text_n_heads, max_seq_len=c.text_max_len,
                                            init_std=c.init_std)
        self.text_dropout = nn.Dropout(c.dropout)
        self.text_encoder = encoder(text)
        self.text_projection = nn.Linear(c.text_d_model, c.projection_dim, bias=False)
        # vision: patches + [CLS] + positions -> LayerNorm -> pre-norm layers; the final
        # LayerNorm of the stack is CLIP's post-LayerNorm (only the [CLS] state is read)
        grid = (c.image_size // c.patch_size,) * 2
        self.vision_embeddings = PatchEmbedding(c.vision_d_model, c.num_channels,
                                                (c.patch_size,) * 2, (c.patch_size,) * 2, grid,
                                                dropout=c.dropout, bias=False)
        self.vision_pre_norm = layer_norm(vision)
        self.vision_encoder = encoder(vision)
        self.vision_projection = nn.Linear(c.vision_d_model, c.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))  # log scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The released CLIP's initialisation (OpenAI's `initialize_parameters`, applied to
        both encoders as transformers does): tokens and positions N(0, init_std), [CLS]
        N(0, D^-1/2); in each layer q, k, v and the MLP's output N(0, D^-1/2 (2L)^-1/2), the
        attention output N(0, D^-1/2), the MLP's input N(0, (2D)^-1/2); projections
        N(0, D^-1/2); zero biases, unit norms; logit_scale = logit_scale_init."""
        c = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.token_embedding.weight, std=c.init_std)
        nn.init.normal_(self.text_position.embedding.weight, std=c.init_std)
        embeddings = self.vision_embeddings
        nn.init.normal_(embeddings.cls_token, std=c.vision_d_model ** -0.5)
        nn.init.normal_(embeddings.projection.weight, std=c.init_std)
        nn.init.normal_(embeddings.position_embeddings, std=c.init_std)
        for stack, d in ((self.text_encoder, c.text_d_model),
                         (self.vision_encoder, c.vision_d_model)):
            deep = d ** -0.5 * (2 * len(stack.layers)) ** -0.5
            for layer in stack.layers:
                attention, mlp = layer.self_attn, layer.feed_forward
                for linear in (attention.q_proj, attention.k_proj, attention.v_proj,
                               mlp.down_proj):
                    nn.init.normal_(linear.weight, std=deep)
                nn.init.normal_(attention.out_proj.weight, std=d ** -0.5)
                nn.init.normal_(mlp.up_proj.weight, std=(2 * d) ** -0.5)
        nn.init.normal_(self.text_projection.weight, std=c.text_d_model ** -0.5)
        nn.init.normal_(self.vision_projection.weight, std=c.vision_d_model ** -0.5)
        with torch.no_grad():
            self.logit_scale.fill_(c.logit_scale_init)

    def check_text(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        """DataError naming `input_ids` / `attention_mask` unless they are (B, T) ids in the
        vocabulary, T <= text_max_len, each row holding eos_token_id; the (B, 1, 1, T) mask."""
        c = self.config
        limits = SimpleNamespace(vocab_size=c.vocab_size, max_seq_len=c.text_max_len)
        try:
            check_input_ids(input_ids, limits)
            mask = key_padding_mask(attention_mask, *input_ids.shape)
        except (TypeError, ValueError) as error:
            raise DataError(str(error).replace("max_seq_len=", "text_max_len=")) from None
        if c.eos_token_id != 2:
            has_eos = (input_ids == c.eos_token_id).any(dim=1)  # (B,)
            if not bool(has_eos.all()):
                row = int((~has_eos).nonzero()[0])
                raise DataError(f"input_ids: row {row} has no eos_token_id={c.eos_token_id}; "
                                "CLIP reads a caption at its end-of-text token (frame captions "
                                "with attnlab.tokenizers.captions.encode_captions)")
        return mask

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                    output_attentions: bool = False) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """(pooled (B, Dt) final-norm state at each row's end-of-text token, attentions)."""
        mask = self.check_text(input_ids, attention_mask)  # (B, 1, 1, T) or None
        T = input_ids.size(1)
        positions = torch.arange(T, device=input_ids.device)
        x = self.text_dropout(self.token_embedding(input_ids) + self.text_position(positions))
        out = self.text_encoder(x, mask=mask, causal=True, output_attentions=output_attentions)
        if self.config.eos_token_id == 2:  # transformers' legacy configs: the largest id
            where = input_ids.argmax(dim=-1)  # (B,)
        else:  # the first end-of-text token of each row
            where = (input_ids == self.config.eos_token_id).int().argmax(dim=-1)  # (B,)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        return out.last_hidden_state[rows, where], out.attentions  # (B, Dt)

    def encode_image(self, pixel_values: Tensor, *, output_attentions: bool = False
                     ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """(pooled (B, Dv) post-norm [CLS] state, attentions)."""
        c = self.config
        try:
            check_pixel_batch(pixel_values, c.num_channels)
        except TypeError as error:
            raise DataError(str(error)) from None
        H, W = pixel_values.shape[-2:]
        if (H, W) != (c.image_size, c.image_size):
            raise DataError(f"pixel_values: image size {H}x{W} does not match the model's "
                            f"{c.image_size}x{c.image_size} (config.image_size)")
        x = self.vision_embeddings(pixel_values.to(self.vision_projection.weight.dtype))
        out = self.vision_encoder(self.vision_pre_norm(x), output_attentions=output_attentions)
        return out.last_hidden_state[:, 0], out.attentions  # (B, Dv)

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None
                          ) -> Tensor:
        """Projected text embeddings (B, P), not normalised (transformers' convention)."""
        return self.text_projection(self.encode_text(input_ids, attention_mask)[0])

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        """Projected image embeddings (B, P), not normalised (transformers' convention)."""
        return self.vision_projection(self.encode_image(pixel_values)[0])

    def forward(self, input_ids: Tensor | None = None, pixel_values: Tensor | None = None,
                attention_mask: Tensor | None = None, *, return_loss: bool = False,
                output_attentions: bool = False) -> CLIPOutput:
        if input_ids is None and pixel_values is None:
            raise DataError("CLIP needs input_ids, pixel_values or both; got neither")
        if input_ids is None and attention_mask is not None:
            raise DataError("attention_mask given without input_ids")
        shapes = [None if t is None else tuple(getattr(t, "shape", ()))
                  for t in (input_ids, pixel_values)]
        if return_loss and (None in shapes or shapes[0][:1] != shapes[1][:1]):
            raise DataError(f"return_loss needs matched pairs (input_ids and pixel_values of "
                            f"one batch size), got input_ids {shapes[0]}, pixel_values "
                            f"{shapes[1]}")
        out = CLIPOutput(None, None, None, None)
        if input_ids is not None:
            pooled, out.text_attentions = self.encode_text(
                input_ids, attention_mask, output_attentions=output_attentions)
            out.text_embeds = F.normalize(self.text_projection(pooled), dim=-1)  # (Bt, P)
        if pixel_values is not None:
            pooled, out.vision_attentions = self.encode_image(
                pixel_values, output_attentions=output_attentions)
            out.image_embeds = F.normalize(self.vision_projection(pooled), dim=-1)  # (Bi, P)
        if out.text_embeds is None or out.image_embeds is None:
            return out
        scale = self.logit_scale.exp()
        if return_loss:  # the paper's clip, on the training path only (module docstring)
            scale = scale.clamp(max=MAX_LOGIT_SCALE)
        out.logits_per_text = (out.text_embeds @ out.image_embeds.t()) * scale  # (Bt, Bi)
        out.logits_per_image = out.logits_per_text.t()  # (Bi, Bt)
        if return_loss:
            out.loss = contrastive_loss(out.logits_per_text)
        return out


__all__ = ["CLIP", "MAX_LOGIT_SCALE", "CLIPConfig", "CLIPOutput", "contrastive_loss"]
