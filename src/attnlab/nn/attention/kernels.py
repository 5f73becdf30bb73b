"""Attention kernels behind one signature: the reference math and PyTorch's fused SDPA.

Every kernel is `fn(q, k, v, *, mask, causal, scale, dropout_p, need_weights, bias)
-> (output (B, H, T, Dh), weights (B, H, T, S) | None)` with the mask convention of
`attnlab.nn.functional` (bool, True = may attend; causal lower-right; empty rows -> zeros).
Attention modules pick one by name, so configs stay plain strings.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from attnlab.nn import functional as AF
from attnlab.registry import Registry

KERNELS: Registry = Registry("attention kernel")

KERNELS.register("reference")(AF.scaled_dot_product_attention)


@KERNELS.register("sdpa")
def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient / math).

    Fused kernels never materialize the weights; when they are asked for (visualization), the
    reference computes them, so the fast path and the pictures always agree.
    """
    if need_weights:
        return AF.scaled_dot_product_attention(
            q, k, v, mask=mask, causal=causal, scale=scale, dropout_p=dropout_p,
            need_weights=True, bias=bias,
        )
    AF.check_qkv(q, k, v)
    B, H, T, _ = q.shape
    S = k.size(2)
    gqa = H != k.size(1)
    if causal and T == 1:
        causal = False  # lower-right aligned, one query (a decoding step) sees every key
    if mask is None and bias is None and (not causal or T == S):
        # Fast path: no mask tensor at all (top-left and lower-right agree when T == S).
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=causal, scale=scale, enable_gqa=gqa
        )
        return out, None
    if mask is not None:
        AF.check_mask(mask, B, H, T, S)
    mask = AF.merge_masks(mask, causal, T, S, q.device)
    row_has_key = None
    if mask is not None:
        # A row with no key would be NaN inside the fused kernel (and poison gradients of k, v);
        # let such rows attend everywhere, then zero their output.
        row_has_key = mask.any(dim=-1, keepdim=True)  # (..., T, 1)
        mask = mask | ~row_has_key
    attn_mask = mask
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    if attn_mask is not None and attn_mask.dim() < 2:  # F.sdpa rejects 0-D / 1-D masks
        attn_mask = attn_mask.expand(T, S)  # (T, S)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale, enable_gqa=gqa
    )  # (B, H, T, Dh)
    if row_has_key is not None:
        out = out.masked_fill(~row_has_key, 0.0)
    return out, None
