"""The local / structured-sparse variants: sliding_window, sparse, longformer, bigbird.

1. The blocked implementation equals a dense float64 reference of the same mechanism (softmax
   with the sparsity pattern as a mask), several blocks deep, with padding and lengths off the
   block grid; weights included.
2. Exactness limits: the pattern covers everything -> exact multi_head with the same weights.
3. The error against exact attention shrinks as the budget knob grows.
4. Causality, locality, padding, empty rows, KV-cache decoding, determinism of BigBird's
   random blocks.
5. Bad knob values raise ValueError naming the argument.
"""

from __future__ import annotations

import pytest
import torch

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION
from attnlab.nn.cache import KVCache

torch.set_num_threads(1)

D, H, B, T = 16, 2, 2, 100  # d_model, n_heads, batch, a length of several blocks of 8
TOL = dict(atol=1e-10, rtol=1e-10)


def build(name, seed=0, **kw):
    torch.manual_seed(seed)
    return ATTENTION.build(name, d_model=D, n_heads=H, **kw).double().eval()


def data(seed=0, length=T, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(B, length, D, generator=g, dtype=torch.float64)
    keep = torch.ones(B, length, dtype=torch.bool)
    keep[0, 5:9] = False  # holes inside the sequence
    keep[1, length - 13:] = False  # right padding
    return x, keep


def heads(attn, x, *names):
    return [attn.split_heads(getattr(attn, n)(x)) for n in names]


def dense(attn, x, allowed, keep):
    """softmax over `allowed` (T, S) or (H, T, S) & key padding, then out_proj: the reference."""
    q, k, v = heads(attn, x, "q_proj", "k_proj", "v_proj")
    mask = allowed & keep[:, None, None, :]  # (B, H | 1, T, S)
    out, weights = AF.scaled_dot_product_attention(q, k, v, mask=mask, need_weights=True)
    return out, weights


def finish(attn, out):
    B_, H_, T_, Dh = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(B_, T_, H_ * Dh))


def exact(attn, x, **kw):
    """multi_head (reference kernel) holding the variant's projection weights."""
    mha = ATTENTION.build("multi_head", d_model=D, n_heads=H, kernel="reference").double()
    mha.load_state_dict(attn.state_dict(), strict=False)
    return mha.eval()(x, **kw)


def positions(length):
    return torch.arange(length)[:, None], torch.arange(length)[None, :]  # (T, 1), (1, S)


def check_against(attn, x, keep, allowed, causal=False, rows=None):
    """The variant equals the dense reference; `rows` (out, weights) override leading rows."""
    got = attn(x, mask=AF.padding_mask(keep), causal=causal, need_weights=True)
    out, weights = dense(attn, x, allowed, keep)
    if rows is not None:
        n = rows[0].size(2)
        out = torch.cat([rows[0], out[:, :, n:]], dim=2)
        weights = torch.cat([rows[1], weights[:, :, n:]], dim=2)
    torch.testing.assert_close(got.weights, weights, **TOL)
    torch.testing.assert_close(got.output, finish(attn, out), **TOL)


# --------------------------------------------------------------------------------------------
# 1. Blocked implementation == dense reference of the same pattern
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, 3, 8])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_equals_dense_band(window, causal):
    attn = build("sliding_window", window=window)
    x, keep = data()
    i, j = positions(T)
    allowed = ((i - j >= 0) & (i - j <= window)) if causal else (i - j).abs() <= window
    check_against(attn, x, keep, allowed, causal)


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("causal", [False, True])
def test_sparse_equals_dense_pattern(pattern, causal):
    attn = build("sparse", pattern=pattern, block=8, n_summary=2)
    x, keep = data()
    i, j = positions(T)
    if pattern == "strided":
        allowed = ((i - j).abs() < 8) | ((i - j) % 8 == 0)
    else:
        allowed = (i // 8 == j // 8) | (j % 8 >= 6)
    check_against(attn, x, keep, allowed & (j <= i) if causal else allowed, causal)


@pytest.mark.parametrize("dilation", [1, 3])
def test_longformer_equals_dense_window_plus_global(dilation):
    attn = build("longformer", window=4, dilation=dilation, n_global=3)
    with torch.no_grad():  # the global projections are their own parameters
        for name in ("global_q_proj", "global_k_proj", "global_v_proj"):
            getattr(attn, name).weight.add_(0.3 * torch.randn_like(getattr(attn, name).weight))
    x, keep = data()
    i, j = positions(T)
    allowed = (((i - j).abs() <= 4 * dilation) & ((i - j) % dilation == 0)) | (j < 3)
    q, k, v = heads(attn, x, "global_q_proj", "global_k_proj", "global_v_proj")
    top = AF.scaled_dot_product_attention(q[:, :, :3], k, v, mask=keep[:, None, None, :],
                                          need_weights=True)
    check_against(attn, x, keep, allowed, rows=top)


def bigbird_pattern(attn, length):
    """(H, T, T) BigBird pattern: window blocks, global blocks both ways, drawn random blocks."""
    b, half, g = attn.block, attn.n_window_blocks // 2, attn.n_global_blocks
    n = -(-length // b)
    qb, kb = (p // b for p in positions(length))
    allowed = ((qb - kb).abs() <= half) | (kb < g) | (qb < g)  # (T, T)
    random = attn.random_blocks(n)  # (H, n, r)
    hit = torch.zeros(H, n, n + 1, dtype=torch.bool)
    hit.scatter_(-1, random.where(random >= 0, n), True)  # -1 (none left) -> spare column n
    return allowed | hit[:, qb[:, 0]][:, :, kb[0]]  # (H, T, T)


@pytest.mark.parametrize("kw", [{}, dict(n_window_blocks=5, n_global_blocks=2, n_random_blocks=3),
                                dict(n_global_blocks=0, n_random_blocks=1)])
def test_bigbird_equals_dense_block_pattern(kw):
    attn = build("bigbird", block=8, **kw)
    x, keep = data()
    allowed = bigbird_pattern(attn, T)
    assert not allowed.all()  # really sparse at this length
    check_against(attn, x, keep, allowed)


# --------------------------------------------------------------------------------------------
# 2. Exactness limits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw, causal", [
    ("sliding_window", dict(window=29), False),
    ("sliding_window", dict(window=29), True),
    ("sparse", dict(pattern="strided", block=30), True),
    ("sparse", dict(pattern="strided", block=30), False),
    ("sparse", dict(pattern="fixed", block=30), True),
    ("longformer", dict(window=29, n_global=2), False),
    ("bigbird", dict(block=10), False),  # 3 blocks: window + global cover everything
])
def test_covering_pattern_is_exact_attention(name, kw, causal):
    attn = build(name, **kw)
    x, keep = data(length=30)
    mask = AF.padding_mask(keep)
    got = attn(x, mask=mask, causal=causal, need_weights=True)
    want = exact(attn, x, mask=mask, causal=causal, need_weights=True)
    torch.testing.assert_close(got.output, want.output, **TOL)
    torch.testing.assert_close(got.weights, want.weights, **TOL)


def test_bigbird_is_exact_when_random_blocks_cover_the_rest():
    # 8 blocks: an end block has 2 window blocks + 1 global, 5 left for the random draw.
    attn = build("bigbird", block=8, n_random_blocks=5)
    x, _ = data(length=64)
    torch.testing.assert_close(attn(x).output, exact(attn, x).output, **TOL)


# --------------------------------------------------------------------------------------------
# 3. Error against exact attention shrinks as the budget grows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw, budgets", [
    ("sliding_window", {}, [4, 16, 48]),
    ("sparse", dict(pattern="strided"), [16, 32, 64]),
    ("sparse", dict(pattern="fixed"), [16, 32, 64]),
    ("longformer", {}, [4, 16, 48]),
    ("bigbird", dict(block=8), [0, 3, 8]),
])
def test_error_shrinks_as_the_budget_grows(name, kw, budgets):
    knob = ATTENTION.get(name).budget_knob
    errors = []
    for budget in budgets:
        total = 0.0
        for seed in range(3):
            attn = build(name, seed=seed, **kw, **{knob: budget})
            x, _ = data(seed, length=128, scale=3.0)  # sharper attention than unit inputs
            want = exact(attn, x).output
            total += ((attn(x).output - want).norm() / want.norm()).item() / 3
        errors.append(total)
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.75 * errors[0], errors


# --------------------------------------------------------------------------------------------
# 4. Causality, locality, padding, empty rows, cache, determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw", [("sliding_window", dict(window=5)),
                                      ("sparse", dict(block=8)),
                                      ("sparse", dict(pattern="fixed", block=8))])
def test_causal_outputs_ignore_the_future_several_blocks_deep(name, kw):
    attn = build(name, **kw)
    x, _ = data()
    full = attn(x, causal=True)
    for t in (0, 7, 8, 41, 98):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(B, T - t - 1, D, dtype=torch.float64)
        torch.testing.assert_close(attn(changed, causal=True).output[:, : t + 1],
                                   full.output[:, : t + 1], **TOL)


def test_sliding_window_is_local():
    attn = build("sliding_window", window=5)
    x, _ = data()
    changed = x.clone()
    changed[:, 50] += 1.0
    moved = (attn(changed).output - attn(x).output).abs().amax(dim=(0, 2)) > 0  # (T,)
    assert moved.nonzero().flatten().tolist() == list(range(45, 56))


@pytest.mark.parametrize("prefill", [1, 7])
def test_sliding_window_cache_decoding_equals_full_causal(prefill):
    attn = build("sliding_window", window=4)
    x, _ = data(length=30)
    full = attn(x, causal=True).output
    cache = KVCache()
    steps = [attn(x[:, :prefill], causal=True, cache=cache).output]
    for t in range(prefill, 30):
        step = attn(x[:, t: t + 1], causal=True, cache=cache, need_weights=True)
        assert (step.weights[..., : max(0, t - 4)] == 0).all()  # older keys are out of reach
        steps.append(step.output)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


@pytest.mark.parametrize("name, kw", [("sliding_window", dict(window=5)),
                                      ("sparse", dict(block=8)),
                                      ("sparse", dict(pattern="fixed", block=8)),
                                      ("longformer", dict(window=3, dilation=2, n_global=2)),
                                      ("bigbird", dict(block=8))])
def test_trailing_padding_is_invisible_and_gets_no_weight(name, kw):
    attn = build(name, **kw)
    x, _ = data(length=37)
    junk = torch.cat([x, 100 * torch.randn(B, 3, D, dtype=torch.float64)], dim=1)  # 5 blocks
    keep = torch.arange(40) < 37
    causal = ATTENTION.get(name).supports_causal
    got = attn(junk, mask=keep[None, None, None, :], causal=causal, need_weights=True)
    torch.testing.assert_close(got.output[:, :37], attn(x, causal=causal).output, **TOL)
    assert (got.weights[..., 37:] == 0).all()


@pytest.mark.parametrize("name, kw", [("sliding_window", dict(window=5)),
                                      ("sparse", dict(block=8)),
                                      ("sparse", dict(pattern="fixed", block=8)),
                                      ("longformer", dict(window=3, n_global=2)),
                                      ("bigbird", dict(block=8))])
def test_queries_with_nothing_to_see_give_zero_and_finite_gradients(name, kw):
    attn = build(name, **kw).train()
    x, _ = data(length=37)
    x.requires_grad_(True)
    keep = torch.ones(B, 37, dtype=torch.bool)
    keep[1] = False  # the second example has no key at all
    result = attn(x, mask=AF.padding_mask(keep), need_weights=True)
    assert torch.isfinite(result.output).all()
    assert (result.weights[1] == 0).all()
    torch.testing.assert_close(result.output[1], attn.out_proj.bias.expand(37, D), **TOL)
    result.output.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)


def test_sliding_window_query_whose_window_is_all_padding_is_zero():
    attn = build("sliding_window", window=2)
    x, _ = data(length=20)
    keep = torch.ones(B, 20, dtype=torch.bool)
    keep[:, 5:12] = False  # query 8 sees keys 6..10 only: all padding
    out = attn(x, mask=AF.padding_mask(keep)).output
    torch.testing.assert_close(out[:, 8], attn.out_proj.bias.expand(B, D), **TOL)


@pytest.mark.parametrize("name, kw", [("sliding_window", dict(window=2)),
                                      ("sparse", dict(block=3)),
                                      ("sparse", dict(pattern="fixed", block=3)),
                                      ("longformer", dict(window=1, dilation=2)),
                                      ("bigbird", dict(block=2, n_random_blocks=1))])
def test_gradcheck_blocked_paths(name, kw):
    attn = build(name, **kw)
    x = torch.randn(1, 11, D, dtype=torch.float64, requires_grad=True)
    mask = AF.padding_mask(torch.arange(11)[None] != 4)
    causal = ATTENTION.get(name).supports_causal
    assert torch.autograd.gradcheck(lambda x: attn(x, mask=mask, causal=causal).output, (x,))


def test_bigbird_pattern_is_fixed_per_module_and_redrawn_on_request():
    a, b = build("bigbird", seed=3, block=4), build("bigbird", seed=3, block=4)
    x, _ = data(length=64)
    assert torch.equal(a(x).output, b(x).output)  # same seed, same module
    assert torch.equal(a.train()(x).output, a.eval()(x).output)  # no resampling in training
    for row in range(B):  # batch rows share the pattern and stay independent
        torch.testing.assert_close(a(x[row: row + 1]).output[0], a(x).output[row], **TOL)
    before = a.random_blocks(16)
    torch.manual_seed(4)
    a.redraw()
    assert not torch.equal(a.random_blocks(16), before)
    assert not torch.allclose(a(x).output, b(x).output)
    b.load_state_dict(a.state_dict())  # the pattern travels with the weights
    assert torch.equal(a(x).output, b(x).output)


def test_bigbird_random_blocks_avoid_window_and_global_blocks():
    attn = build("bigbird", block=4, n_window_blocks=3, n_global_blocks=2, n_random_blocks=3)
    random = attn.random_blocks(12)  # (H, 12, 3)
    rows = torch.arange(12)[None, :, None]
    drawn = random[random >= 0]
    assert (drawn >= 2).all()
    assert ((random - rows).abs() > 1)[random >= 0].all()
    for h in range(H):
        for r in range(12):
            got = random[h, r][random[h, r] >= 0]
            assert got.unique().numel() == got.numel()  # no block twice
    assert (random[:, 5] >= 0).all()  # 7 candidates: all 3 drawn


# --------------------------------------------------------------------------------------------
# 5. Bad knobs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kw, word", [
    ("sliding_window", dict(window=-1), "window"),
    ("sliding_window", dict(window=2.5), "window"),
    ("sliding_window", dict(dropout=1.0), "dropout"),
    ("sparse", dict(block=0), "block"),
    ("sparse", dict(pattern="dense"), "pattern"),
    ("sparse", dict(pattern="fixed", block=4, n_summary=5), "n_summary"),
    ("sparse", dict(n_summary=0), "n_summary"),
    ("longformer", dict(window=-2), "window"),
    ("longformer", dict(dilation=0), "dilation"),
    ("longformer", dict(n_global=-1), "n_global"),
    ("bigbird", dict(block=0), "block"),
    ("bigbird", dict(n_window_blocks=2), "n_window_blocks"),
    ("bigbird", dict(n_global_blocks=-1), "n_global_blocks"),
    ("bigbird", dict(n_random_blocks=True), "n_random_blocks"),
])
def test_bad_knobs_name_the_argument(name, kw, word):
    with pytest.raises(ValueError, match=word):
        ATTENTION.build(name, d_model=D, n_heads=H, **kw)


@pytest.mark.parametrize("name", ["longformer", "bigbird"])
def test_bidirectional_only_variants_refuse_causal(name):
    with pytest.raises(ValueError, match="causal"):
        build(name)(data(length=8)[0], causal=True)
