"""Positional encodings: registry contract, paper formulas, and Hugging Face oracles."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn.position import POSITION
from attnlab.nn.position.alibi import alibi_slopes
from attnlab.nn.position.relative import relative_position_bucket

COMMON = dict(d_model=32, n_heads=4, max_seq_len=64)


def build(name, **kw):
    return POSITION.build(name, **{**COMMON, **kw})


@pytest.mark.parametrize("name", POSITION.names())
def test_contract(name):
    module = build(name)
    assert module.kind in ("absolute", "bias", "rotary")
    if module.kind == "absolute":
        out = module(torch.arange(10))
        assert out.shape == (10, 32)
        assert module(torch.arange(10).expand(3, 10)).shape == (3, 10, 32)
    elif module.kind == "bias":
        out = module(5, 9)
        assert out.shape == (1, 4, 5, 9)
    else:
        x = torch.randn(2, 4, 10, 8)
        out = module(x, torch.arange(10))
        assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    # Precomputed tables are buffers outside the state dict; only learned weights persist.
    assert set(module.state_dict()) == {n for n, _ in module.named_parameters()}


@pytest.mark.parametrize("name", POSITION.names())
def test_common_arguments_are_validated(name):
    with pytest.raises(ValueError, match="n_heads must be a positive int"):
        POSITION.build(name, d_model=32, n_heads=0, max_seq_len=64)


def test_sinusoidal_is_the_papers_formula():
    module = build("sinusoidal")
    pe = module(torch.arange(64)).double()
    for pos in (0, 1, 17, 63):
        for i in range(16):
            angle = pos / 10000 ** (2 * i / 32)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_offset_is_a_linear_map():
    """PE(pos + k) = M_k PE(pos) for a fixed M_k (sec. 3.5's motivation)."""
    pe = build("sinusoidal", max_seq_len=128)(torch.arange(128)).double()
    k = 7
    solution = torch.linalg.lstsq(pe[:100], pe[k:100 + k]).solution  # (D, D)
    torch.testing.assert_close(pe[50:60] @ solution, pe[50 + k:60 + k], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_absolute_range_errors(name):
    module = build(name)
    with pytest.raises(ValueError, match=r"max_seq_len=64\), got \[0, 64\]"):
        module(torch.arange(65))
    with pytest.raises(TypeError, match="integers"):
        module(torch.arange(3).float())


def test_rope_preserves_norm_and_depends_on_offset_only():
    rope = build("rope")
    q, k = torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8)
    dots = []
    for m, n in ((3, 1), (10, 8), (40, 38)):
        qm = rope(q, torch.tensor([m]))
        kn = rope(k, torch.tensor([n]))
        torch.testing.assert_close(qm.norm(dim=-1), q.norm(dim=-1))
        dots.append((qm * kn).sum(-1))
    torch.testing.assert_close(dots[0], dots[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dots[0], dots[2], atol=1e-5, rtol=1e-5)


def test_rope_matches_hugging_face_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=128,
                         rope_theta=10000.0)
    hf = LlamaRotaryEmbedding(config)
    ours = POSITION.build("rope", d_model=64, n_heads=4, max_seq_len=128)
    q, k = torch.randn(2, 4, 12, 16), torch.randn(2, 4, 12, 16)
    position_ids = torch.arange(5, 17).expand(2, 12)
    cos, sin = hf(q, position_ids)
    hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(ours(q, position_ids), hq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(k, position_ids[0]), hk, atol=1e-5, rtol=1e-5)


def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    for heads in (1, 3, 6, 12, 16):
        torch.testing.assert_close(alibi_slopes(heads), _get_alibi_slopes(heads, "cpu").float())


def test_alibi_bias_values():
    bias = build("alibi")(3, 5)  # queries at positions 2, 3, 4
    slopes = alibi_slopes(4)
    assert bias[0, 1, 0, 0].item() == pytest.approx(-2 * slopes[1].item())
    assert bias[0, 1, 2, 4].item() == 0.0


def test_relative_bucket_matches_hugging_face_t5():
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-300, 301)[None, :]
    for bidirectional, buckets, distance in ((True, 32, 128), (False, 32, 128), (True, 16, 64)):
        ours = relative_position_bucket(relative, bidirectional=bidirectional,
                                        num_buckets=buckets, max_distance=distance)
        theirs = T5Attention._relative_position_bucket(
            relative, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance
        )
        assert torch.equal(ours, theirs), (bidirectional, buckets, distance)


def test_relative_bias_is_aligned_lower_right():
    module = build("relative", bidirectional=False)
    full = module(9, 9)
    last = module(1, 9)
    torch.testing.assert_close(last[0, :, 0], full[0, :, -1])


@settings(max_examples=30, deadline=None)
@given(heads=st.integers(1, 12), queries=st.integers(1, 12), extra=st.integers(0, 12),
       name=st.sampled_from(["relative", "alibi"]))
def test_bias_shapes_property(heads, queries, extra, name):
    module = POSITION.build(name, d_model=heads * 2, n_heads=heads, max_seq_len=64)
    bias = module(queries, queries + extra)
    assert bias.shape == (1, heads, queries, queries + extra)
    assert torch.isfinite(bias).all()
    # The newest query's row is the same whatever the number of queries (cache decoding).
    torch.testing.assert_close(bias[0, :, -1], module(1, queries + extra)[0, :, 0])
