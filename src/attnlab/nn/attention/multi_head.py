"""Multi-head scaled dot-product attention (Vaswani et al., 2017), with grouped-query
(Ainslie et al., 2023) and multi-query (Shazeer, 2019) attention through `n_kv_heads`.

MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).
H query heads share Hkv key/value heads (H % Hkv == 0): Hkv = H is MHA, Hkv = 1 is MQA.
The attention math itself is a kernel chosen by name ("sdpa" fused, "reference" pure).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.nn.attention.base import ATTENTION, Attention, AttentionOutput, check_positive
from attnlab.nn.attention.kernels import KERNELS
from attnlab.nn.cache import KVCache


@ATTENTION.register("multi_head")
class MultiHeadAttention(Attention):
    """Scaled dot-product attention over H heads; self- or cross-attention.

    Args:
        d_model: model width D (queries come in and go out at this width).
        n_heads: query heads H.
        n_kv_heads: key/value heads Hkv (default H). Must divide H.
        head_dim: Dh (default D // H).
        d_context: width of the cross-attention source (default D).
        bias: biases on the four projections.
        dropout: dropout on the attention weights during training.
        kernel: "sdpa" (PyTorch fused) or "reference" (the paper's four steps).
        rotary: an optional rotary position module (kind "rotary") applied to q and k in
            self-attention; shared modules are fine (it holds no parameters).
        scale: factor on q k^T (default 1 / sqrt(Dh)); T5 uses 1.0, its initialisation
            having folded the 1 / sqrt(Dh) into the query projection.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        kernel: str = "sdpa",
        rotary: nn.Module | None = None,
        scale: float | None = None,
    ) -> None:
        super().__init__(d_model, n_heads)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        check_positive("n_kv_heads", n_kv_heads)
        if n_heads % n_kv_heads != 0:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        if head_dim is None:
            if d_model % n_heads != 0:
                raise ValueError(
                    f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), "
                    "or pass head_dim explicitly"
                )
            head_dim = d_model // n_heads
        check_positive("head_dim", head_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if scale is not None and not (isinstance(scale, int | float) and scale > 0):
            raise ValueError(f"scale must be a positive number or None, got {scale!r}")
        self.scale = scale
        self.kernel_fn = KERNELS.get(kernel)
        self.kernel = kernel
        self.n_kv_heads = n_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        d_context = d_model if d_context is None else d_context
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(d_context, n_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_context, n_kv_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * head_dim, d_model, bias=bias)
        self.rotary = rotary

    def split_heads(self, x: Tensor, heads: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, Dh)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        bias: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> AttentionOutput:
        self.check_call(x, context, mask, causal, cache, bias)
        B, T, _ = x.shape
        q = self.split_heads(self.q_proj(x), self.n_heads)  # (B, H, T, Dh)
        rotate = self.rotary is not None and context is None and not (
            cache is not None and cache.cross
        )
        if rotate:  # self-attention: q and the new keys turn by their absolute positions
            if position_ids is None:
                past = 0 if cache is None else cache.length
                position_ids = torch.arange(past, past + T, device=x.device)  # (T,)
            q = self.rotary(q, position_ids)

        def project(source: Tensor) -> tuple[Tensor, Tensor]:
            k = self.split_heads(self.k_proj(source), self.n_kv_heads)  # (B, Hkv, S_new, Dh)
            v = self.split_heads(self.v_proj(source), self.n_kv_heads)  # (B, Hkv, S_new, Dh)
            return (self.rotary(k, position_ids) if rotate else k), v

        k, v = self.keys_and_values(
            x, context, cache, self.k_proj.in_features, project
        )  # (B, Hkv, S, Dh) each
        out, weights = self.kernel_fn(
            q, k, v,
            mask=mask,
            causal=causal,
            scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
            bias=bias,
        )  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H * Dh)
        return AttentionOutput(self.out_proj(out), weights, cache)

    def extra_repr(self) -> str:
        return (
            f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, "
            f"kernel={self.kernel!r}, dropout={self.dropout}"
            + ("" if self.scale is None else f", scale={self.scale}")
        )
