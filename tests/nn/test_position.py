"""Positional encodings: registry contract, the papers' formulas in float64, and Hugging Face
oracles (LLaMA rotary, T5 relative buckets and bias, BLOOM ALiBi slopes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn.position import (
    KINDS,
    POSITION,
    PositionEncoding,
    alibi_slopes,
    relative_position_bucket,
)

COMMON = dict(d_model=64, n_heads=4, max_seq_len=128)
HAS_PARAMETERS = {"learned", "relative"}  # every other entry must have none
BIAS_NAMES = [n for n in POSITION.names() if POSITION.get(n).kind == "bias"]


def build(name: str, **kw) -> PositionEncoding:
    return POSITION.build(name, **{**COMMON, **kw})


# -- contract over every registered name ---------------------------------------------------------


def test_registry_has_the_five_schemes():
    assert {"sinusoidal", "learned", "relative", "rope", "alibi"} <= set(POSITION.names())


@pytest.mark.parametrize("name", POSITION.names())
def test_contract(name):
    torch.manual_seed(0)
    module = build(name)
    assert module.kind in KINDS
    if module.kind == "absolute":
        outs = [module(torch.arange(10)), module(torch.arange(10).expand(3, 10))]
        shapes = [(10, 64), (3, 10, 64)]
    elif module.kind == "bias":
        outs = [module(5, 9), module(9, 9, device=torch.device("cpu")), module(1, 200)]
        shapes = [(1, 4, 5, 9), (1, 4, 9, 9), (1, 4, 1, 200)]  # past max_seq_len is fine
    else:
        x = torch.randn(2, 4, 10, 16)
        outs = [module(x, torch.arange(10)), module(x, torch.arange(10).expand(2, 10))]
        shapes = [x.shape, x.shape]
    for out, shape in zip(outs, shapes, strict=True):
        assert out.shape == shape
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
    n_params = sum(p.numel() for p in module.parameters())
    assert (n_params > 0) == (name in HAS_PARAMETERS)
    # Precomputed tables and slopes are non-persistent: only learned weights are saved.
    assert set(module.state_dict()) == {n for n, _ in module.named_parameters()}


@pytest.mark.parametrize("name", POSITION.names())
@pytest.mark.parametrize("argument", ["d_model", "n_heads", "max_seq_len"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_common_arguments_are_validated(name, argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be a positive int, got {value!r}"):
        POSITION.build(name, **{**COMMON, argument: value})


def test_kind_is_checked_when_a_subclass_is_defined():
    with pytest.raises(TypeError, match="kind must be one of"):
        type("Broken", (PositionEncoding,), {"kind": "additive"})


@pytest.mark.parametrize("name", BIAS_NAMES)
def test_bias_lengths_are_validated(name):
    module = build(name)
    with pytest.raises(ValueError, match="query_length must be <= key_length"):
        module(5, 3)
    with pytest.raises(ValueError, match="key_length must be a non-negative int, got -1"):
        module(0, -1)


# -- absolute: sinusoidal and learned -------------------------------------------------------------


def test_sinusoidal_is_the_papers_formula():
    pe = build("sinusoidal")(torch.arange(128)).numpy()
    pos = np.arange(128, dtype=np.float64)[:, None]
    i = np.arange(32, dtype=np.float64)[None, :]
    angle = pos / 10000.0 ** (2 * i / 64)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), atol=1e-6, rtol=0)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [1, 7, 40])
def test_sinusoidal_offset_is_a_fixed_linear_map(k):
    """PE(pos + k) = M_k PE(pos), M_k a rotation per (sin, cos) pair independent of pos."""
    pe = build("sinusoidal")(torch.arange(128)).double()  # (L, D)
    freq = 10000.0 ** (-torch.arange(0, 64, 2, dtype=torch.float64) / 64)  # (D/2,)
    c, s = torch.cos(k * freq), torch.sin(k * freq)
    m = torch.zeros(64, 64, dtype=torch.float64)
    idx = torch.arange(32)
    # sin(a + b) = sin a cos b + cos a sin b; cos(a + b) = cos a cos b - sin a sin b
    m[2 * idx, 2 * idx], m[2 * idx, 2 * idx + 1] = c, s
    m[2 * idx + 1, 2 * idx], m[2 * idx + 1, 2 * idx + 1] = -s, c
    torch.testing.assert_close(pe[: 128 - k] @ m.T, pe[k:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_absolute_range_and_type_errors(name):
    module = build(name)
    for bad in (torch.arange(129), torch.tensor([3, 128]), torch.tensor([[0, 1], [5, 200]])):
        with pytest.raises(ValueError, match=r"max_seq_len=128\), got position (128|200)"):
            module(bad)
    with pytest.raises(ValueError, match=r"got position -1"):
        module(torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="position_ids must be an integer tensor"):
        module(torch.arange(3).float())
    with pytest.raises(ValueError, match=r"shape \(T,\) or \(B, T\)"):
        module(torch.zeros(1, 2, 3, dtype=torch.long))
    assert module(torch.tensor([127])).shape == (1, 64)


def test_sinusoidal_needs_even_d_model_and_learned_weights_persist():
    with pytest.raises(ValueError, match="d_model must be even for sin/cos pairs, got 63"):
        POSITION.build("sinusoidal", d_model=63, n_heads=1, max_seq_len=8)
    learned = build("learned")
    assert learned.state_dict()["embedding.weight"].shape == (128, 64)
    ids = torch.tensor([[2, 5]])
    torch.testing.assert_close(learned(ids)[0, 1], learned.embedding.weight[5])


# -- rotary ---------------------------------------------------------------------------------------


def test_rope_preserves_norms():
    rope = build("rope")
    x = torch.randn(3, 4, 20, 16)
    positions = torch.randint(0, 10_000, (3, 20))
    torch.testing.assert_close(rope(x, positions).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rope(x, torch.zeros(20, dtype=torch.long)), x)  # angle 0


def rope_scores(rope, q, k, positions):
    return rope(q, positions) @ rope(k, positions).transpose(-1, -2)  # (B, H, T, T)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 12), heads=st.integers(1, 4), shift=st.integers(-50, 5000),
       seed=st.integers(0, 2**16))
def test_rope_scores_depend_only_on_the_offset(T, heads, shift, seed):
    """Shifting every query and key position by the same amount keeps every q . k.

    Checked in float64 (RoPE rotates float64 inputs in float64): in float32 the angle of
    position p is only exact to about p * 6e-8 radians, for this and every implementation.
    """
    g = torch.Generator().manual_seed(seed)
    rope = POSITION.build("rope", d_model=16 * heads, n_heads=heads, max_seq_len=8)
    q = torch.randn(2, heads, T, 16, generator=g, dtype=torch.float64)
    k = torch.randn(2, heads, T, 16, generator=g, dtype=torch.float64)
    positions = torch.randint(0, 50, (T,), generator=g) + 50
    torch.testing.assert_close(rope_scores(rope, q, k, positions + shift),
                               rope_scores(rope, q, k, positions), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("theta, head_dim", [(10000.0, None), (500000.0, 32)])
def test_rope_matches_hugging_face_llama(theta, head_dim):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=head_dim, max_position_embeddings=128,
                         rope_parameters={"rope_type": "default", "rope_theta": theta})
    hf = LlamaRotaryEmbedding(config)
    ours = build("rope", head_dim=head_dim, base=theta)
    dh = ours.head_dim
    q, k = torch.randn(2, 4, 12, dh), torch.randn(2, 2, 12, dh)  # GQA: fewer key heads
    position_ids = torch.stack([torch.arange(5, 17), torch.arange(300, 312)])  # (B, T)
    cos, sin = hf(q, position_ids)
    hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(ours(q, position_ids), hq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(k, position_ids), hk, atol=1e-5, rtol=1e-5)
    cos, sin = hf(q, position_ids[:1])
    hq, _ = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(ours(q, position_ids[0]), hq, atol=1e-5, rtol=1e-5)


def test_rope_keeps_the_input_dtype():
    rope = build("rope")
    x = torch.randn(1, 4, 6, 16, dtype=torch.float64)
    reference = rope(x.float(), torch.arange(6))
    for dtype, atol in ((torch.bfloat16, 3e-2), (torch.float64, 1e-5)):
        out = rope(x.to(dtype), torch.arange(6))
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), reference, atol=atol, rtol=0)


def test_rope_validates_its_arguments():
    with pytest.raises(ValueError, match="divisible by n_heads.*d_model=60, n_heads=8"):
        POSITION.build("rope", d_model=60, n_heads=8, max_seq_len=8)
    with pytest.raises(ValueError, match="head_dim must be even for rotation pairs, got 7"):
        build("rope", head_dim=7)
    rope = build("rope")
    with pytest.raises(ValueError, match=r"x must have shape \(B, H, T, Dh=16\), got"):
        rope(torch.randn(1, 4, 5, 8), torch.arange(5))
    with pytest.raises(ValueError, match="position_ids must have shape .* T=5, got"):
        rope(torch.randn(1, 4, 5, 16), torch.arange(6))
    with pytest.raises(TypeError, match="position_ids must be an integer tensor"):
        rope(torch.randn(1, 4, 5, 16), torch.arange(5.0))


# -- ALiBi ----------------------------------------------------------------------------------------


def paper_slopes(n: int) -> list[float]:
    """The paper's rule in float64, written from its text: 2^(-8k/n) for n a power of two."""
    lower = 2 ** int(math.floor(math.log2(n)))
    slopes = [2.0 ** (-8.0 * k / lower) for k in range(1, lower + 1)]
    return slopes + [2.0 ** (-8.0 * k / (2 * lower)) for k in range(1, 2 * (n - lower), 2)]


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == [2.0**-k for k in range(1, 9)]
    for n in range(1, 33):
        np.testing.assert_allclose(alibi_slopes(n).numpy(), paper_slopes(n), rtol=1e-7)
    assert len(alibi_slopes(12)) == 12


def test_alibi_slopes_match_hugging_face_bloom():
    bloom = pytest.importorskip("transformers.models.bloom.modeling_bloom")
    hf_slopes = getattr(bloom, "_get_alibi_slopes", None)
    if hf_slopes is None:
        pytest.skip("transformers no longer exposes _get_alibi_slopes")
    for n in (1, 3, 6, 8, 12, 16, 24):
        torch.testing.assert_close(alibi_slopes(n), hf_slopes(n, "cpu").float())


def test_alibi_bias_is_minus_slope_times_distance_lower_right():
    bias = build("alibi", n_heads=12)(3, 7).double()  # queries at positions 4, 5, 6
    query_pos = np.arange(4, 7)[:, None]
    key_pos = np.arange(7)[None, :]
    expected = -np.array(paper_slopes(12))[:, None, None] * np.abs(query_pos - key_pos)
    np.testing.assert_allclose(bias[0].numpy(), expected, rtol=1e-6, atol=0)


# -- T5 relative buckets --------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional, num_buckets, max_distance",
                         [(True, 32, 128), (False, 32, 128), (True, 16, 64), (False, 8, 20)])
def test_relative_bucket_matches_hugging_face_t5(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-400, 401).view(1, -1) + torch.arange(0, 3).view(3, 1)  # (3, 801)
    ours = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    theirs = T5Attention._relative_position_bucket(relative, bidirectional=bidirectional,
                                                   num_buckets=num_buckets,
                                                   max_distance=max_distance)
    assert torch.equal(ours, theirs)
    assert 0 <= int(ours.min()) and int(ours.max()) == num_buckets - 1


@pytest.mark.parametrize("is_decoder, query_length, key_length", [(False, 9, 9), (True, 3, 150)])
def test_relative_bias_matches_hugging_face_t5_with_the_same_weights(
    is_decoder, query_length, key_length
):
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    config = T5Config(d_model=64, d_kv=16, num_heads=4, is_decoder=is_decoder,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128)
    hf = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
    ours = build("relative", bidirectional=not is_decoder)
    # the weight name is the same as in Hugging Face, so the state dict maps one to one
    loaded = hf.load_state_dict(ours.state_dict(), strict=False)
    assert loaded.unexpected_keys == []
    assert "relative_attention_bias.weight" not in loaded.missing_keys
    past = key_length - query_length  # KV-cache decoding: new queries come after the past
    expected = hf.compute_bias(query_length, key_length, past_seen_tokens=past)
    torch.testing.assert_close(ours(query_length, key_length), expected)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_bias_is_aligned_lower_right(bidirectional):
    module = build("relative", bidirectional=bidirectional)
    full = module(9, 9)  # (1, H, 9, 9)
    torch.testing.assert_close(module(1, 9)[0, :, 0], full[0, :, -1])
    torch.testing.assert_close(module(4, 9)[0], full[0, :, -4:])


def test_relative_validates_its_options():
    with pytest.raises(ValueError, match=r"num_buckets must be an even int >= 4 .* got 7"):
        build("relative", num_buckets=7)
    with pytest.raises(ValueError, match="max_distance must be > the 8 exact buckets.* got 8"):
        build("relative", num_buckets=32, max_distance=8)
    assert build("relative", num_buckets=2, bidirectional=False, max_distance=4)(3, 3).shape == (
        1, 4, 3, 3)


@settings(max_examples=30, deadline=None)
@given(heads=st.integers(1, 12), queries=st.integers(1, 16), extra=st.integers(0, 300),
       name=st.sampled_from(BIAS_NAMES))
def test_bias_shapes_property(heads, queries, extra, name):
    module = POSITION.build(name, d_model=heads * 2, n_heads=heads, max_seq_len=32)
    bias = module(queries, queries + extra)
    assert bias.shape == (1, heads, queries, queries + extra)
    assert bias.dtype == torch.float32 and torch.isfinite(bias).all()
    # The newest query's row is the same whatever the number of queries (cache decoding).
    torch.testing.assert_close(bias[0, :, -1], module(1, queries + extra)[0, :, 0])
