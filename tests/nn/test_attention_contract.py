"""The attention forward contract, checked for every entry of the ATTENTION registry.

A new mechanism is tested by being registered. Mechanisms whose constructor takes `kernel` run
once per registered kernel. A check is skipped only through the mechanism's capability flags
(`supports_causal`, `supports_mask`, `supports_full_mask`, `supports_cache`, `supports_cross`,
`supports_bias`, and `permutation_equivariant` for mechanisms that look at positions), each read
with a default of True. `normalized_weights = False` (Nystrom) skips the rows-sum-to-1 and
non-negativity checks of the returned weights. `weights_over_keys = False` (Linformer) means
need_weights returns weights over the mechanism's own slots, (B, H, T, slots), not the keys.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.func import functional_call

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION, KERNELS
from attnlab.nn.cache import KVCache

torch.set_num_threads(1)

D, H = 16, 2  # d_model, n_heads
B, T, S = 2, 6, 4  # batch, query length, context length (S != T on purpose)
TOL = dict(atol=1e-5, rtol=1e-5)


def variants():
    params = []
    for name in ATTENTION.names():
        signature = inspect.signature(ATTENTION.get(name)).parameters
        if "kernel" in signature:
            for kernel in KERNELS.names():
                params.append(pytest.param(name, {"kernel": kernel}, id=f"{name}-{kernel}"))
        else:
            params.append(pytest.param(name, {}, id=name))
    return params


VARIANTS = variants()


def build(name, extra, seed=0, **kw):
    torch.manual_seed(seed)
    return ATTENTION.build(name, d_model=D, n_heads=H, **extra, **kw).eval()


def inputs(seed=0, batch=B, length=T, context_length=S):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, D, generator=g)
    context = torch.randn(batch, context_length, D, generator=g)
    return x, context


def normalized(attn):
    return getattr(type(attn), "normalized_weights", True)


def over_keys(attn):
    return getattr(type(attn), "weights_over_keys", True)


def need(attn, *flags):
    for flag in flags:
        if not getattr(type(attn), flag, True):
            pytest.skip(f"{type(attn).__name__}.{flag} is False")


# --------------------------------------------------------------------------------------------
# Shapes and weights
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_self_attention_shapes_and_weights(name, extra):
    attn = build(name, extra)
    x, _ = inputs()
    result = attn(x, need_weights=True)
    assert result.output.shape == (B, T, D)
    assert result.weights.shape[:3] == (B, H, T)
    if over_keys(attn):
        assert result.weights.shape == (B, H, T, T)
    assert result.cache is None
    if normalized(attn):
        torch.testing.assert_close(result.weights.sum(-1), torch.ones(B, H, T), **TOL)
        assert (result.weights >= 0).all()
    assert attn(x).weights is None


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_cross_attention_shapes_and_weights(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cross")
    x, context = inputs()
    result = attn(x, context, need_weights=True)
    assert result.output.shape == (B, T, D)
    assert result.weights.shape[:3] == (B, H, T)
    if over_keys(attn):
        assert result.weights.shape == (B, H, T, S)
    if normalized(attn):
        torch.testing.assert_close(result.weights.sum(-1), torch.ones(B, H, T), **TOL)
    # The output depends on the context.
    other = attn(x, context + 1.0).output
    assert not torch.allclose(other, result.output)


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_need_weights_does_not_change_the_output(name, extra):
    attn = build(name, extra)
    x, _ = inputs()
    causal = getattr(type(attn), "supports_causal", True)
    a = attn(x, causal=causal).output
    b = attn(x, causal=causal, need_weights=True).output
    torch.testing.assert_close(a, b, **TOL)


# --------------------------------------------------------------------------------------------
# Causality, permutations, padding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_causality(name, extra):
    attn = build(name, extra)
    need(attn, "supports_causal")
    x, _ = inputs()
    full = attn(x, causal=True, need_weights=True)
    upper = torch.ones(T, T, dtype=torch.bool).triu(1)
    assert (full.weights[..., upper] == 0).all()
    for t in range(T - 1):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(B, T - t - 1, D)
        out = attn(changed, causal=True).output
        torch.testing.assert_close(out[:, : t + 1], full.output[:, : t + 1], **TOL)
        assert not torch.allclose(out[:, t + 1:], full.output[:, t + 1:])


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_permutation_equivariance(name, extra):
    attn = build(name, extra)
    need(attn, "permutation_equivariant")
    x, context = inputs()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out = attn(x).output
    torch.testing.assert_close(attn(x[:, perm]).output, out[:, perm], **TOL)
    if getattr(type(attn), "supports_cross", True):
        # Cross-attention: permuting the context leaves every output unchanged.
        ctx_perm = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(
            attn(x, context[:, ctx_perm]).output, attn(x, context).output, **TOL
        )


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_padding_invariance_self_attention(name, extra):
    attn = build(name, extra)
    need(attn, "supports_mask")
    x, _ = inputs()
    pad = 3
    padded = torch.cat([x, 100 * torch.randn(B, pad, D)], dim=1)  # junk after the real tokens
    keep = torch.ones(B, T + pad, dtype=torch.bool)
    keep[:, T:] = False
    for causal in (False, True):
        if causal and not getattr(type(attn), "supports_causal", True):
            continue
        want = attn(x, causal=causal).output
        got = attn(padded, mask=AF.padding_mask(keep), causal=causal, need_weights=True)
        torch.testing.assert_close(got.output[:, :T], want, **TOL)
        if over_keys(attn):
            assert (got.weights[..., T:] == 0).all()


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_padding_invariance_cross_attention(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cross", "supports_mask")
    x, context = inputs()
    want = attn(x, context).output
    junk = 100 * torch.randn(B, 2, D)
    right = torch.cat([context, junk], dim=1)  # (B, S + 2, D)
    keep = torch.ones(B, S + 2, dtype=torch.bool)
    keep[:, S:] = False
    torch.testing.assert_close(attn(x, right, mask=AF.padding_mask(keep)).output, want, **TOL)
    if getattr(type(attn), "permutation_equivariant", True):
        left = torch.cat([junk, context], dim=1)
        torch.testing.assert_close(
            attn(x, left, mask=AF.padding_mask(keep.flip(1))).output, want, **TOL
        )
    # Per-example lengths: the first example has only 2 real context tokens.
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[0, 2:] = False
    got = attn(x, context, mask=AF.padding_mask(keep)).output
    torch.testing.assert_close(got[0], attn(x[:1], context[:1, :2]).output[0], **TOL)
    torch.testing.assert_close(got[1], want[1], **TOL)


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_batch_rows_are_independent(name, extra):
    attn = build(name, extra)
    x, context = inputs(batch=3)
    batched = attn(x).output
    for b in range(3):
        torch.testing.assert_close(attn(x[b: b + 1]).output[0], batched[b], **TOL)
    if getattr(type(attn), "supports_cross", True):
        batched = attn(x, context).output
        for b in range(3):
            alone = attn(x[b: b + 1], context[b: b + 1]).output[0]
            torch.testing.assert_close(alone, batched[b], **TOL)


# --------------------------------------------------------------------------------------------
# Fully masked rows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_fully_masked_rows_are_finite_and_isolated(name, extra):
    attn = build(name, extra).train()  # train mode with dropout 0: the path that backprops
    need(attn, "supports_mask", "supports_full_mask")
    x, _ = inputs()
    x.requires_grad_(True)
    mask = torch.ones(B, 1, T, T, dtype=torch.bool)
    mask[0, :, 1] = False
    mask[1, :, 4] = False
    result = attn(x, mask=mask, need_weights=True)
    out = result.output
    assert torch.isfinite(out).all()
    assert (result.weights[0, :, 1] == 0).all() and (result.weights[1, :, 4] == 0).all()
    # An empty row attends to nothing, so its output is one constant vector (zero before any
    # output projection), whatever the query and keys are.
    torch.testing.assert_close(out[0, 1], out[1, 4], **TOL)
    other_x = torch.randn(B, T, D)
    torch.testing.assert_close(attn(other_x, mask=mask).output[0, 1], out[0, 1], **TOL)
    # Other rows are exactly what they are without the empty rows.
    unmasked = attn(x.detach(), mask=torch.ones_like(mask)).output
    keep_rows = torch.ones(B, T, dtype=torch.bool)
    keep_rows[0, 1] = keep_rows[1, 4] = False
    torch.testing.assert_close(out.detach()[keep_rows], unmasked[keep_rows], **TOL)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in attn.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_fully_padded_context_is_finite(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cross", "supports_mask")
    x, context = inputs()
    keep = torch.ones(B, S, dtype=torch.bool)
    keep[1] = False  # the second example has no context at all
    result = attn(x, context, mask=AF.padding_mask(keep), need_weights=True)
    assert torch.isfinite(result.output).all()
    assert (result.weights[1] == 0).all()
    torch.testing.assert_close(result.output[0], attn(x[:1], context[:1]).output[0], **TOL)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_gradients_reach_every_parameter(name, extra):
    attn = build(name, extra).train()
    x, context = inputs()
    x.requires_grad_(True)
    loss = (attn(x).output * torch.randn(B, T, D)).sum()
    if getattr(type(attn), "supports_cross", True):
        loss = loss + (attn(x, context).output * torch.randn(B, T, D)).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = list(attn.named_parameters())
    assert params, "every mechanism has learnable parameters"
    for pname, p in params:
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gradient is all zeros"


# --------------------------------------------------------------------------------------------
# KV cache
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
@pytest.mark.parametrize("prefill", [1, 3], ids=["token_by_token", "chunked_prefill"])
def test_incremental_decoding_equals_full_causal(name, extra, prefill):
    attn = build(name, extra)
    need(attn, "supports_cache", "supports_causal")
    x, _ = inputs()
    full = attn(x, causal=True).output
    cache = KVCache()
    steps = []
    result = attn(x[:, :prefill], causal=True, cache=cache)
    assert result.cache is cache
    steps.append(result.output)
    for t in range(prefill, T):
        result = attn(x[:, t: t + 1], causal=True, cache=result.cache, need_weights=True)
        assert result.weights.shape == (B, H, 1, t + 1)
        steps.append(result.output)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    assert cache.length == T
    assert cache.key.shape[0] == B and cache.key.shape[2] == T
    assert cache.value.shape[0] == B and cache.value.shape[2] == T


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_cache_reorder_selects_batch_rows(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cache", "supports_causal")
    x, _ = inputs(batch=3)
    cache = KVCache()
    attn(x[:, :4], causal=True, cache=cache)
    index = torch.tensor([2, 2, 0])
    cache.reorder(index)
    step = attn(x[index, 4:5], causal=True, cache=cache).output
    full = attn(x[index, :5], causal=True).output
    torch.testing.assert_close(step[:, 0], full[:, 4], **TOL)


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_cross_attention_cache_filled_once(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cache", "supports_cross")
    x, context = inputs()
    cache = KVCache(cross=True)
    first = attn(x[:, :2], context, cache=cache)
    assert first.cache is cache and cache.length == S
    key, value = cache.key, cache.value
    torch.testing.assert_close(first.output, attn(x[:, :2], context).output, **TOL)
    for t in range(2, T):  # later steps: no context, the cache stands in for it
        step = attn(x[:, t: t + 1], cache=cache, need_weights=True)
        assert step.weights.shape == (B, H, 1, S)
        torch.testing.assert_close(step.output, attn(x[:, t: t + 1], context).output, **TOL)
    assert cache.key is key and cache.value is value and cache.length == S


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_cross_attention_empty_cache_without_context_is_an_error(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cache", "supports_cross")
    x, _ = inputs()
    with pytest.raises(ValueError, match="context"):
        attn(x, cache=KVCache(cross=True))


# --------------------------------------------------------------------------------------------
# Determinism and dropout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_eval_is_deterministic(name, extra):
    kw = {}
    if "dropout" in inspect.signature(ATTENTION.get(name)).parameters:
        kw["dropout"] = 0.5
    attn = build(name, extra, **kw)
    x, context = inputs()
    assert torch.equal(attn(x).output, attn(x).output)
    plain = build(name, extra)  # same seed -> same weights, no dropout
    torch.testing.assert_close(attn(x).output, plain(x).output, **TOL)
    if getattr(type(attn), "supports_cross", True):
        assert torch.equal(attn(x, context).output, attn(x, context).output)
    if kw:
        attn.train()
        torch.manual_seed(1)
        a = attn(x).output
        torch.manual_seed(1)
        b = attn(x).output
        assert torch.equal(a, b)  # dropout follows the global RNG
        assert not torch.allclose(a, plain(x).output)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_wrong_width_names_d_model(name, extra):
    attn = build(name, extra)
    with pytest.raises(ValueError, match="d_model"):
        attn(torch.randn(B, T, D + 1))
    with pytest.raises(ValueError, match="d_model"):
        attn(torch.randn(T, D))


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_integer_mask_is_a_type_error(name, extra):
    attn = build(name, extra)
    need(attn, "supports_mask")
    x, _ = inputs()
    with pytest.raises(TypeError, match="bool"):
        attn(x, mask=torch.ones(B, 1, 1, T, dtype=torch.int64))


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_mask_with_wrong_shape_names_the_shapes(name, extra):
    attn = build(name, extra)
    need(attn, "supports_mask")
    x, _ = inputs()
    with pytest.raises(ValueError, match=r"\(2, 1, 1, 5\)"):
        attn(x, mask=torch.ones(B, 1, 1, T - 1, dtype=torch.bool))


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_context_with_wrong_batch_or_width(name, extra):
    attn = build(name, extra)
    need(attn, "supports_cross")
    x, context = inputs()
    with pytest.raises(ValueError, match="context"):
        attn(x, context[:1])
    with pytest.raises(ValueError, match="context"):
        attn(x, torch.randn(B, S, D + 1))  # wrong width: a clear error, not a matmul failure


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_unsupported_features_raise(name, extra):
    attn = build(name, extra)
    x, context = inputs()
    cls = type(attn)
    calls = {
        "supports_causal": dict(causal=True),
        "supports_mask": dict(mask=torch.ones(B, 1, 1, T, dtype=torch.bool)),
        "supports_full_mask": dict(mask=torch.ones(T, T, dtype=torch.bool)),
        "supports_cache": dict(cache=KVCache()),
        "supports_cross": dict(context=context),
        "supports_bias": dict(bias=torch.zeros(1, H, T, T)),
    }
    for flag, kw in calls.items():
        if not getattr(cls, flag, True):
            with pytest.raises(ValueError):
                attn(x, **kw)


def test_every_registered_mechanism_builds_with_d_model_and_n_heads():
    assert {"multi_head", "additive", "multiplicative"} <= set(ATTENTION.names())
    with pytest.raises(KeyError, match="multi_head"):
        ATTENTION.build("no_such_attention", d_model=D, n_heads=H)


# --------------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cross", [False, True], ids=["self_causal_masked", "cross_masked"])
def test_gradcheck_multi_head_float64(cross):
    torch.manual_seed(0)
    attn = ATTENTION.build(
        "multi_head", d_model=4, n_heads=2, n_kv_heads=1, kernel="reference"
    ).double()
    names = [n for n, _ in attn.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in attn.parameters())
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    context = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    if cross:
        mask = torch.tensor([[True, False], [False, False], [True, True]])  # one empty row
    else:
        mask = torch.tensor([[True, True, True], [False, True, True], [True, True, False]])

    def fn(x, context, *params):
        kw = dict(mask=mask)
        if cross:
            kw["context"] = context
        else:
            kw["causal"] = True
        state = dict(zip(names, params, strict=True))
        out = functional_call(attn, state, (x,), kw).output
        return out if cross else out + 0 * context.sum()

    assert torch.autograd.gradcheck(fn, (x, context, *params), eps=1e-6, atol=1e-5)
