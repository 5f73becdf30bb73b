"""Attention core: kernels vs a float64 naive oracle, the registry contract, torch MHA parity."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION, KERNELS
from attnlab.nn.cache import KVCache

torch.set_num_threads(1)


def naive_attention(q, k, v, mask=None, causal=False, bias=None):
    """Independent float64 oracle: explicit loops over batch and head, -inf masking."""
    q, k, v = q.double(), k.double(), v.double()
    B, H, T, Dh = q.shape
    S, Hkv = k.size(2), k.size(1)
    out = torch.zeros(B, H, T, Dh, dtype=torch.float64)
    weights = torch.zeros(B, H, T, S, dtype=torch.float64)
    full = torch.ones(B, H, T, S, dtype=torch.bool)
    if mask is not None:
        full = full & mask.expand(B, H, T, S)
    if causal:
        for i in range(T):
            full[:, :, i, max(0, i + (S - T) + 1):] = False
    for b in range(B):
        for h in range(H):
            kv = h // (H // Hkv)
            scores = q[b, h] @ k[b, kv].T / Dh**0.5
            if bias is not None:
                scores = scores + bias.expand(B, H, T, S)[b, h].double()
            scores = scores.masked_fill(~full[b, h], float("-inf"))
            for i in range(T):
                if full[b, h, i].any():
                    weights[b, h, i] = torch.softmax(scores[i], dim=-1)
            out[b, h] = weights[b, h] @ v[b, kv]
    return out, weights


def random_qkv(B=2, H=4, Hkv=4, T=5, S=7, Dh=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, Dh, generator=g, dtype=dtype),
            torch.randn(B, Hkv, S, Dh, generator=g, dtype=dtype),
            torch.randn(B, Hkv, S, Dh, generator=g, dtype=dtype))


CASES = {
    "plain": dict(),
    "mask": dict(mask=True),
    "causal_square": dict(causal=True, S=5),
    "causal_fewer_queries": dict(causal=True, T=3, S=7),
    "causal_more_queries": dict(causal=True, T=7, S=4),
    "gqa": dict(Hkv=2),
    "mqa_masked_causal": dict(Hkv=1, mask=True, causal=True, T=7, S=7),
    "bias": dict(bias=True),
}


@pytest.mark.parametrize("kernel", KERNELS.names())
@pytest.mark.parametrize("case", CASES)
def test_kernels_match_float64_oracle(kernel, case):
    options = dict(CASES[case])
    use_mask, use_bias = options.pop("mask", False), options.pop("bias", False)
    causal = options.pop("causal", False)
    q, k, v = random_qkv(**options)
    B, H, T, S = q.size(0), q.size(1), q.size(2), k.size(2)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(B, 1, T, S, generator=g) > 0.3 if use_mask else None
    if mask is not None:
        mask[0, 0, 1] = False  # one query with nothing to attend to
    bias = torch.randn(1, H, T, S, generator=g) if use_bias else None
    out, weights = KERNELS.get(kernel)(q, k, v, mask=mask, causal=causal, bias=bias,
                                       need_weights=True)
    ref_out, ref_weights = naive_attention(q, k, v, mask, causal, bias)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.double(), ref_weights, atol=1e-5, rtol=1e-5)
    fast, _ = KERNELS.get(kernel)(q, k, v, mask=mask, causal=causal, bias=bias)
    torch.testing.assert_close(fast.double(), ref_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS.names())
def test_fully_masked_rows_are_zero_with_finite_grads(kernel):
    q, k, v = (t.requires_grad_() for t in random_qkv())
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of batch 0 sees nothing
    mask[1] = False  # batch 1 is all padding
    out, _ = KERNELS.get(kernel)(q, k, v, mask=mask)
    assert torch.isfinite(out).all()
    assert out[0, :, 2].abs().max() == 0 and out[1].abs().max() == 0
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    # Nothing leaked into the healthy rows: they equal an unmasked computation of batch 0.
    ref, _ = naive_attention(q[:1].detach(), k[:1].detach(), v[:1].detach(), mask[:1])
    torch.testing.assert_close(out[:1].detach().double(), ref, atol=1e-5, rtol=1e-5)


def test_sdpa_and_reference_gradients_agree():
    grads = {}
    for kernel in KERNELS.names():
        q, k, v = (t.requires_grad_() for t in random_qkv(Hkv=2))
        mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(3)) > 0.3
        out, _ = KERNELS.get(kernel)(q, k, v, mask=mask, causal=True)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[kernel] = [t.grad for t in (q, k, v)]
    for a, b in zip(grads["reference"], grads["sdpa"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_grouped_query_equals_repeated_kv():
    q, k, v = random_qkv(H=6, Hkv=2)
    grouped, _ = AF.scaled_dot_product_attention(q, k, v, causal=True)
    repeated, _ = AF.scaled_dot_product_attention(
        q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1), causal=True
    )
    torch.testing.assert_close(grouped, repeated)


def test_gradcheck_reference_float64():
    q, k, v = (t.requires_grad_() for t in random_qkv(B=1, H=2, Hkv=1, T=3, S=4, Dh=4,
                                                        dtype=torch.float64))
    mask = torch.tensor([[[[True, True, False, True]]]])

    def fn(q, k, v):
        return AF.scaled_dot_product_attention(q, k, v, mask=mask, causal=True)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda q, k, v: (q[0], k, v, None), ValueError, "q must be 4-D"),
        (lambda q, k, v: (q, k.double(), v, None), TypeError, "share one dtype"),
        (lambda q, k, v: (q.long(), k, v, None), TypeError, "floating-point"),
        (lambda q, k, v: (q[:, :3], k, v, None), ValueError, "multiple of key/value heads"),
        (lambda q, k, v: (q, k, v, torch.ones(2, 1, 5, 7, dtype=torch.long)), TypeError,
         "bool"),
        (lambda q, k, v: (q, k, v, torch.ones(2, 1, 5, 6, dtype=torch.bool)), ValueError,
         r"\(2, 1, 5, 6\) does not broadcast to \(B, H, T, S\) = \(2, 4, 5, 7\)"),
    ],
)
@pytest.mark.parametrize("kernel", KERNELS.names())
def test_kernel_input_errors(kernel, change, error, match):
    q, k, v, mask = change(*random_qkv())
    with pytest.raises(error, match=match):
        KERNELS.get(kernel)(q, k, v, mask=mask)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), groups=st.integers(1, 3),
       T=st.integers(1, 6), S=st.integers(1, 6), Dh=st.sampled_from([2, 4, 8]),
       causal=st.booleans(), seed=st.integers(0, 10_000), density=st.floats(0.0, 1.0))
def test_property_kernels_agree_with_oracle(B, Hkv, groups, T, S, Dh, causal, seed, density):
    q, k, v = random_qkv(B, Hkv * groups, Hkv, T, S, Dh, seed)
    mask = torch.rand(B, 1, T, S, generator=torch.Generator().manual_seed(seed)) < density
    ref_out, ref_weights = naive_attention(q, k, v, mask, causal)
    for kernel in KERNELS.names():
        out, weights = KERNELS.get(kernel)(q, k, v, mask=mask, causal=causal, need_weights=True)
        torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
        sums = weights.sum(-1)
        assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))


# -- the registry contract: every mechanism, self and cross attention ----------------------

D, H = 16, 4
MECHANISMS = [(name, {}) for name in ATTENTION.names()] + [
    ("multi_head", {"kernel": "reference"}), ("multi_head", {"n_kv_heads": 2}),
    ("multiplicative", {"score": "dot"}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in MECHANISMS]


def build(name, kw, seed=0):
    torch.manual_seed(seed)
    return ATTENTION.build(name, d_model=D, n_heads=H, **kw).eval()


@pytest.fixture(params=MECHANISMS, ids=IDS)
def mechanism(request):
    name, kw = request.param
    return build(name, kw)


def test_shapes_and_weights(mechanism):
    x, context = torch.randn(2, 5, D), torch.randn(2, 7, D)
    out, weights, cache = mechanism(x, need_weights=True)
    assert out.shape == (2, 5, D) and weights.shape == (2, H, 5, 5) and cache is None
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 5))
    if mechanism.supports_cross:
        out, weights, _ = mechanism(x, context, need_weights=True)
        assert out.shape == (2, 5, D) and weights.shape == (2, H, 5, 7)
    assert mechanism(x).weights is None


def test_causality(mechanism):
    if not mechanism.supports_causal:
        pytest.skip("declares no causal support")
    x = torch.randn(2, 6, D)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 2, D)
    a, b = mechanism(x, causal=True).output, mechanism(changed, causal=True).output
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_permutation_equivariance(mechanism):
    x = torch.randn(2, 6, D)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mechanism(x[:, perm]).output, mechanism(x).output[:, perm],
                               atol=1e-5, rtol=1e-5)


def test_padding_invariance(mechanism):
    if not mechanism.supports_mask:
        pytest.skip("declares no mask support")
    x = torch.randn(2, 5, D)
    padded = torch.cat([x, torch.randn(2, 3, D)], dim=1)
    mask = torch.tensor([True] * 5 + [False] * 3)[None, None, None, :]  # (1, 1, 1, 8)
    if mechanism.supports_cross:
        torch.testing.assert_close(mechanism(x, padded, mask=mask).output,
                                   mechanism(x, x).output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mechanism(padded, mask=mask).output[:, :5], mechanism(x).output,
                               atol=1e-5, rtol=1e-5)


def test_fully_masked_queries_give_zeros(mechanism):
    if not mechanism.supports_mask:
        pytest.skip("declares no mask support")
    x = torch.randn(2, 4, D, requires_grad=True)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0] = True
    out = mechanism(x, mask=mask, need_weights=True)
    assert torch.isfinite(out.output).all()
    assert out.weights[1].abs().max() == 0
    out.output.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradients_reach_every_parameter(mechanism):
    mechanism.train()
    x = torch.randn(2, 5, D, requires_grad=True)  # some mechanisms (Luong dot) have no weights
    context = torch.randn(2, 7, D)
    loss = mechanism(x, causal=mechanism.supports_causal).output.pow(2).sum()
    if mechanism.supports_cross:
        loss = loss + mechanism(x, context).output.pow(2).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in mechanism.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_incremental_decoding_with_cache(mechanism):
    if not (mechanism.supports_cache and mechanism.supports_causal):
        pytest.skip("declares no cache support")
    x = torch.randn(2, 6, D)
    full = mechanism(x, causal=True).output
    cache = KVCache()
    steps = [mechanism(x[:, :2], causal=True, cache=cache).output]  # chunked prefill
    steps += [mechanism(x[:, t:t + 1], causal=True, cache=cache).output for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 6


def test_cross_attention_cache_is_filled_once(mechanism):
    if not (mechanism.supports_cache and mechanism.supports_cross):
        pytest.skip("declares no cross cache support")
    x, context = torch.randn(2, 3, D), torch.randn(2, 7, D)
    cache = KVCache(cross=True)
    first = mechanism(x[:, :1], context, cache=cache).output
    key = cache.key
    second = mechanism(x[:, 1:], None, cache=cache).output  # no context needed any more
    assert cache.key is key and cache.length == 7
    torch.testing.assert_close(torch.cat([first, second], 1), mechanism(x, context).output,
                               atol=1e-5, rtol=1e-5)


def test_determinism_in_eval(mechanism):
    x = torch.randn(2, 5, D)
    assert torch.equal(mechanism(x).output, mechanism(x).output)


def test_contract_errors(mechanism):
    with pytest.raises(ValueError, match=f"d_model={D}"):
        mechanism(torch.randn(2, 5, D + 1))
    with pytest.raises(TypeError, match="bool"):
        mechanism(torch.randn(2, 5, D), mask=torch.ones(1, 1, 1, 5, dtype=torch.long))


def test_gradcheck_multi_head_float64():
    attn = ATTENTION.build("multi_head", d_model=8, n_heads=2, kernel="reference").double()
    x = torch.randn(1, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, causal=True).output, (x,))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(n_heads=3), "divisible by n_heads"), (dict(n_kv_heads=3), "multiple of n_kv_heads"),
     (dict(dropout=1.0), "dropout"), (dict(kernel="flash9"), "unknown attention kernel")],
)
def test_multi_head_construction_errors(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        ATTENTION.build("multi_head", **{"d_model": 16, "n_heads": 4, **kwargs})


# -- oracle: torch.nn.MultiheadAttention with copied weights ---------------------------------


def copied_pair(kernel: str):
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = ATTENTION.build("multi_head", d_model=D, n_heads=H, kernel=kernel).eval()
    wq, wk, wv = theirs.in_proj_weight.detach().chunk(3)
    bq, bk, bv = theirs.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for proj, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours, theirs


@pytest.mark.parametrize("kernel", KERNELS.names())
@pytest.mark.parametrize("training", [False, True])
def test_matches_torch_multihead_attention(kernel, training):
    ours, theirs = copied_pair(kernel)
    ours.train(training)
    theirs.train(training)
    x, context = torch.randn(2, 5, D), torch.randn(2, 7, D)
    # self-attention, causal: torch masks with True = NOT allowed
    future = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    expected, expected_w = theirs(x, x, x, attn_mask=future)
    got = ours(x, causal=True, need_weights=True)
    torch.testing.assert_close(got.output, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.weights.mean(1), expected_w, atol=1e-5, rtol=1e-5)
    # cross-attention with key padding (True = pad in torch)
    padding = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    expected, expected_w = theirs(x, context, context, key_padding_mask=padding)
    got = ours(x, context, mask=~padding[:, None, None, :], need_weights=True)
    torch.testing.assert_close(got.output, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.weights.mean(1), expected_w, atol=1e-5, rtol=1e-5)
    # arbitrary boolean attention mask
    blocked = torch.rand(5, 7, generator=torch.Generator().manual_seed(2)) > 0.6
    blocked[:, 0] = False  # keep every row attending somewhere (torch gives NaN otherwise)
    expected, _ = theirs(x, context, context, attn_mask=blocked)
    torch.testing.assert_close(ours(x, context, mask=~blocked).output, expected, atol=1e-5,
                               rtol=1e-5)


def test_grouped_query_module_equals_expanded_heads():
    torch.manual_seed(0)
    gqa = ATTENTION.build("multi_head", d_model=D, n_heads=H, n_kv_heads=2).eval()
    mha = ATTENTION.build("multi_head", d_model=D, n_heads=H).eval()
    Dh = D // H
    with torch.no_grad():
        mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
        mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for small, big in ((gqa.k_proj, mha.k_proj), (gqa.v_proj, mha.v_proj)):
            # head h of the expanded model uses kv head h // 2
            big.weight.copy_(small.weight.view(2, Dh, D).repeat_interleave(2, 0).reshape(D, D))
            big.bias.copy_(small.bias.view(2, Dh).repeat_interleave(2, 0).reshape(D))
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(gqa(x, causal=True).output, mha(x, causal=True).output,
                               atol=1e-6, rtol=1e-5)
