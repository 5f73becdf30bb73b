"""The fused-SDPA kernel's decoding step: one causal query (lower-right aligned) sees every
cached key, so it runs without a mask tensor, and gives the reference kernel's output, with and
without a padding mask, a position bias and grouped-query heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn.attention.kernels import KERNELS

B, H, S, Dh = 3, 4, 6, 8


def qkv(kv_heads: int = H):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, H, 1, Dh, generator=g), torch.randn(B, kv_heads, S, Dh, generator=g),
            torch.randn(B, kv_heads, S, Dh, generator=g))


@pytest.mark.parametrize("kv_heads", [H, 2], ids=["mha", "gqa"])
@pytest.mark.parametrize("extra", ["none", "mask", "bias"])
def test_one_causal_query_equals_the_reference(kv_heads, extra):
    q, k, v = qkv(kv_heads)
    kwargs = {}
    if extra == "mask":
        mask = torch.ones(B, 1, 1, S, dtype=torch.bool)
        mask[1, ..., 4:] = False
        kwargs["mask"] = mask
    if extra == "bias":
        kwargs["bias"] = torch.randn(1, H, 1, S)
    got, _ = KERNELS.get("sdpa")(q, k, v, causal=True, **kwargs)
    expected, _ = KERNELS.get("reference")(q, k, v, causal=True, **kwargs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Top-left alignment (the query at position 0) would see the first key only.
    first_only = v[:, :, :1].repeat_interleave(H // kv_heads, dim=1)  # (B, H, 1, Dh)
    assert not torch.allclose(got, first_only, atol=1e-3)


def test_one_causal_query_builds_no_mask(monkeypatch):
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((kwargs.get("attn_mask"), kwargs.get("is_causal", False)))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q, k, v = qkv()
    KERNELS.get("sdpa")(q, k, v, causal=True)
    KERNELS.get("sdpa")(torch.randn(B, H, 2, Dh), k, v, causal=True)  # two queries: masked
    assert seen[0] == (None, False)
    assert seen[1][0] is not None and seen[1][0].shape[-2:] == (2, S)
