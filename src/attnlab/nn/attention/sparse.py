"""Factorized sparse attention (Child et al., 2019, "Generating Long Sequences with Sparse
Transformers").

Two patterns with block (stride) l. "strided": query i sees key j when |i - j| < l (a local
band) or when i - j is a multiple of l (one column of the sequence laid out as rows of l).
"fixed": query i sees its own block floor(j / l) == floor(i / l) and the last c ("summary")
positions of every other block. Causal versions keep only j <= i; the non-causal versions are
the symmetric patterns (fixed: the summaries of all other blocks). The paper alternates or
merges the two factorized heads; here both components are the keys of one softmax (their
union, each key counted once). Local parts are computed by blocks, the strided part on the
(T / l, l) column layout, the summary part on the gathered summary columns.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from attnlab.nn.attention.base import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.nn.attention.sliding_window import (
    Part,
    band,
    check_dropout,
    check_int,
    chunked,
    softmax_parts,
    unchunk,
)

PATTERNS = ("strided", "fixed")


@ATTENTION.register("sparse")
class SparseAttention(EfficientAttention):
    """Sparse Transformer attention, "strided" or "fixed" pattern, block l, c summary positions.

    strided: time O(T (l + T / l) Dh), memory O(T (l + T / l)); fixed: time
    O(T (l + c T / l) Dh), memory O(T (l + c T / l)). Both are O(T sqrt(T)) at l ~ sqrt(T).
    strided is exact softmax attention when block >= T; fixed when one block covers T.

    Args:
        d_model, n_heads, head_dim, bias: as for EfficientAttention.
        pattern: "strided" or "fixed".
        block: the block length / stride l (>= 1).
        n_summary: c, the summary positions at the end of each block ("fixed"; 1 <= c <= l).
        dropout: dropout on the attention weights during training.
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False  # the pattern is defined on one sequence's positions
    supports_cache: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = "block"
    complexity: ClassVar[str] = "time O(T (l + T/l) Dh), memory O(T (l + T/l)) for block l"

    def __init__(self, d_model: int, n_heads: int, *, pattern: str = "strided", block: int = 64,
                 n_summary: int = 1, dropout: float = 0.0, head_dim: int | None = None,
                 bias: bool = True) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
        check_int("block", block, 1)
        check_int("n_summary", n_summary, 1)
        if n_summary > block:
            raise ValueError(f"n_summary must be <= block ({block}), got {n_summary}")
        check_dropout(dropout)
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        self.pattern = pattern
        self.block = block
        self.n_summary = n_summary
        self.dropout = dropout

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep: Tensor | None,
               mask: Tensor | None, causal: bool, need_weights: bool
               ) -> tuple[Tensor, Tensor | None]:
        keep = None if key_keep is None else key_keep[:, None, :]  # (B, 1, S)
        dropout = self.dropout if self.training else 0.0
        if self.pattern == "fixed":
            parts = [self.own_block(q, k, v, keep, causal), self.summaries(q, k, v, keep, causal)]
            return softmax_parts(parts, key_length=k.size(-2), need_weights=need_weights,
                                 dropout=dropout)
        # strided: the rows are taken in column order (r n + a for position a l + r), the
        # layout of the long strided part, so that only the short band part is reordered.
        T, l = q.size(-2), self.block
        n = -(-T // l)
        local = band(q, k, v, keep, window=l - 1, causal=causal)
        parts = [column_order(local, n, l), self.strided(q, k, v, keep, causal)]
        out, weights = softmax_parts(parts, key_length=k.size(-2), need_weights=need_weights,
                                     dropout=dropout)  # (B, H, l n, Dh)
        return position_order(out, n, l, T), (
            None if weights is None else position_order(weights, n, l, T))

    def strided(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
                causal: bool) -> Part:
        """Keys a nonzero multiple of l away (causal: behind); the band holds distance 0.

        Rows in column order: row r n + a is the query at position a l + r.
        """
        T, l = q.size(-2), self.block
        n = -(-T // l)

        def columns(x: Tensor) -> Tensor:  # (..., T, E) -> (..., l, n, E): position a l + r
            return chunked(x, n, l).transpose(-3, -2)

        scores = columns(q * q.size(-1) ** -0.5) @ columns(k).transpose(-1, -2)  # (..., l, n, n)
        rows = torch.arange(n, device=q.device)
        ahead = rows[:, None] - rows  # (n, n): query row minus key row
        seen = ahead > 0 if causal else ahead != 0
        index = rows * l + torch.arange(l, device=q.device)[:, None]  # (l, n): key positions
        ok = seen & (index < T)[:, None, :]  # (l, n, n)
        if keep is not None:
            ok = ok & columns(keep[..., None])[..., 0][..., None, :]  # (..., l, n, n)
        v_columns = columns(v)  # (..., l, n, Dh)

        def mix(weights: Tensor) -> Tensor:  # (..., l n, n) -> (..., l n, Dh)
            return (weights.unflatten(-2, (l, n)) @ v_columns).flatten(-3, -2)

        def key_index() -> Tensor:  # (l n, n)
            return index.clamp(max=T - 1)[:, None, :].expand(l, n, n).flatten(-3, -2)

        return Part(scores.flatten(-3, -2), ok.flatten(-3, -2), key_index, mix)

    def own_block(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
                  causal: bool) -> Part:
        """Keys in the query's own block of l (causal: up to the query)."""
        T, l = q.size(-2), self.block
        n = -(-T // l)
        scores = chunked(q * q.size(-1) ** -0.5, n, l) @ chunked(k, n, l).transpose(-1, -2)
        # scores: (..., n, l, l)
        offsets = torch.arange(l, device=q.device)
        index = torch.arange(n, device=q.device)[:, None] * l + offsets  # (n, l)
        ok = (index < T)[:, None, :]  # (n, 1, l)
        if causal:
            ok = ok & (offsets[:, None] >= offsets)  # (n, l, l)
        if keep is not None:
            ok = ok & chunked(keep[..., None], n, l)[..., 0][..., None, :]  # (..., n, l, l)
        v_blocks = chunked(v, n, l)  # (..., n, l, Dh)

        def mix(weights: Tensor) -> Tensor:  # (..., T, l) -> (..., T, Dh)
            return unchunk(chunked(weights, n, l) @ v_blocks, T)

        def key_index() -> Tensor:  # (T, l)
            return unchunk(index.clamp(max=T - 1)[:, None, :].expand(n, l, l), T)

        return Part(unchunk(scores, T), unchunk(ok.expand(*ok.shape[:-3], n, l, l), T),
                    key_index, mix)

    def summaries(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None,
                  causal: bool) -> Part:
        """The last c positions of every other block (causal: of every earlier block)."""
        T, l, c = q.size(-2), self.block, self.n_summary
        n = -(-T // l)

        def gather(x: Tensor) -> Tensor:  # (..., T, E) -> (..., n c, E)
            return chunked(x, n, l)[..., l - c:, :].flatten(-3, -2)

        scores = (q * q.size(-1) ** -0.5) @ gather(k).transpose(-1, -2)  # (..., T, n c)
        key_block = torch.arange(n, device=q.device).repeat_interleave(c)  # (n c,)
        index = key_block * l + (l - c) + torch.arange(c, device=q.device).repeat(n)  # (n c,)
        query_block = torch.arange(T, device=q.device)[:, None] // l  # (T, 1)
        seen = key_block < query_block if causal else key_block != query_block  # (T, n c)
        ok = seen & (index < T)
        if keep is not None:
            ok = ok & gather(keep[..., None])[..., 0][..., None, :]
        v_summary = gather(v)  # (..., n c, Dh)
        return Part(scores, ok, lambda: index.clamp(max=T - 1),
                    lambda weights: weights @ v_summary)

    def extra_repr(self) -> str:
        extra = f", n_summary={self.n_summary}" if self.pattern == "fixed" else ""
        return (f"{super().extra_repr()}, pattern={self.pattern!r}, block={self.block}{extra}, "
                f"dropout={self.dropout}")


def column_order(part: Part, n: int, l: int) -> Part:
    """A part with rows in position order (a l + r) -> rows in column order (r n + a)."""
    T = part.scores.size(-2)

    def columns(x: Tensor) -> Tensor:  # (..., T, m) -> (..., l n, m)
        return chunked(x, n, l).transpose(-3, -2).flatten(-3, -2)

    def mix(weights: Tensor) -> Tensor:  # (..., l n, m) -> (..., l n, Dh)
        return columns(part.mix(position_order(weights, n, l, T)))

    keep = part.keep.expand(*part.keep.shape[:-2], T, part.keep.size(-1))
    return Part(columns(part.scores), columns(keep), lambda: columns(part.index()), mix)


def position_order(x: Tensor, n: int, l: int, T: int) -> Tensor:
    """(..., l n, m) rows in column order -> (..., T, m) rows in position order."""
    return unchunk(x.unflatten(-2, (l, n)).transpose(-3, -2), T)
