"""Longformer attention (Beltagy et al., 2020, "Longformer: The Long-Document Transformer").

Every token attends to a (optionally dilated) sliding window of `window` positions on each side
plus to the first `n_global` tokens (like [CLS]); those global tokens attend to the whole
sequence. As in the paper, the global rows use their own projections Q_g, K_g, V_g, initialised
as copies of Q, K, V so that a fresh module starts from plain attention. A dilated window with
dilation d is a plain window inside each of the d subsequences of positions with the same
residue mod d, which is how it is computed. Local and global keys share one softmax.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import Tensor

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import ATTENTION, AttentionOutput
from attnlab.nn.attention.efficient import EfficientAttention
from attnlab.nn.attention.sliding_window import (
    Part,
    band,
    check_dropout,
    check_int,
    chunked,
    softmax_parts,
)
from attnlab.nn.cache import KVCache


@ATTENTION.register("longformer")
class LongformerAttention(EfficientAttention):
    """Sliding window (reach window * dilation) plus g global tokens, bidirectional.

    Time O(T (w + g) Dh) and memory O(T (w + g)) for window w and g global tokens. Exact softmax
    attention when window * dilation >= T - 1 and the global projections equal the local ones.
    Not causal: the global tokens read the whole sequence, the future included, by design (the
    paper's autoregressive setting drops them and uses the plain sliding window).

    Args:
        d_model, n_heads, head_dim, bias: as for EfficientAttention.
        window: reach on each side, counted in dilated steps (>= 0).
        dilation: gap d between attended positions (>= 1).
        n_global: the first g tokens are global (>= 0).
        global_projections: separate Q_g, K_g, V_g for the global rows (False: reuse Q, K, V).
        dropout: dropout on the attention weights during training.
    """

    supports_causal: ClassVar[bool] = False
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False  # windows and global tokens live on one sequence
    supports_cache: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = "window"
    complexity: ClassVar[str] = "time O(T (w + g) Dh), memory O(T (w + g))"

    def __init__(self, d_model: int, n_heads: int, *, window: int = 64, dilation: int = 1,
                 n_global: int = 1, global_projections: bool = True, dropout: float = 0.0,
                 head_dim: int | None = None, bias: bool = True) -> None:
        check_int("window", window, 0)
        check_int("dilation", dilation, 1)
        check_int("n_global", n_global, 0)
        check_dropout(dropout)
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        self.window, self.dilation, self.n_global = window, dilation, n_global
        self.dropout = dropout
        self.global_projections = global_projections and n_global > 0
        if self.global_projections:  # no global token: the projections would never train
            self.global_q_proj = copy.deepcopy(self.q_proj)
            self.global_k_proj = copy.deepcopy(self.k_proj)
            self.global_v_proj = copy.deepcopy(self.v_proj)

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                causal: bool = False, cache: KVCache | None = None, need_weights: bool = False,
                bias: Tensor | None = None, position_ids: Tensor | None = None
                ) -> AttentionOutput:
        # Overridden because the global rows need their own projections of x.
        self.check_call(x, context, mask, causal, cache, bias)
        B, T, _ = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, H, T, Dh)
        k = self.split_heads(self.k_proj(x))  # (B, H, T, Dh)
        v = self.split_heads(self.v_proj(x))  # (B, H, T, Dh)
        key_keep, _ = self.split_mask(mask, B, T, T)  # (B, T) or None
        out, weights = self.local_rows(q, k, v, key_keep, need_weights)  # (B, H, T, Dh)
        g = min(self.n_global, T)
        if g > 0:
            if self.global_projections:
                q = self.split_heads(self.global_q_proj(x[:, :g]))  # (B, H, g, Dh)
                k = self.split_heads(self.global_k_proj(x))  # (B, H, T, Dh)
                v = self.split_heads(self.global_v_proj(x))  # (B, H, T, Dh)
            keep = None if key_keep is None else key_keep[:, None, None, :]  # (B, 1, 1, T)
            dropout = self.dropout if self.training else 0.0
            top, top_weights = AF.scaled_dot_product_attention(
                q[:, :, :g], k, v, mask=keep, dropout_p=dropout, need_weights=need_weights
            )  # (B, H, g, Dh)
            out = torch.cat([top, out[:, :, g:]], dim=2)  # (B, H, T, Dh)
            if need_weights:
                weights = torch.cat([top_weights, weights[:, :, g:]], dim=2)  # (B, H, T, T)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H * Dh)
        return AttentionOutput(self.out_proj(out), weights, cache)

    def local_rows(self, q: Tensor, k: Tensor, v: Tensor, key_keep: Tensor | None,
                   need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Every row as a non-global token: its dilated window plus the global keys."""
        B, H, T, Dh = q.shape
        d, g = self.dilation, min(self.n_global, T)
        n = -(-T // d)  # positions per residue class
        if key_keep is None:
            key_keep = torch.ones(B, T, dtype=torch.bool, device=q.device)

        def residues(x: Tensor) -> Tensor:  # (..., T, E) -> (..., d, n, E): position m d + r
            return chunked(x, n, d).transpose(-3, -2)

        # The global keys are taken out of the windows (they get their own slots below), so
        # that none counts twice.
        not_global = torch.arange(T, device=q.device) >= g  # (T,)
        keep = residues((key_keep & not_global)[:, None, :, None])[..., 0]  # (B, 1, d, n)
        local = band(residues(q), residues(k), residues(v), keep, window=self.window,
                     causal=False)  # slots: (B, H, d, n, L)
        residue = torch.arange(d, device=q.device)[:, None, None]  # (d, 1, 1)
        parts = [local._replace(index=lambda: local.index() * d + residue)]  # (d, n, L)
        if g > 0:
            k_top, v_top = k[:, :, None, :g], v[:, :, None, :g]  # (B, H, 1, g, Dh)
            scores = residues(q * Dh ** -0.5) @ k_top.transpose(-1, -2)  # (B, H, d, n, g)
            top_keep = key_keep[:, None, None, None, :g]  # (B, 1, 1, 1, g)
            parts.append(Part(scores, top_keep, lambda: torch.arange(g, device=q.device),
                              lambda weights: weights @ v_top))
        out, weights = softmax_parts(parts, key_length=n * d, need_weights=need_weights,
                                     dropout=self.dropout if self.training else 0.0)
        out = out.transpose(-3, -2).flatten(-3, -2)[:, :, :T]  # (B, H, T, Dh)
        if weights is not None:
            weights = weights.transpose(-3, -2).flatten(-3, -2)[:, :, :T, :T]  # (B, H, T, T)
        return out, weights

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, window={self.window}, dilation={self.dilation}, "
                f"n_global={self.n_global}, global_projections={self.global_projections}, "
                f"dropout={self.dropout}")
