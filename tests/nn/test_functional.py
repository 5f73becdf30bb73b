"""attnlab.nn.functional and the attention kernels against an independent float64 oracle.

The oracle below is written from the formula softmax(q k^T / sqrt(Dh) + bias) v with -inf
masking and an explicit rule for queries that may attend to nothing (output and weights 0).
It shares no code with attnlab: masks, causality and grouped-query heads are spelled out here.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn import functional as AF
from attnlab.nn.attention import KERNELS

torch.set_num_threads(1)

KERNEL_NAMES = ["reference", "sdpa"]
FP32 = dict(atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------


def allowed_positions(B, H, T, S, mask=None, causal=False):
    """(B, H, T, S) bool: where query t may look at key s, built element by element."""
    allowed = torch.ones(B, H, T, S, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask.expand(B, H, T, S)
    if causal:
        # Lower-right alignment: query t stands at absolute position t + (S - T).
        for t in range(T):
            for s in range(S):
                if s > t + (S - T):
                    allowed[:, :, t, s] = False
    return allowed


def naive_attention(q, k, v, *, mask=None, causal=False, bias=None, scale=None):
    """float64 oracle -> (output (B, H, T, Dh), weights (B, H, T, S))."""
    q, k, v = q.double(), k.double(), v.double()
    B, H, T, Dh = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    group = H // Hkv
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale
    allowed = allowed_positions(B, H, T, S, mask, causal)
    # Head h reads kv head h // group: index explicitly instead of reshaping.
    kv_index = torch.tensor([h // group for h in range(H)])
    k_full, v_full = k[:, kv_index], v[:, kv_index]  # (B, H, S, Dh)
    scores = torch.einsum("bhtd,bhsd->bhts", q, k_full) * scale
    if bias is not None:
        scores = scores + bias.double().expand(B, H, T, S)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.zeros(B, H, T, S, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                if allowed[b, h, t].any():  # an empty row stays all zeros
                    weights[b, h, t] = torch.softmax(scores[b, h, t], dim=-1)
    out = torch.einsum("bhts,bhsd->bhtd", weights, v_full)
    return out, weights


def make_qkv(B=2, H=4, Hkv=4, T=5, S=6, Dh=8, *, seed=0, dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, Dh, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, S, Dh, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, S, Dh, generator=g, dtype=dtype)
    if grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v


def random_mask(shape, *, seed=1, density=0.6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


def run_kernel(name, q, k, v, **kw):
    return KERNELS.get(name)(q, k, v, **kw)


# --------------------------------------------------------------------------------------------
# Kernels vs the oracle
# --------------------------------------------------------------------------------------------

CASES = {
    "no_mask": dict(),
    "bool_mask_full": dict(mask="full"),
    "bool_mask_padding": dict(mask="padding"),
    "bool_mask_2d": dict(mask="2d"),
    "causal_square": dict(causal=True, T=6, S=6),
    "causal_fewer_queries": dict(causal=True, T=3, S=7),
    "causal_more_queries": dict(causal=True, T=7, S=4),
    "causal_one_query": dict(causal=True, T=1, S=5),
    "causal_and_mask": dict(causal=True, mask="full", T=6, S=6),
    "gqa_8_2": dict(H=8, Hkv=2),
    "mqa_8_1": dict(H=8, Hkv=1),
    "gqa_causal_masked": dict(H=8, Hkv=2, causal=True, mask="padding", T=4, S=6),
    "bias": dict(bias=True),
    "bias_mask_causal": dict(bias=True, mask="full", causal=True, T=5, S=5),
    "custom_scale": dict(scale=0.3),
}


def build_case(case, seed=0):
    sizes = {key: case[key] for key in ("H", "Hkv", "T", "S") if key in case}
    q, k, v = make_qkv(**sizes, seed=seed)
    B, H, T, _ = q.shape
    S = k.size(2)
    kw = {}
    if case.get("mask") == "full":
        kw["mask"] = random_mask((B, H, T, S), seed=seed + 1)
    elif case.get("mask") == "padding":
        keep = torch.ones(B, S, dtype=torch.bool)
        keep[0, -2:] = False
        kw["mask"] = AF.padding_mask(keep)  # (B, 1, 1, S)
    elif case.get("mask") == "2d":
        kw["mask"] = random_mask((T, S), seed=seed + 2)
    if case.get("causal"):
        kw["causal"] = True
    if case.get("bias"):
        g = torch.Generator().manual_seed(seed + 3)
        kw["bias"] = torch.randn(1, H, T, S, generator=g)
    if "scale" in case:
        kw["scale"] = case["scale"]
    return q, k, v, kw


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_kernel_matches_float64_oracle(kernel, case):
    q, k, v, kw = build_case(CASES[case])
    want_out, want_w = naive_attention(q, k, v, **kw)
    out, weights = run_kernel(kernel, q, k, v, need_weights=True, **kw)
    assert out.dtype == torch.float32 and weights.dtype == torch.float32
    torch.testing.assert_close(out, want_out.float(), **FP32)
    torch.testing.assert_close(weights, want_w.float(), **FP32)
    # Without weights the fused path runs; it must agree too and return no weights.
    fast, none = run_kernel(kernel, q, k, v, **kw)
    assert none is None
    torch.testing.assert_close(fast, want_out.float(), **FP32)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_weight_rows_sum_to_one_or_zero(kernel):
    q, k, v = make_qkv(T=6, S=6)
    mask = random_mask((2, 4, 6, 6), seed=3, density=0.4)
    mask[1, 2, 3] = False  # guarantee one empty row
    _, weights = run_kernel(kernel, q, k, v, mask=mask, causal=True, need_weights=True)
    allowed = allowed_positions(2, 4, 6, 6, mask, causal=True)
    sums = weights.sum(-1)
    expected = allowed.any(-1).float()
    torch.testing.assert_close(sums, expected, **FP32)
    assert (weights[~allowed] == 0).all()
    assert (weights >= 0).all()


def test_causal_mask_is_lower_right():
    m = AF.causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    m = AF.causal_mask(4, 2)
    assert m.tolist() == [[False, False], [False, False], [True, False], [True, True]]
    assert torch.equal(AF.causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_causal_more_queries_than_keys_gives_zero_rows(kernel):
    # T > S: the first T - S queries stand before every key, so they see nothing.
    q, k, v = make_qkv(T=6, S=3)
    out, weights = run_kernel(kernel, q, k, v, causal=True, need_weights=True)
    assert torch.equal(out[:, :, :3], torch.zeros_like(out[:, :, :3]))
    assert torch.equal(weights[:, :, :3], torch.zeros_like(weights[:, :, :3]))
    assert torch.isfinite(out).all()
    fast, _ = run_kernel(kernel, q, k, v, causal=True)
    assert torch.equal(fast[:, :, :3], torch.zeros_like(fast[:, :, :3]))


def test_padding_mask_helper():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    m = AF.padding_mask(keep)
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]
    with pytest.raises(ValueError, match="attention_mask"):
        AF.padding_mask(torch.ones(2, 1, 3))
    with pytest.raises(TypeError, match="attention_mask"):
        AF.padding_mask(torch.ones(2, 3))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize(
    "what, shape",
    [("mask", ()), ("mask", (6,)), ("mask", (1, 6)), ("mask", (4, 1, 6)),
     ("bias", (6,)), ("bias", (5, 6)), ("bias", (2, 1, 1, 6))],
)
def test_low_rank_masks_and_biases_broadcast(kernel, what, shape):
    # Any shape broadcastable to (B, H, T, S) is accepted, including 0-D and 1-D.
    q, k, v = make_qkv()  # (B, H, T, S) = (2, 4, 5, 6)
    g = torch.Generator().manual_seed(4)
    if what == "mask":
        value = torch.rand(shape, generator=g) < 0.7 if shape else torch.tensor(True)
    else:
        value = torch.randn(shape, generator=g)
    for causal in (False, True):
        want, _ = naive_attention(q, k, v, causal=causal, **{what: value})
        got, _ = run_kernel(kernel, q, k, v, causal=causal, **{what: value})
        torch.testing.assert_close(got, want.float(), **FP32)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 5e-3), (torch.bfloat16, 1e-2)])
def test_half_precision_close_to_float64(kernel, dtype, tol):
    q, k, v = make_qkv(H=4, Hkv=2, T=5, S=6, seed=21, dtype=dtype)
    mask = random_mask((2, 1, 5, 6), seed=22)
    want, _ = naive_attention(q, k, v, mask=mask, causal=True)
    out, weights = run_kernel(kernel, q, k, v, mask=mask, causal=True, need_weights=True)
    assert out.dtype == dtype and weights.dtype == dtype
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)
    fast, _ = run_kernel(kernel, q, k, v, mask=mask, causal=True)
    assert fast.dtype == dtype
    torch.testing.assert_close(fast.double(), want, atol=tol, rtol=tol)


@pytest.mark.xfail(
    strict=True,
    reason="anchor #14: NaN/inf in masked (padded) values leaks through 0 * NaN in the "
    "weighted sum; the library has not yet chosen between raising and zeroing",
)
@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_nan_in_masked_positions_does_not_leak(kernel):
    q, k, v = make_qkv()
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[:, -1] = False
    k, v = k.clone(), v.clone()
    k[:, :, -1] = float("nan")
    v[:, :, -1] = float("nan")
    out, _ = run_kernel(kernel, q, k, v, mask=AF.padding_mask(keep))
    want, _ = run_kernel(kernel, q, k[:, :, :-1], v[:, :, :-1])
    torch.testing.assert_close(out, want, **FP32)


# --------------------------------------------------------------------------------------------
# Fully masked rows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_fully_masked_rows_zero_output_finite_grads(kernel, with_bias):
    q, k, v = make_qkv(T=4, S=5, grad=True)
    mask = torch.ones(2, 4, 4, 5, dtype=torch.bool)
    mask[0, 1, 2] = False  # one (batch, head, query) with nothing to attend
    mask[1, :, 0] = False  # a query masked in every head of the second batch element
    bias = torch.randn(1, 4, 4, 5) if with_bias else None
    out, _ = run_kernel(kernel, q, k, v, mask=mask, bias=bias)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 1, 2], torch.zeros(8))
    assert torch.equal(out[1, :, 0], torch.zeros(4, 8))
    # No NaN leaks into the other rows: they match the oracle.
    want, _ = naive_attention(q.detach(), k.detach(), v.detach(), mask=mask, bias=bias)
    torch.testing.assert_close(out, want.float(), **FP32)
    (out * torch.randn_like(out)).sum().backward()
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
    # The empty query receives no gradient (its output is constant zero).
    assert torch.equal(q.grad[0, 1, 2], torch.zeros(8))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_every_row_masked_in_one_batch_element(kernel):
    q, k, v = make_qkv(grad=True)
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[1] = False  # an all-padding sequence next to a normal one
    out, _ = run_kernel(kernel, q, k, v, mask=mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    alone, _ = run_kernel(kernel, q[:1].detach(), k[:1].detach(), v[:1].detach())
    torch.testing.assert_close(out[:1], alone, **FP32)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(k.grad[1], torch.zeros_like(k.grad[1]))
    assert torch.equal(v.grad[1], torch.zeros_like(v.grad[1]))


def test_masked_softmax_empty_row():
    scores = torch.randn(3, 4)
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    w = AF.masked_softmax(scores, mask)
    assert torch.equal(w[1], torch.zeros(4))
    assert w[0, 1] == 0 and w[0, 3] == 0
    torch.testing.assert_close(w.sum(-1), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(w[2], torch.softmax(scores[2], -1))


# --------------------------------------------------------------------------------------------
# Grouped-query attention
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("Hkv", [1, 2, 4])
def test_grouped_query_equals_repeated_kv(kernel, Hkv):
    H = 8
    q, k, v = make_qkv(H=H, Hkv=Hkv, T=4, S=6)
    mask = random_mask((2, 1, 4, 6), seed=5)
    rep = H // Hkv
    k_rep = k.repeat_interleave(rep, dim=1)  # head h -> kv head h // rep
    v_rep = v.repeat_interleave(rep, dim=1)
    out, w = run_kernel(kernel, q, k, v, mask=mask, causal=True, need_weights=True)
    out_rep, w_rep = run_kernel(kernel, q, k_rep, v_rep, mask=mask, causal=True,
                                need_weights=True)
    torch.testing.assert_close(out, out_rep, **FP32)
    torch.testing.assert_close(w, w_rep, **FP32)
    fast, _ = run_kernel(kernel, q, k, v)
    fast_rep, _ = run_kernel(kernel, q, k_rep, v_rep)
    torch.testing.assert_close(fast, fast_rep, **FP32)


def test_repeat_kv_layout():
    x = torch.arange(2 * 3 * 1 * 1).view(2, 3, 1, 1).float()
    y = AF.repeat_kv(x, 2)
    assert y.shape == (2, 6, 1, 1)
    assert y[0, :, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert AF.repeat_kv(x, 1) is x


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(causal=True),
        dict(mask=True),
        dict(mask=True, causal=True, bias=True),
        dict(gqa=True, causal=True),
    ],
    ids=["plain", "causal", "mask", "mask_causal_bias", "gqa_causal"],
)
def test_sdpa_gradients_match_reference(kw):
    Hkv = 2 if kw.get("gqa") else 4
    T, S = 5, 5
    grads = {}
    outs = {}
    for kernel in KERNEL_NAMES:
        q, k, v = make_qkv(Hkv=Hkv, T=T, S=S, seed=7, grad=True)
        call = {}
        if kw.get("mask"):
            call["mask"] = random_mask((2, 4, T, S), seed=8)
        if kw.get("causal"):
            call["causal"] = True
        if kw.get("bias"):
            call["bias"] = torch.randn(2, 4, T, S, generator=torch.Generator().manual_seed(9))
        out, _ = run_kernel(kernel, q, k, v, **call)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(10))
        (out * upstream).sum().backward()
        outs[kernel] = out.detach()
        grads[kernel] = (q.grad, k.grad, v.grad)
    torch.testing.assert_close(outs["sdpa"], outs["reference"], **FP32)
    for a, b in zip(grads["sdpa"], grads["reference"], strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **FP32)


def test_reference_gradients_match_float64_oracle():
    q, k, v = make_qkv(H=4, Hkv=2, T=4, S=6, seed=11, dtype=torch.float64, grad=True)
    mask = random_mask((2, 1, 4, 6), seed=12)
    out, _ = AF.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    g_ours = torch.autograd.grad(out.sum(), (q, k, v))
    want, _ = naive_attention(q, k, v, mask=mask, causal=True)
    g_want = torch.autograd.grad(want.sum(), (q, k, v))
    for a, b in zip(g_ours, g_want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_reference_float64(causal):
    q, k, v = make_qkv(B=1, H=2, Hkv=1, T=3, S=4, Dh=3, seed=13, dtype=torch.float64, grad=True)
    mask = torch.tensor([[True, True, False, True],
                         [False, False, False, False],  # an empty row: gradient exactly 0
                         [True, False, True, True]])
    bias = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)

    def fn(q, k, v, bias):
        return AF.scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, bias=bias)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v, bias), eps=1e-6, atol=1e-5)


def test_gradcheck_sdpa_float64():
    q, k, v = make_qkv(B=1, H=2, Hkv=2, T=3, S=3, Dh=2, seed=14, dtype=torch.float64, grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])

    def fn(q, k, v):
        return KERNELS.get("sdpa")(q, k, v, mask=mask, causal=True)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_three_dimensional_q_is_rejected(kernel):
    q, k, v = make_qkv()
    with pytest.raises(ValueError, match="4-D"):
        run_kernel(kernel, q[0], k, v)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_integer_mask_is_rejected(kernel):
    q, k, v = make_qkv()
    with pytest.raises(TypeError, match="bool"):
        run_kernel(kernel, q, k, v, mask=torch.ones(5, 6, dtype=torch.int64))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_float_q_with_integer_k_is_rejected(kernel):
    q, k, v = make_qkv()
    with pytest.raises(TypeError, match="k"):
        run_kernel(kernel, q, k.long(), v)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_mixed_float_dtypes_are_rejected(kernel):
    q, k, v = make_qkv()
    with pytest.raises(TypeError, match="dtype"):
        run_kernel(kernel, q, k.double(), v)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_heads_not_a_multiple_of_kv_heads(kernel):
    q, k, v = make_qkv(H=4, Hkv=3)
    with pytest.raises(ValueError, match=r"multiple"):
        run_kernel(kernel, q, k, v)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("shape", [(5, 7), (2, 4, 5), (3, 1, 1, 6), (1, 1, 1, 1, 6)])
def test_mask_not_broadcastable_names_the_shapes(kernel, shape):
    q, k, v = make_qkv()  # (B, H, T, S) = (2, 4, 5, 6)
    with pytest.raises(ValueError) as err:
        run_kernel(kernel, q, k, v, mask=torch.ones(shape, dtype=torch.bool))
    message = str(err.value)
    assert str(shape) in message and "(2, 4, 5, 6)" in message


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_k_v_disagree(kernel):
    q, k, v = make_qkv()
    with pytest.raises(ValueError):
        run_kernel(kernel, q, k, v[:, :, :-1])
    with pytest.raises(ValueError):
        run_kernel(kernel, q, k[..., :-1], v[..., :-1])


# --------------------------------------------------------------------------------------------
# Property test: reference == sdpa == oracle on random shapes and masks
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 2),
    Hkv=st.integers(1, 3),
    groups=st.integers(1, 3),
    T=st.integers(1, 6),
    S=st.integers(1, 6),
    Dh=st.integers(1, 8),
    mask_kind=st.sampled_from(["none", "full", "heads1", "padding", "2d"]),
    density=st.floats(0.0, 1.0),
    causal=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_kernels_agree(B, Hkv, groups, T, S, Dh, mask_kind, density, causal,
                                with_bias, seed):
    H = Hkv * groups
    q, k, v = make_qkv(B, H, Hkv, T, S, Dh, seed=seed)
    mask_shape = {
        "full": (B, H, T, S), "heads1": (B, 1, T, S), "padding": (B, 1, 1, S), "2d": (T, S),
    }.get(mask_kind)
    mask = None if mask_shape is None else random_mask(mask_shape, seed=seed + 1, density=density)
    bias = None
    if with_bias:
        bias = torch.randn(1, H, T, S, generator=torch.Generator().manual_seed(seed + 2))
    kw = dict(mask=mask, causal=causal, bias=bias)

    want_out, want_w = naive_attention(q, k, v, **kw)
    ref_out, ref_w = run_kernel("reference", q, k, v, need_weights=True, **kw)
    sdpa_out, _ = run_kernel("sdpa", q, k, v, **kw)
    torch.testing.assert_close(ref_out, want_out.float(), **FP32)
    torch.testing.assert_close(sdpa_out, want_out.float(), **FP32)
    torch.testing.assert_close(ref_w, want_w.float(), **FP32)
    row_sums = ref_w.sum(-1)
    has_key = allowed_positions(B, H, T, S, mask, causal).any(-1)
    torch.testing.assert_close(row_sums, has_key.float(), **FP32)
    assert torch.isfinite(sdpa_out).all()
