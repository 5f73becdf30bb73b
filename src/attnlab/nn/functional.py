"""Scaled dot-product attention as pure functions (Vaswani et al., 2017, "Attention Is All You
Need").

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, written as the paper's four steps:
dot product, scale, softmax, weighted sum. This is the reference every fast kernel is tested
against, and the path that returns attention weights.

One mask convention for the whole codebase: a boolean tensor, True = may attend, broadcastable
to (B, H, T, S). `causal=True` aligns lower-right when T != S, so query i of T sits at key
position S - T + i (the last query sees every key), which is what KV-cache decoding needs.
A query row with nothing to attend to returns zeros (and finite gradients), never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def causal_mask(query_length: int, key_length: int, device: torch.device | None = None) -> Tensor:
    """Lower-right aligned causal mask (T, S): query i may see key j iff j <= i + (S - T)."""
    offset = key_length - query_length
    query_pos = torch.arange(query_length, device=device).unsqueeze(1) + offset  # (T, 1)
    key_pos = torch.arange(key_length, device=device).unsqueeze(0)  # (1, S)
    return key_pos <= query_pos  # (T, S)


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Turn a Hugging Face style (B, S) mask (1 / True = real token) into (B, 1, 1, S) bool."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (batch, length), got {tuple(attention_mask.shape)}"
        )
    if attention_mask.is_floating_point():
        raise TypeError(
            "attention_mask must be bool or integer 0/1 (1 = real token), got "
            f"{attention_mask.dtype}"
        )
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)


def check_attention_mask(mask: Tensor, batch: int, length: int | None,
                         name: str = "attention_mask") -> None:
    """Raise a clear error unless `mask` has shape exactly (batch, length) (`length` None: any
    length). Masks are never broadcast: a (1, T) mask given with a batch of 2 would silently
    apply one row's padding to every row, so every family refuses it."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    expected = (batch, "length" if length is None else length)
    if mask.dim() != 2 or mask.size(0) != batch or (length is not None and mask.size(1) != length):
        shape = "(" + ", ".join(map(str, expected)) + ")"
        raise ValueError(f"{name} must have shape {shape} (batch, length) exactly, got "
                         f"{tuple(mask.shape)}; masks are not broadcast over the batch")


def merge_masks(
    mask: Tensor | None, causal: bool, query_length: int, key_length: int, device: torch.device
) -> Tensor | None:
    """One boolean mask from an optional user mask and the causal flag (None = attend to all)."""
    if not causal:
        return mask
    future = causal_mask(query_length, key_length, device)  # (T, S)
    return future if mask is None else mask & future


def check_mask(mask: Tensor, batch: int, heads: int, query_length: int, key_length: int) -> None:
    """Raise a clear error unless `mask` is bool and broadcastable to (B, H, T, S)."""
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
    target = (batch, heads, query_length, key_length)
    shape = tuple(mask.shape)
    ok = len(shape) <= 4 and all(
        m in (1, t) for m, t in zip(reversed(shape), reversed(target), strict=False)
    )
    if not ok:
        raise ValueError(f"mask of shape {shape} does not broadcast to (B, H, T, S) = {target}")


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise a clear error unless q (B, H, T, Dh), k/v (B, Hkv, S, Dh) with H % Hkv == 0."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D (batch, heads, length, head_dim), got {t.dim()}-D"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must agree on (B, Hkv, S)")
    if q.size(0) != k.size(0) or q.size(-1) != k.size(-1):
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on batch and head_dim"
        )
    if q.size(1) % k.size(1) != 0:
        raise ValueError(
            f"query heads ({q.size(1)}) must be a multiple of key/value heads ({k.size(1)})"
        )


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Grouped-query attention: (B, Hkv, S, Dh) -> (B, Hkv * G, S, Dh); head h uses kv h // G."""
    if groups == 1:
        return x
    B, Hkv, S, Dh = x.shape
    x = x[:, :, None].expand(B, Hkv, groups, S, Dh)  # (B, Hkv, G, S, Dh)
    return x.reshape(B, Hkv * groups, S, Dh)  # (B, H, S, Dh)


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis where masked positions get exactly 0 and empty rows are all 0.

    Masked scores are filled with the dtype's minimum rather than -inf, so a row with nothing to
    attend to stays finite through softmax; zeroing the masked positions afterwards makes that
    row all zeros. Computed in at least float32 for half-precision inputs.
    """
    compute_dtype = torch.promote_types(scores.dtype, torch.float32)
    scores = scores.to(compute_dtype)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(compute_dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights


def scaled_dot_product_attention(
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
    """Reference attention: returns (output (B, H, T, Dh), weights (B, H, T, S) or None).

    q: (B, H, T, Dh); k, v: (B, Hkv, S, Dh) with H a multiple of Hkv (grouped-query attention).
    mask: bool, True = may attend, broadcastable to (B, H, T, S). causal: lower-right aligned.
    bias: optional additive float score bias broadcastable to (B, H, T, S) (ALiBi, T5 relative).
    dropout_p: dropout on the attention weights (pass 0.0 in eval); returned weights are the
    probabilities before dropout.
    """
    check_qkv(q, k, v)
    B, H, T, Dh = q.shape
    S = k.size(2)
    if mask is not None:
        check_mask(mask, B, H, T, S)
    mask = merge_masks(mask, causal, T, S, q.device)
    k = repeat_kv(k, H // k.size(1))  # (B, H, S, Dh)
    v = repeat_kv(v, H // v.size(1))  # (B, H, S, Dh)
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale

    # 1. dot product and 2. scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, T, S)
    # 3. softmax and 4. weighted sum
    return attend(scores, v, mask=mask, dropout_p=dropout_p, need_weights=need_weights, bias=bias)


def attend(
    scores: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Steps 3 and 4 for any score function: softmax over keys, then the weighted sum of values.

    scores: (B, H, T, S) from any compatibility function (dot product, additive, ...).
    v: (B, H, S, Dv). mask: bool, already merged with causality. Returns ((B, H, T, Dv), weights).
    """
    if bias is not None:
        scores = scores + bias
    weights = masked_softmax(scores, mask).to(v.dtype)  # (B, H, T, S)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    output = torch.matmul(dropped, v)  # (B, H, T, Dv)
    return output, (weights if need_weights else None)
