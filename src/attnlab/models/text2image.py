"""A DALL-E-style text-to-image Transformer (Ramesh et al. 2021, "Zero-Shot Text-to-Image
Generation", sec. 2.2): one decoder-only model over [caption tokens ; image codes].

The caption is `text_len` tokens (framed and padded with pad ids: every position of the prefix is
filled, as the paper's per-position padding), then the image as `grid x grid` discrete codes of
an image tokenizer (a VQ-VAE here, the paper's dVAE) in row-major order. One vocabulary: text ids
[0, text_vocab_size), image code k is id text_vocab_size + k. Token embedding + learned text
positions + learned row and column embeddings for image positions (the 2-D positions of the
paper's image embedding), pre-norm layers, final norm, output tied to the token embedding.

Attention: text causal; every image token sees all text and the earlier image tokens allowed by
the layer's mask (`attention_layout`: dense, or the paper's row / column / convolutional sparse
masks, `nn/image_masks.py`). Logits that predict image tokens have the text vocabulary at -inf
(and those that predict text the image vocabulary), so sampling yields only codes. The loss is
the paper's: text and image cross-entropies, each a mean over its tokens, weighted
text_loss_weight and 1 - text_loss_weight (1/8 and 7/8); padding targets are ignored.

    model = build_model("text2image-tiny")
    seqs = model.generate(text_ids, max_new_tokens=model.config.grid ** 2, do_sample=True,
                          top_k=64, seed=0)                     # KV cache, as any decoder-only
    codes = model.image_codes(seqs)                             # (B, grid, grid)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.models.causal_lm import CausalLM, CausalLMOutput, check_decoder_config
from attnlab.models.common import check_input_ids, key_padding_mask
from attnlab.models.gpt import decoder_layer, init_gpt2, layer_norm
from attnlab.nn.cache import DecoderCache
from attnlab.nn.image_masks import check_layout, image_attention_mask, layer_layouts
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class TextToImageConfig:
    """Sizes of the text-to-image decoder; `vocab_size` and `max_seq_len` follow from them."""

    model_type: ClassVar[str] = "text2image"

    text_vocab_size: int = 1000
    text_len: int = 24  # framed caption length, padded with pad_token_id
    image_vocab_size: int = 128  # the image tokenizer's codebook size
    grid: int = 8  # the image is grid x grid codes
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    d_ff: int = 1024
    dropout: float = 0.1
    attention_layout: str = "dense"  # dense | row | column | conv | dalle
    conv_kernel: int = 3
    text_loss_weight: float = 1 / 8  # the paper: text 1/8, image 7/8
    bos_token_id: int = 0  # the caption tokenizer's specials (tokenizers/captions.py)
    eos_token_id: int = 1
    pad_token_id: int = 2
    feedforward: str = "gelu"
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    kernel: str = "sdpa"

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + self.image_vocab_size

    @property
    def image_len(self) -> int:
        return self.grid * self.grid

    @property
    def max_seq_len(self) -> int:
        return self.text_len + self.image_len

    def __post_init__(self) -> None:
        check_decoder_config(self)
        for name in ("text_vocab_size", "text_len", "image_vocab_size", "grid", "conv_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        check_layout(self.attention_layout)
        if self.conv_kernel % 2 == 0:
            raise ConfigError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if not 0.0 <= self.text_loss_weight <= 1.0:
            raise ConfigError(f"text_loss_weight must be in [0, 1], got {self.text_loss_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self, name) >= self.text_vocab_size:
                raise ConfigError(f"{name} must be a text id, below text_vocab_size="
                                  f"{self.text_vocab_size}, got {getattr(self, name)}")


@dataclass
class TextToImageOutput(CausalLMOutput):
    text_loss: Tensor | None = None  # mean cross-entropy of the text targets (nats)
    image_loss: Tensor | None = None  # mean cross-entropy of the image codes (nats)


@dataclass
class TextToImageCache(DecoderCache):
    """A decoder cache that also keeps each cached key's position (B, S), so the sparse masks
    read the same (query, key) positions in incremental decoding as in a full forward, left
    padding included."""

    positions: Tensor | None = None

    def reorder(self, index: Tensor, *, cross: bool = True) -> None:
        super().reorder(index, cross=cross)
        if self.positions is not None:
            self.positions = self.positions.index_select(0, index)


def text_image_losses(logits: Tensor, labels: Tensor, positions: Tensor, text_len: int,
                      pad_id: int) -> tuple[Tensor, Tensor]:
    """(text loss, image loss): mean cross-entropy of position t predicting labels[t + 1] over
    the text targets (pad and -100 ignored) and over the image targets; 0 where there are none.
    logits (B, T, V), labels (B, T), positions (B, T)."""
    targets = labels[:, 1:]  # (B, T - 1)
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                             targets.clamp(min=0).flatten(), reduction="none").view_as(targets)
    valid = (targets != -100) & (targets != pad_id)
    is_image = positions[:, 1:] >= text_len  # (B, T - 1)

    def mean(where: Tensor) -> Tensor:
        return (losses * where).sum() / where.sum().clamp(min=1)

    return mean(valid & ~is_image), mean(valid & is_image)


class TextToImage(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None) -> TextToImageOutput."""

    config_class = TextToImageConfig
    text_lm = False  # caption tokens + image codes: trained by `attnlab train text2image`

    def __init__(self, config: TextToImageConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.text_position = nn.Embedding(c.text_len, c.d_model)
        self.row_position = nn.Embedding(c.grid, c.d_model)
        self.column_position = nn.Embedding(c.grid, c.d_model)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.decoder = Decoder([decoder_layer(c) for _ in range(c.n_layers)],
                               final_norm=layer_norm(c))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.layouts = layer_layouts(c.attention_layout, c.n_layers)
        for kind in sorted(set(self.layouts) - {"dense"}):  # (L, L) tables, not saved
            self.register_buffer(f"mask_{kind}", image_attention_mask(
                kind, c.text_len, c.grid, conv_kernel=c.conv_kernel), persistent=False)
        self.reset_parameters()
        self.lm_head.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        init_gpt2(self, self.decoder, self.config)  # N(0, 0.02), residuals / sqrt(2N)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Tokens + text positions or (row + column) image positions: (B, T) -> (B, T, D)."""
        c = self.config
        p = position_ids.clamp(0, c.max_seq_len - 1)
        q = (p - c.text_len).clamp(min=0)  # raster index in the image
        image = self.row_position(q // c.grid) + self.column_position(q % c.grid)
        text = self.text_position(p.clamp(max=c.text_len - 1))
        where = torch.where((p < c.text_len)[..., None], text, image)
        return self.embed_dropout(self.embed_tokens(input_ids) + where)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, *, position_ids: Tensor | None = None,
                cache: DecoderCache | None = None,
                output_attentions: bool = False) -> TextToImageOutput:
        """As CausalLM.forward; each layer gets its layout's mask (and the padding mask)."""
        c = self.config
        past = 0 if cache is None else cache.length
        check_input_ids(input_ids, c, "input_ids", offset=past)
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)
        positions = torch.broadcast_to(position_ids, (B, T))  # (B, T)
        key_positions = positions  # (B, S): every key's position, cached ones first
        if cache is not None:
            cached = getattr(cache, "positions", None)
            if cached is None and past:  # a plain DecoderCache: positions are the slots
                cached = torch.arange(past, device=input_ids.device).expand(B, past)
            if cached is not None:
                key_positions = torch.cat([cached, positions], dim=1)
            if isinstance(cache, TextToImageCache):
                cache.positions = key_positions
        padding = key_padding_mask(attention_mask, B, past + T)  # (B, 1, 1, S) or None
        masks = {"dense": padding}
        for kind in set(self.layouts) - {"dense"}:
            table = getattr(self, f"mask_{kind}")
            top = c.max_seq_len - 1
            mask = table[positions.clamp(0, top)[:, :, None],
                         key_positions.clamp(0, top)[:, None, :]][:, None]  # (B, 1, T, S)
            masks[kind] = mask if padding is None else mask & padding
        x = self.embed(input_ids, positions)
        attentions = []
        for i, layer in enumerate(self.decoder.layers):
            x, weights, _, _ = layer(x, mask=masks[self.layouts[i]],
                                     cache=None if cache is None else cache.layers[i],
                                     position_ids=positions, need_weights=output_attentions)
            attentions.append(weights)
        logits = self.restrict(self.lm_head(self.decoder.final_norm(x)), positions)
        out = TextToImageOutput(logits, attentions=tuple(attentions) if output_attentions
                                else None, cache=cache)
        if labels is not None:
            out.text_loss, out.image_loss = text_image_losses(logits, labels, positions,
                                                              c.text_len, c.pad_token_id)
            w = c.text_loss_weight
            out.loss = w * out.text_loss + (1 - w) * out.image_loss
        return out

    def restrict(self, logits: Tensor, positions: Tensor) -> Tensor:
        """-inf on the text vocabulary where the next token is an image code (position >=
        text_len - 1), and on the image vocabulary where it is text. logits (B, T, V)."""
        c = self.config
        predicts_image = (positions >= c.text_len - 1)[..., None]  # (B, T, 1)
        is_text_id = torch.arange(c.vocab_size, device=logits.device) < c.text_vocab_size
        return logits.masked_fill(predicts_image == is_text_id, float("-inf"))

    def new_cache(self, max_length: int | None = None) -> TextToImageCache:
        if max_length is not None and not 0 < max_length <= self.config.max_seq_len:
            raise ValueError(f"max_length must be in [1, max_seq_len={self.config.max_seq_len}],"
                             f" got {max_length}")
        return TextToImageCache.empty(self.config.n_layers, max_length=max_length)

    def image_codes(self, sequences: Tensor) -> Tensor:
        """[text ; image] ids (B, text_len + grid**2) -> image codes (B, grid, grid)."""
        c = self.config
        if sequences.dim() != 2 or sequences.size(1) != c.max_seq_len:
            raise ValueError(f"sequences must be (batch, text_len + grid**2 = {c.max_seq_len}),"
                             f" got {tuple(sequences.shape)}")
        codes = sequences[:, c.text_len:] - c.text_vocab_size  # (B, grid**2)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= c.image_vocab_size):
            raise ValueError(f"sequences: the image part must hold image ids in "
                             f"[{c.text_vocab_size}, {c.vocab_size}), got values in "
                             f"[{int(codes.min()) + c.text_vocab_size}, "
                             f"{int(codes.max()) + c.text_vocab_size}]")
        return codes.view(-1, c.grid, c.grid)


__all__ = ["TextToImage", "TextToImageCache", "TextToImageConfig", "TextToImageOutput",
           "text_image_losses"]
