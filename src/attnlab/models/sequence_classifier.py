"""The sequence classifier every attention variant is trained in, as in Long Range Arena (Tay et
al., 2021): the same encoder with only the attention mechanism swapped.

input_ids (B, T) -> token embedding + absolute positions (learned or sinusoidal, from POSITION)
-> n_layers pre-norm EncoderLayers (Xiong et al., 2020) whose self-attention is
ATTENTION.build(variant, ...) -> final LayerNorm -> pooling -> linear -> logits.
Pooling is "mean" over real tokens (the default: no extra token, and every position gets a
gradient from the first step) or "first": position 0 only, for a task whose first token asks
the question (LRA pools a [CLS] token; retrieval's query token plays that role), or "last": each
row's last real token.

`variant` may also name a recurrent sequence mixer (MIXER: Mamba, RWKV, RetNet's retention, an
LSTM; nn/mixers/) in the self-attention slot. A mixer reads left to right, so its layers are
called with causal=True and position 0 has read one token: "first" pooling is refused, and
"last" (the one position that has read the whole row, as decoder-only classifiers read it) or
"mean" over the causal outputs pools it. A mixer counts positions from each row's first real
token (embedding and position_ids alike), so a left-padded row gives the logits of the same row
unpadded; attention variants keep positions 0..T-1 (the tasks pad on the right).
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.common import check_attention_mask
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import EncoderLayer
from attnlab.nn.feedforward import FeedForward
from attnlab.nn.functional import padding_mask
from attnlab.nn.mixers import MIXER
from attnlab.nn.norm import LayerNorm
from attnlab.nn.position import POSITION

POOLINGS = ("mean", "first", "last")  # how the classifier reads one vector off the sequence


class ClassifierOutput(NamedTuple):
    logits: Tensor  # (B, n_classes)
    loss: Tensor | None  # mean cross-entropy when labels are given


def build_attention(variant: str, *, d_model: int, n_heads: int, max_length: int,
                    dropout: float = 0.0, **knobs: Any) -> nn.Module:
    """ATTENTION.build with the keywords a variant's constructor takes: `max_length` for those
    that size parameters by the sequence (Linformer's projections, Synthesizer's tables) and
    attention-weight `dropout` (when > 0) where it exists; `knobs` go through unchanged."""
    accepted = inspect.signature(ATTENTION.get(variant)).parameters
    extra: dict[str, Any] = {}
    if "max_length" in accepted:
        extra["max_length"] = max_length
    if "dropout" in accepted and dropout > 0:
        extra["dropout"] = dropout
    return ATTENTION.build(variant, d_model=d_model, n_heads=n_heads, **extra, **knobs)


def is_mixer(variant: str) -> bool:
    """True when `variant` names a recurrent sequence mixer (MIXER) rather than an attention."""
    return variant in MIXER and variant not in ATTENTION


def build_mixing(variant: str, *, d_model: int, n_heads: int, max_length: int,
                 dropout: float = 0.0, **knobs: Any) -> nn.Module:
    """The self-attention slot of a layer: `build_attention` for an ATTENTION name; for a MIXER
    name, MIXER.build(variant, d_model=d_model, **knobs), the mixer's own defaults otherwise
    (the heads of RetNet's retention also set its decays, so the attention's n_heads is not
    forced on it; knobs={"n_heads": ...} does that)."""
    if is_mixer(variant):
        return MIXER.build(variant, d_model=d_model, **knobs)
    if variant not in ATTENTION:
        raise ValueError(f"variant must be a registered attention {ATTENTION.names()} or "
                         f"sequence mixer {MIXER.names()}, got {variant!r}")
    return build_attention(variant, d_model=d_model, n_heads=n_heads, max_length=max_length,
                           dropout=dropout, **knobs)


class SequenceClassifier(nn.Module):
    """Args:
        variant: ATTENTION name used in every layer, or a MIXER name (called causally).
        vocab_size, n_classes, max_length: token ids < vocab_size, labels < n_classes,
            sequences of at most max_length tokens.
        d_model, n_heads, n_layers, d_ff: encoder sizes.
        dropout: on embeddings, residual branches and inside the FFN.
        attention_dropout: on attention weights, for variants that have it (off by default:
            on CPU it moves fused attention onto its slow unfused path).
        position: an absolute POSITION scheme ("learned" or "sinusoidal").
        pooling: "mean" over real tokens, "first" (the hidden state at position 0 only; not
            for a mixer) or "last" (each row's last real token).
        knobs: extra keywords for the attention or mixer constructor (window, n_features,
            chunk_size, ...).
    """

    def __init__(self, variant: str, *, vocab_size: int, n_classes: int, max_length: int,
                 d_model: int = 64, n_heads: int = 4, n_layers: int = 2, d_ff: int = 128,
                 dropout: float = 0.0, attention_dropout: float = 0.0,
                 position: str = "learned", pooling: str = "mean",
                 knobs: dict[str, Any] | None = None) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("n_classes", n_classes),
                            ("max_length", max_length), ("n_layers", n_layers), ("d_ff", d_ff)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if position not in POSITION or POSITION.get(position).kind != "absolute":
            absolute = [n for n in POSITION.names() if POSITION.get(n).kind == "absolute"]
            raise ValueError(f"position must be an absolute scheme, one of {absolute}, "
                             f"got {position!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.causal = is_mixer(variant)  # mixers read left to right
        if self.causal and pooling == "first":
            raise ValueError(f"pooling must be 'last' or 'mean' for the sequence mixer "
                             f"{variant!r} (causal: its position 0 has read one token), got "
                             "'first'")
        self.variant, self.max_length, self.pooling = variant, max_length, pooling
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.position = POSITION.build(position, d_model=d_model, n_heads=n_heads,
                                       max_seq_len=max_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                build_mixing(variant, d_model=d_model, n_heads=n_heads, max_length=max_length,
                             dropout=attention_dropout, **(knobs or {})),
                FeedForward(d_model, d_ff, activation="gelu", dropout=dropout),
                LayerNorm(d_model), LayerNorm(d_model), dropout=dropout, norm_first=True)
            for _ in range(n_layers))
        self.final_norm = LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
        # a key-padding mask is passed only to mechanisms that take masks
        self.takes_mask = bool(getattr(self.layers[0].self_attn, "supports_mask", True))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        if T > self.max_length:
            raise ValueError(f"input length must be <= max_length={self.max_length}, got {T}")
        if attention_mask is not None:
            check_attention_mask(attention_mask, B, T)
        keep = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
                else attention_mask.bool())  # (B, T)
        if self.causal:  # counted from each row's first real token (left padding reads alike)
            positions = (keep.long().cumsum(-1) - 1).clamp_min(0)  # (B, T)
        else:
            positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.dropout(self.embed(input_ids) + self.position(positions))  # (B, T, D)
        # no mask when nothing is padded: same result, and the cheaper unmasked path
        mask = padding_mask(keep) if self.takes_mask and not bool(keep.all()) else None
        extra = dict(causal=True, position_ids=positions) if self.causal else {}
        for layer in self.layers:
            x = layer(x, mask=mask, **extra).hidden  # (B, T, D)
        x = self.final_norm(x)
        if self.pooling == "first":
            pooled = x[:, 0]  # (B, D)
        elif self.pooling == "last":
            index = torch.arange(T, device=x.device) * keep  # (B, T): the largest is the last
            last = index.argmax(-1)  # (B,) each row's last real position (0 if none)
            pooled = x[torch.arange(B, device=x.device), last]  # (B, D)
        else:
            weights = keep.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)
        logits = self.head(pooled)  # (B, n_classes)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return ClassifierOutput(logits, loss)
