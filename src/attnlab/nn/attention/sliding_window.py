"""Sliding-window (local) attention (Parmar et al., 2018, "Image Transformer", local 1D
attention; Beltagy et al., 2020, "Longformer: The Long-Document Transformer", sliding window).

Each query attends only to the keys at most `window` positions away (causal: the `window`
previous keys and itself), so one layer moves information `window` positions and a stack of
L layers sees L * window. The queries are cut into chunks of about `window`; a chunk's keys are
one contiguous span of chunk + 2 window positions (an `unfold` of the padded keys), and a
distance mask inside the span keeps exactly the band. Time and memory grow as T w, not T^2.

The helpers below (`band`, `Part`, `softmax_parts`) are shared with the sparse, Longformer and
BigBird variants: each of those is a union of such key groups under one softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn.attention.base import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention


class Part(NamedTuple):
    """One group of key slots per query; the groups of a variant share one softmax."""

    scores: Tensor  # (..., T, m) scaled dot products of each query with its m slots
    keep: Tensor  # bool, broadcastable to scores: the slot holds a key this query may see
    # () -> long, broadcastable to scores: the slots' key positions (anything where not kept);
    # a function, so the (T, m) index is only built when the weights are asked for
    index: Callable[[], Tensor]
    mix: Callable[[Tensor], Tensor]  # slot weights (..., T, m) -> output (..., T, Dh)


def check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_dropout(dropout: float) -> None:
    if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")


def pad_dim(x: Tensor, dim: int, left: int, right: int) -> Tensor:
    """Zero (False) padding along `dim` for any dtype, bool included."""
    if left == right == 0:
        return x
    shape = list(x.shape)
    pieces = []
    for size in (left, right):
        shape[dim] = size
        pieces.append(x.new_zeros(shape))
    return torch.cat([pieces[0], x, pieces[1]], dim=dim)


def chunked(x: Tensor, n: int, size: int) -> Tensor:
    """(..., T, E) -> (..., n, size, E), zero-padding T up to n * size."""
    return pad_dim(x, -2, 0, n * size - x.size(-2)).unflatten(-2, (n, size))


def unchunk(x: Tensor, length: int) -> Tensor:
    """(..., n, size, E) -> (..., length, E): undo `chunked`, dropping the padded rows."""
    return x.flatten(-3, -2)[..., :length, :]


def band(q: Tensor, k: Tensor, v: Tensor, key_keep: Tensor | None, *, window: int,
         causal: bool) -> Part:
    """Keys within `window` of each query (causal: behind it), computed chunk by chunk.

    q (..., T, Dh); k, v (..., S, Dh) with T <= S, the queries being the last T positions
    (lower-right alignment, as in KV-cache decoding); key_keep (..., S) bool or None.
    """
    T, S = q.size(-2), k.size(-2)
    window = min(window, S - 1)  # a longer reach sees nothing more
    start = max(0, S - T - window)  # keys before `start` are out of every query's reach
    k, v = k[..., start:, :], v[..., start:, :]  # (..., S', Dh)
    kept = S - start
    chunk = max(1, min(window, T))
    n = -(-T // chunk)
    span = chunk + window * (1 if causal else 2)
    left = window - (kept - T)  # pad so that chunk i's span starts at i * chunk
    if span >= kept:  # a span would hold every key: one chunk over exactly the keys is cheaper
        chunk, n, span, left = T, 1, kept, 0
    right = (n - 1) * chunk + span - left - kept
    k_spans = pad_dim(k, -2, left, right).unfold(-2, span, chunk)  # (..., n, Dh, L)
    v_spans = pad_dim(v, -2, left, right).unfold(-2, span, chunk).transpose(-1, -2)
    # v_spans: (..., n, L, Dh)
    scores = chunked(q * q.size(-1) ** -0.5, n, chunk) @ k_spans  # (..., n, c, L)
    device = q.device
    index = torch.arange(n, device=device)[:, None] * chunk + torch.arange(span, device=device)
    index = index - left  # (n, L): key position among the kept keys
    real = (index >= 0) & (index < kept)  # (n, L)
    dist = (torch.arange(chunk, device=device)[:, None] + (kept - T + left)
            - torch.arange(span, device=device))  # (c, L): query position minus key position
    in_band = ((dist >= 0) & (dist <= window)) if causal else dist.abs() <= window
    keep = in_band & real[:, None, :]  # (n, c, L)
    if key_keep is not None:
        keep_spans = pad_dim(key_keep[..., start:], -1, left, right).unfold(-1, span, chunk)
        keep = keep & keep_spans[..., None, :]  # (..., n, c, L)

    def mix(weights: Tensor) -> Tensor:  # (..., T, L) -> (..., T, Dh)
        return unchunk(chunked(weights, n, chunk) @ v_spans, T)

    def key_index() -> Tensor:  # (T, L)
        return unchunk((index.clamp(0, kept - 1) + start)[:, None].expand(n, chunk, span), T)

    return Part(unchunk(scores, T), unchunk(keep, T), key_index, mix)


def softmax_parts(parts: Sequence[Part], *, key_length: int, dropout: float,
                  need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """One softmax over the union of the parts' slots; returns (output, dense weights or None).

    Each key must be kept in at most one part, so that no key is counted twice. Dropped slots
    get exactly zero weight (exp underflows to 0 beside a real score); a row with no key at all
    is zeroed through its (cheap) output instead of its (long) weight row. The dense
    (..., T, key_length) weights are scattered from the slots only when asked for.
    """
    sizes = [p.scores.size(-1) for p in parts]
    keeps = [p.keep.expand_as(p.scores) for p in parts]
    if len(parts) == 1:  # no copy to concatenate
        scores, dropped = parts[0].scores, ~keeps[0]  # (..., T, M)
    else:
        scores = torch.cat([p.scores for p in parts], dim=-1)  # (..., T, M)
        dropped = torch.cat(keeps, dim=-1).logical_not_()  # (..., T, M)
    compute = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(compute).masked_fill_(dropped, torch.finfo(compute).min)
    weights = torch.softmax(scores, dim=-1).to(parts[0].scores.dtype)  # (..., T, M)
    anything = ~dropped.all(dim=-1, keepdim=True)  # (..., T, 1): the row has a key
    mixed = F.dropout(weights, p=dropout) if dropout > 0.0 else weights
    out = sum(p.mix(w) for p, w in zip(parts, mixed.split(sizes, dim=-1), strict=True))
    out = out * anything  # (..., T, Dh)
    if not need_weights:
        return out, None
    index = torch.cat([p.index().expand_as(p.scores) for p in parts], dim=-1)  # (..., T, M)
    dense = weights.new_zeros(*weights.shape[:-1], key_length)  # (..., T, S)
    return out, dense.scatter_add_(-1, index, weights * anything)


@ATTENTION.register("sliding_window")
class SlidingWindowAttention(EfficientAttention):
    """Local attention: query i sees keys j with |i - j| <= window (causal: 0 <= i - j <= window).

    Time O(T w Dh) and memory O(T w) for T queries and window w (each chunk of w queries scores
    a span of 3w keys, 2w when causal). Exact softmax attention when window >= T - 1.

    Args:
        d_model, n_heads, head_dim, bias: as for EfficientAttention.
        window: reach on each side (>= 0; 0 = each token sees only itself).
        dropout: dropout on the attention weights during training.
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False  # a window over another sequence has no meaning
    supports_cache: ClassVar[bool] = True  # decoding needs only the last window + 1 keys
    budget_knob: ClassVar[str | None] = "window"
    complexity: ClassVar[str] = "time O(T w Dh), memory O(T w)"

    def __init__(self, d_model: int, n_heads: int, *, window: int = 64, dropout: float = 0.0,
                 head_dim: int | None = None, bias: bool = True) -> None:
        check_int("window", window, 0)
        check_dropout(dropout)
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        self.window = window
        self.dropout = dropout

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep: Tensor | None,
               mask: Tensor | None, causal: bool, need_weights: bool
               ) -> tuple[Tensor, Tensor | None]:
        keep = None if key_keep is None else key_keep[:, None, :]  # (B, 1, S)
        part = band(q, k, v, keep, window=self.window, causal=causal)
        return softmax_parts([part], key_length=k.size(-2), need_weights=need_weights,
                             dropout=self.dropout if self.training else 0.0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, dropout={self.dropout}"
