"""BigBird block-sparse attention, ITC variant (Zaheer et al., 2020, "Big Bird: Transformers for
Longer Sequences").

The sequence is cut into blocks of `block` tokens. A query block attends to the key blocks of
its window (itself and its neighbours), to the first `n_global_blocks` blocks (which in turn
attend to everything: internal transformer construction, ITC) and to `n_random_blocks` other
blocks drawn at random for each head and query block. The random blocks come from a seed
buffer drawn from the global RNG at construction, so the same module gives the same output for
any input length and every batch row uses the same pattern. All groups share one softmax.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.nn.attention.sliding_window import (
    Part,
    check_dropout,
    check_int,
    chunked,
    pad_dim,
    softmax_parts,
    unchunk,
)


@ATTENTION.register("bigbird")
class BigBirdAttention(EfficientAttention):
    """Window + global + random blocks of size b, bidirectional.

    Time O(T b (n_window_blocks + g + r) Dh) and memory O(T b (n_window_blocks + g + r)) for
    block b, g global and r random blocks. Exact softmax attention when those blocks cover the
    sequence (e.g. T <= 3 blocks with the defaults, or r >= the blocks left over).
    Not causal: global blocks read the whole sequence and random blocks may lie in the future.

    Args:
        d_model, n_heads, head_dim, bias: as for EfficientAttention.
        block: tokens per block b (>= 1).
        n_window_blocks: odd number of neighbouring key blocks, the query's block in the middle.
        n_global_blocks: g, the first g blocks are global both ways (>= 0).
        n_random_blocks: r, random key blocks per query block and head (>= 0).
        dropout: dropout on the attention weights during training.
    """

    supports_causal: ClassVar[bool] = False
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False  # blocks and global tokens live on one sequence
    supports_cache: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = "n_random_blocks"
    complexity: ClassVar[str] = "time O(T b (w + g + r) Dh), memory O(T b (w + g + r))"

    def __init__(self, d_model: int, n_heads: int, *, block: int = 32, n_window_blocks: int = 3,
                 n_global_blocks: int = 1, n_random_blocks: int = 2, dropout: float = 0.0,
                 head_dim: int | None = None, bias: bool = True) -> None:
        check_int("block", block, 1)
        check_int("n_window_blocks", n_window_blocks, 1)
        if n_window_blocks % 2 == 0:
            raise ValueError(f"n_window_blocks must be odd (the query block in the middle), "
                             f"got {n_window_blocks}")
        check_int("n_global_blocks", n_global_blocks, 0)
        check_int("n_random_blocks", n_random_blocks, 0)
        check_dropout(dropout)
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        self.block, self.n_window_blocks = block, n_window_blocks
        self.n_global_blocks, self.n_random_blocks = n_global_blocks, n_random_blocks
        self.dropout = dropout
        self.register_buffer("seed", torch.zeros((), dtype=torch.int64))
        self.redraw()

    def redraw(self) -> None:
        """Draw a new random-block pattern from the global torch RNG."""
        self.seed.fill_(int(torch.randint(0, 2**62, ())))

    def random_blocks(self, n_blocks: int) -> Tensor:
        """(H, n_blocks, r') key blocks per head and query block; -1 where none was left.

        Drawn among the blocks outside the query's window and the global blocks, without
        repeats (the r largest of uniform draws); costs O(H n_blocks^2) random numbers.
        """
        generator = torch.Generator().manual_seed(int(self.seed))
        draws = torch.rand(self.n_heads, n_blocks, n_blocks, generator=generator)  # (H, n, n)
        blocks = torch.arange(n_blocks)
        near = (blocks[:, None] - blocks).abs() <= self.n_window_blocks // 2  # (n, n)
        draws = draws.masked_fill(near | (blocks < self.n_global_blocks), -1.0)
        top, index = draws.topk(min(self.n_random_blocks, n_blocks), dim=-1)  # (H, n, r')
        return index.masked_fill(top < 0, -1).to(self.seed.device)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep: Tensor | None,
               mask: Tensor | None, causal: bool, need_weights: bool
               ) -> tuple[Tensor, Tensor | None]:
        B, H, T, Dh = q.shape
        b, scale = self.block, Dh ** -0.5
        n = -(-T // b)
        G = min(self.n_global_blocks * b, T)  # global tokens
        dropout = self.dropout if self.training else 0.0
        if key_keep is None:
            key_keep = torch.ones(B, T, dtype=torch.bool, device=q.device)
        if G > 0:  # the global rows attend to every key
            top, top_weights = AF.scaled_dot_product_attention(
                q[:, :, :G], k, v, mask=key_keep[:, None, None, :], dropout_p=dropout,
                need_weights=need_weights,
            )  # (B, H, G, Dh)
            if G == T:  # nothing but global rows (short inputs)
                return top, top_weights
        keep_blocks = chunked(key_keep[:, None, :, None], n, b)[..., 0]  # (B, 1, n, b)
        q_blocks = chunked(q * scale, n, b)  # (B, H, n, b, Dh), scaled once for all parts
        parts = [self.window_part(q_blocks, k, v, keep_blocks, G, T)]
        if G > 0:
            k_top, v_top = k[:, :, :G], v[:, :, :G]  # (B, H, G, Dh)
            parts.append(Part(unchunk(q_blocks, T) @ k_top.transpose(-1, -2),  # (B, H, T, G)
                              key_keep[:, None, None, :G], lambda: torch.arange(G, device=q.device),
                              lambda weights: weights @ v_top))
        random = self.random_blocks(n)  # (H, n, r)
        if random.size(-1) > 0 and (random >= 0).any():
            parts.append(self.random_part(q_blocks, k, v, keep_blocks, random, T))
        out, weights = softmax_parts(parts, key_length=T, dropout=dropout,
                                     need_weights=need_weights)  # (B, H, T, Dh)
        if G > 0:  # the global rows replace their (unused) local rows
            out = torch.cat([top, out[:, :, G:]], dim=2)  # (B, H, T, Dh)
            if need_weights:
                weights = torch.cat([top_weights, weights[:, :, G:]], dim=2)  # (B, H, T, T)
        return out, weights

    def window_part(self, q_blocks: Tensor, k: Tensor, v: Tensor, keep_blocks: Tensor,
                    G: int, T: int) -> Part:
        """Each query block against its n_window_blocks neighbouring key blocks."""
        n, b = q_blocks.size(2), self.block
        half = self.n_window_blocks // 2
        span = self.n_window_blocks * b
        right = n * b - T + half * b

        def spans(x: Tensor) -> Tensor:  # (..., T, E) -> (..., n, E, span)
            return pad_dim(x, -2, half * b, right).unfold(-2, span, b)

        scores = q_blocks @ spans(k)  # (B, H, n, b, span)
        v_spans = spans(v).transpose(-1, -2)  # (B, H, n, span, Dh)
        index = (torch.arange(n, device=k.device)[:, None] * b
                 + torch.arange(span, device=k.device) - half * b)  # (n, span)
        key_keep = keep_blocks.flatten(-2)[..., :T]  # (B, 1, T)
        ok = spans(key_keep[..., None])[..., 0, :] & (index >= G)  # (B, 1, n, span)
        ok = ok[..., None, :].expand(*ok.shape[:-1], b, span)  # (B, 1, n, b, span)

        def mix(weights: Tensor) -> Tensor:  # (B, H, T, span) -> (B, H, T, Dh)
            return unchunk(chunked(weights, n, b) @ v_spans, T)

        def key_index() -> Tensor:  # (T, span)
            return unchunk(index.clamp(0, T - 1)[:, None, :].expand(n, b, span), T)

        return Part(unchunk(scores, T), unchunk(ok, T), key_index, mix)

    def random_part(self, q_blocks: Tensor, k: Tensor, v: Tensor, keep_blocks: Tensor,
                    random: Tensor, T: int) -> Part:
        """Each query block against its r random key blocks (one draw per head)."""
        n, b = q_blocks.size(2), self.block
        H, r = random.size(0), random.size(-1)
        heads = torch.arange(H, device=k.device)[:, None, None]  # (H, 1, 1)
        safe = random.clamp(min=0)  # (H, n, r)

        def gather(x: Tensor) -> Tensor:  # (B, H, T, E) -> (B, H, n, r b, E)
            return chunked(x, n, b)[:, heads, safe].flatten(-3, -2)

        scores = q_blocks @ gather(k).transpose(-1, -2)
        # scores: (B, H, n, b, r b)
        keep = keep_blocks.expand(-1, H, -1, -1)[:, heads, safe]  # (B, H, n, r, b)
        keep = (keep & (random >= 0)[..., None]).flatten(-2)  # (B, H, n, r b)
        index = (safe[..., None] * b + torch.arange(b, device=k.device)).flatten(-2)  # (H, n, rb)
        v_random = gather(v)  # (B, H, n, r b, Dh)
        ok = keep[..., None, :].expand(*keep.shape[:-1], b, r * b)  # (B, H, n, b, r b)

        def mix(weights: Tensor) -> Tensor:  # (B, H, T, r b) -> (B, H, T, Dh)
            return unchunk(chunked(weights, n, b) @ v_random, T)

        def key_index() -> Tensor:  # (H, T, r b)
            return unchunk(index.clamp(max=T - 1)[..., None, :].expand(H, n, b, r * b), T)

        return Part(unchunk(scores, T), unchunk(ok, T), key_index, mix)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, block={self.block}, "
                f"n_window_blocks={self.n_window_blocks}, n_global_blocks={self.n_global_blocks}"
                f", n_random_blocks={self.n_random_blocks}, dropout={self.dropout}")
