"""Low-rank and kernel attention variants: Linformer, Performer (FAVOR+), linear attention and
Nystromformer, each against a dense float64 form of its own mechanism, its exactness limit,
exact multi-head attention with the same weights, and its knob validation.

The registry-wide contract lives in test_attention_contract.py; these are the variant specifics.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION, MultiHeadAttention
from attnlab.nn.attention.nystrom import iterative_pinv
from attnlab.nn.cache import KVCache

torch.set_num_threads(1)

D, H = 16, 2  # d_model, n_heads (head_dim 8)
F64 = dict(atol=1e-10, rtol=1e-9)


def build(name, seed=0, d_model=D, n_heads=H, **kw):
    torch.manual_seed(seed)
    return ATTENTION.build(name, d_model=d_model, n_heads=n_heads, **kw).double().eval()


def exact_twin(attn):
    """Exact multi-head attention holding the variant's q/k/v/out projection weights."""
    ref = MultiHeadAttention(attn.d_model, attn.n_heads, kernel="reference").double().eval()
    ref.load_state_dict(attn.state_dict(), strict=False)
    return ref


def data(batch, length, seed, d_model=D, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, length, d_model, generator=g, dtype=torch.float64)


def heads(attn, x, context=None):
    """q (B, H, T, Dh), k and v (B, H, S, Dh) from the module's own projections."""
    source = x if context is None else context
    return (
        attn.split_heads(attn.q_proj(x)),
        attn.split_heads(attn.k_proj(source)),
        attn.split_heads(attn.v_proj(source)),
    )


def merge(attn, out):
    B, _, T, _ = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, D)


def normalise_rows(scores, allowed):
    """Dense kernel weights: zero where not allowed, rows divided by their sums (0 if empty)."""
    scores = scores * allowed
    sums = scores.sum(-1, keepdim=True)
    return scores / torch.where(sums > 0, sums, torch.ones_like(sums))


def relative_error(got, want):
    return ((got - want).norm() / want.norm()).item()


def key_padding(batch, length, lengths):
    keep = torch.zeros(batch, length, dtype=torch.bool)
    for b, n in enumerate(lengths):
        keep[b, :n] = True
    return keep


# --------------------------------------------------------------------------------------------
# Linformer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share_kv", [False, True])
def test_linformer_equals_dense_projected_softmax(share_kv):
    attn = build("linformer", rank=5, max_length=40, share_kv=share_kv)
    x, context = data(2, 7, 1), data(2, 23, 2)
    keep = key_padding(2, 23, [23, 11])
    result = attn(x, context, mask=AF.padding_mask(keep), need_weights=True)
    q, k, v = heads(attn, x, context)
    k, v = k * keep[:, None, :, None], v * keep[:, None, :, None]  # padded keys and values -> 0
    E = attn.seq_proj_k[:, :23]
    Fm = E if share_kv else attn.seq_proj_v[:, :23]
    weights = torch.softmax(q @ (E @ k).transpose(-1, -2) / math.sqrt(8), -1)  # (B, H, T, 5)
    torch.testing.assert_close(result.weights, weights, **F64)
    torch.testing.assert_close(result.output, merge(attn, weights @ (Fm @ v)), **F64)
    assert ("seq_proj_v" in attn.state_dict()) is not share_kv


def test_linformer_identity_projection_is_exact_attention():
    T = 12
    attn = build("linformer", rank=T, max_length=T)
    with torch.no_grad():
        attn.seq_proj_k.copy_(torch.eye(T))
        attn.seq_proj_v.copy_(torch.eye(T))
    x = data(2, T, 3)
    torch.testing.assert_close(attn(x).output, exact_twin(attn)(x).output, **F64)
    context = data(2, T, 4)  # cross-attention, same length
    torch.testing.assert_close(attn(x, context).output, exact_twin(attn)(x, context).output, **F64)


def _linformer_error(rank, projection, T=48, seeds=4):
    errors = []
    for seed in range(seeds):
        attn = build("linformer", seed=seed, rank=rank, max_length=T)
        g = torch.Generator().manual_seed(100 + seed)
        if projection == "sample":  # rank distinct keys, chosen at random
            rows = torch.zeros(rank, T, dtype=torch.float64)
            rows[torch.arange(rank), torch.randperm(T, generator=g)[:rank]] = 1.0
        elif projection == "gauss":  # Johnson-Lindenstrauss N(0, 1 / rank), shared by K and V
            rows = torch.randn(rank, T, generator=g, dtype=torch.float64) / math.sqrt(rank)
        else:  # zero slots: the output is out_proj(0), attention contributing nothing
            rows = torch.zeros(rank, T, dtype=torch.float64)
        with torch.no_grad():
            attn.seq_proj_k.copy_(rows)
            attn.seq_proj_v.copy_(rows)
        x = data(1, T, 200 + seed)
        errors.append(relative_error(attn(x).output, exact_twin(attn)(x).output))
    return sum(errors) / seeds


def test_linformer_error_shrinks_with_rank_for_sampling_projections():
    errors = [_linformer_error(rank, "sample") for rank in (6, 16, 32, 48)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-9  # rank = T: a permutation of the keys, exact


def test_linformer_gaussian_projections_do_not_converge_to_softmax():
    # Gaussian JL slots are random mixtures of keys: as the rank grows the softmax over them
    # flattens and the N(0, 1/rank) slot values average out, so the attention output tends to
    # 0, not to softmax attention. The error falls with the rank, then settles at the error of
    # attending to nothing: untrained, E and F approximate nothing (the paper's are learned).
    errors = [_linformer_error(rank, "gauss") for rank in (8, 32, 128, 512)]
    nothing = _linformer_error(8, "zero")
    assert errors[0] > errors[1] > errors[2]
    assert abs(errors[3] - nothing) < 0.05 * nothing


def test_linformer_rejects_longer_inputs_and_causal():
    attn = build("linformer", max_length=8)
    with pytest.raises(ValueError, match="max_length=8, got 9"):
        attn(data(1, 9, 0))
    with pytest.raises(ValueError, match="causal"):
        attn(data(1, 4, 0), causal=True)


# --------------------------------------------------------------------------------------------
# Kernel forms shared by Performer and linear attention
# --------------------------------------------------------------------------------------------


def performer_features(attn, x):
    """FAVOR+'s phi(x) = exp(W x~ - |x~|^2 / 2) / sqrt(m), x~ = x Dh^-1/4, with no stabiliser."""
    x = x * attn.head_dim**-0.25
    logits = x @ attn.projection.T - 0.5 * (x * x).sum(-1, keepdim=True)
    return logits.exp() / math.sqrt(attn.n_features)


def linear_features(attn, x):
    return F.elu(x) + 1.0


FEATURES = {"performer": performer_features, "linear": linear_features}


def dense_kernel_attention(name, attn, x, context=None, keep=None, causal=False):
    """phi(Q) phi(K)^T masked (padding, lower-right causal) and row-normalised, times V."""
    q, k, v = heads(attn, x, context)
    phi = FEATURES[name]
    scores = phi(attn, q) @ phi(attn, k).transpose(-1, -2)  # (B, H, T, S)
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if keep is not None:
        allowed = allowed & keep[:, None, None, :]
    if causal:
        allowed = allowed & AF.causal_mask(q.size(2), k.size(2))
    weights = normalise_rows(scores, allowed)
    return merge(attn, weights @ v), weights


KERNEL_VARIANTS = [
    pytest.param("performer", dict(n_features=24, chunk_size=16), id="performer"),
    pytest.param("linear", dict(chunk_size=16), id="linear"),
]


@pytest.mark.parametrize("name, kw", KERNEL_VARIANTS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_kernel_attention_equals_dense_quadratic_form(name, kw, causal):
    attn = build(name, **kw)
    x = data(2, 53, 5)  # 4 chunks of 16, the last one padded
    keep = key_padding(2, 53, [53, 29])
    for mask in (None, keep):
        result = attn(x, mask=None if mask is None else AF.padding_mask(mask), causal=causal,
                      need_weights=True)
        want, weights = dense_kernel_attention(name, attn, x, keep=mask, causal=causal)
        torch.testing.assert_close(result.output, want, **F64)
        torch.testing.assert_close(result.weights, weights, **F64)


@pytest.mark.parametrize("name, kw", KERNEL_VARIANTS)
@pytest.mark.parametrize("T, S", [(5, 40), (40, 40), (19, 7)], ids=["cache", "self", "T>S"])
def test_kernel_attention_lower_right_causal_cross_lengths(name, kw, T, S):
    # T < S is what the KV cache feeds attend; T > S leaves the first T - S queries empty.
    attn = build(name, **kw)
    x, context = data(2, T, 6), data(2, S, 7)
    keep = key_padding(2, S, [S, S - 3])
    got = attn(x, context, mask=AF.padding_mask(keep), causal=True).output
    want, _ = dense_kernel_attention(name, attn, x, context, keep=keep, causal=True)
    torch.testing.assert_close(got, want, **F64)
    if T > S:  # queries with no key get a zero output before out_proj
        torch.testing.assert_close(got[:, : T - S], attn.out_proj.bias.expand(2, T - S, D))


@pytest.mark.parametrize("name, kw", KERNEL_VARIANTS)
def test_kernel_attention_chunk_size_does_not_change_the_result(name, kw):
    x = data(2, 37, 8)
    outs = [build(name, **{**kw, "chunk_size": c})(x, causal=True).output for c in (1, 5, 64)]
    torch.testing.assert_close(outs[0], outs[1], **F64)
    torch.testing.assert_close(outs[0], outs[2], **F64)


@pytest.mark.parametrize("name, kw", KERNEL_VARIANTS)
def test_kernel_attention_cache_decoding_float64(name, kw):
    attn = build(name, **kw)
    x = data(2, 21, 9)
    full = attn(x, causal=True).output
    cache = KVCache()
    steps = [attn(x[:, :17], causal=True, cache=cache).output]
    for t in range(17, 21):
        steps.append(attn(x[:, t: t + 1], causal=True, cache=cache).output)
    torch.testing.assert_close(torch.cat(steps, 1), full, **F64)


def test_linear_recurrent_view_equals_parallel_causal_form():
    attn = build("linear", chunk_size=4)
    x = data(2, 11, 10)
    q, k, v = heads(attn, x)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    state = torch.zeros(2, H, 8, 8, dtype=torch.float64)  # S_t = sum phi(k_j) v_j^T
    norm = torch.zeros(2, H, 8, dtype=torch.float64)  # z_t = sum phi(k_j)
    outs = []
    for t in range(11):
        state = state + fk[:, :, t, :, None] * v[:, :, t, None, :]
        norm = norm + fk[:, :, t]
        num = (fq[:, :, t, :, None] * state).sum(-2)  # (B, H, Dh)
        outs.append(num / (fq[:, :, t] * norm).sum(-1, keepdim=True))
    recurrent = merge(attn, torch.stack(outs, 2))
    torch.testing.assert_close(attn(x, causal=True).output, recurrent, **F64)


def test_linear_attention_is_not_softmax_attention():
    # budget_knob None: a different kernel, not an approximation with a knob to converge.
    attn = build("linear")
    assert type(attn).budget_knob is None
    x = data(1, 16, 11)
    assert relative_error(attn(x).output, exact_twin(attn)(x).output) > 1e-3


# --------------------------------------------------------------------------------------------
# Performer specifics
# --------------------------------------------------------------------------------------------


def test_performer_error_shrinks_with_n_features():
    def error(m, seeds=4):
        total = 0.0
        for seed in range(seeds):
            attn = build("performer", seed=seed, d_model=32, n_features=m)
            x = data(1, 64, 300 + seed, d_model=32)
            total += relative_error(attn(x).output, exact_twin(attn)(x).output)
        return total / seeds

    errors = [error(m) for m in (8, 64, 512, 4096)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.1


def test_performer_features_are_gaussian_orthogonal_blocks():
    attn = build("performer", n_features=20)  # head_dim 8: blocks of 8, 8, 4 rows
    w = attn.projection / attn.projection.norm(dim=-1, keepdim=True)
    eye = torch.eye(8, dtype=torch.float64)  # drawn in float32
    torch.testing.assert_close(w[:8] @ w[:8].T, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(w[8:16] @ w[8:16].T, eye, atol=1e-6, rtol=0)
    # Unbiased kernel: averaged over many features, phi(q) . phi(k) -> exp(q . k / sqrt(Dh)).
    big = build("performer", n_features=60000)
    q, k = data(1, 4, 12, d_model=8)[0] * 0.5, data(1, 4, 13, d_model=8)[0] * 0.5
    estimate = performer_features(big, q) @ performer_features(big, k).T
    torch.testing.assert_close(estimate, (q @ k.T / math.sqrt(8)).exp(), atol=0, rtol=0.03)


def test_performer_redraw_and_seed():
    a, b = build("performer", seed=3), build("performer", seed=3)
    assert torch.equal(a.projection, b.projection)
    assert "projection" in a.state_dict()
    x = data(1, 9, 14)
    before = a(x).output
    a.redraw()
    assert not torch.equal(a.projection, b.projection)
    assert a.projection.dtype == torch.float64
    assert not torch.allclose(a(x).output, before)


def test_performer_is_stable_for_large_inputs():
    attn = build("performer").float()
    x = data(2, 70, 15, scale=30.0).float()
    for causal in (False, True):
        out = attn(x, causal=causal).output
        assert torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------
# Nystromformer
# --------------------------------------------------------------------------------------------


def dense_nystrom(attn, x, context=None, keep=None):
    """Landmarks by explicit per-example segment lists, dense kernels, torch.linalg.pinv."""
    q, k, v = heads(attn, x, context)
    q = q / math.sqrt(attn.head_dim)
    T, S = q.size(2), k.size(2)
    keep = torch.ones(x.size(0), S, dtype=torch.bool) if keep is None else keep
    q_keep = keep if T == S else torch.ones(x.size(0), T, dtype=torch.bool)

    def landmarks(z, kept):
        idx = kept.nonzero().flatten().tolist()
        m = min(attn.n_landmarks, z.size(1))
        groups = [[i for r, i in enumerate(idx) if r * m // len(idx) == s] for s in range(m)]
        groups = [g for g in groups if g]
        return torch.stack([z[:, g].mean(1) for g in groups], 1)  # (H, m', Dh)

    outs = []
    for b in range(x.size(0)):
        q_land, k_land = landmarks(q[b], q_keep[b]), landmarks(k[b], keep[b])
        c = torch.softmax(q[b] @ k_land.transpose(-1, -2), -1)  # (H, T, m')
        w = torch.softmax(q_land @ k_land.transpose(-1, -2), -1)  # (H, m', m')
        r = torch.softmax(q_land @ k[b, :, keep[b]].transpose(-1, -2), -1)  # (H, m', S_real)
        outs.append(c @ torch.linalg.pinv(w) @ r @ v[b, :, keep[b]])  # (H, T, Dh)
    return merge(attn, torch.stack(outs))


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_nystrom_equals_dense_landmark_form(cross):
    attn = build("nystrom", n_landmarks=5, pinv_iterations=60)
    x = data(2, 23, 16, scale=3.0)  # 23 and 13 not multiples of 5: uneven segments
    context = data(2, 31, 17, scale=3.0) if cross else None
    S = 31 if cross else 23
    keep = key_padding(2, S, [S, 13])
    got = attn(x, context, mask=AF.padding_mask(keep)).output
    torch.testing.assert_close(got, dense_nystrom(attn, x, context, keep), atol=1e-8, rtol=1e-7)


def test_nystrom_one_landmark_per_token_is_exact():
    attn = build("nystrom", n_landmarks=12, pinv_iterations=60)
    x, context = data(2, 12, 18, scale=2.0), data(2, 9, 19, scale=2.0)
    ref = exact_twin(attn)
    result = attn(x, need_weights=True)
    torch.testing.assert_close(result.output, ref(x).output, atol=1e-9, rtol=1e-8)
    torch.testing.assert_close(result.weights, ref(x, need_weights=True).weights, atol=1e-9,
                               rtol=1e-8)
    torch.testing.assert_close(attn(x, context).output, ref(x, context).output, atol=1e-9,
                               rtol=1e-8)


def test_nystrom_error_shrinks_with_n_landmarks():
    # The paper's 6 pseudo-inverse steps. (A converged pinv is exact at m = T, see above, but
    # below it amplifies the ill-conditioning of near-uniform attention: errors > 100% at m = 4.)
    def error(m, seeds=3):
        total = 0.0
        for seed in range(seeds):
            attn = build("nystrom", seed=seed, d_model=32, n_landmarks=m)
            x = data(1, 64, 400 + seed, d_model=32)
            total += relative_error(attn(x).output, exact_twin(attn)(x).output)
        return total / seeds

    errors = [error(m) for m in (4, 16, 32, 64)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.05


def test_nystrom_self_attention_padding_keeps_the_landmarks():
    # Fewer landmarks than tokens: padded queries and keys must not move any landmark.
    attn = build("nystrom", n_landmarks=4)
    x = data(2, 10, 20)
    padded = torch.cat([data(2, 5, 21, scale=100.0), x], 1)  # left padding
    keep = torch.ones(2, 15, dtype=torch.bool)
    keep[:, :5] = False
    got = attn(padded, mask=AF.padding_mask(keep)).output[:, 5:]
    torch.testing.assert_close(got, attn(x).output, **F64)


def test_iterative_pinv_converges_to_the_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(3 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64), -1)
    torch.testing.assert_close(iterative_pinv(a, 40), torch.linalg.pinv(a))
    tall = torch.softmax(torch.randn(7, 4, generator=g, dtype=torch.float64), -1)  # rank 4
    torch.testing.assert_close(iterative_pinv(tall, 40), torch.linalg.pinv(tall))
    assert torch.isfinite(iterative_pinv(torch.zeros(4, 4), 6)).all()


# --------------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, knob, value",
    [
        ("linformer", "rank", 0),
        ("linformer", "max_length", -1),
        ("linformer", "share_kv", "yes"),
        ("linformer", "dropout", 1.5),
        ("performer", "n_features", 0),
        ("performer", "n_features", 2.5),
        ("performer", "chunk_size", 0),
        ("linear", "chunk_size", -3),
        ("nystrom", "n_landmarks", 0),
        ("nystrom", "pinv_iterations", 0),
    ],
)
def test_bad_knobs_raise_naming_the_argument(name, knob, value):
    with pytest.raises(ValueError, match=rf"{knob} must be .*got {value!r}"):
        ATTENTION.build(name, d_model=D, n_heads=H, **{knob: value})


@pytest.mark.parametrize("name", ["linformer", "performer", "linear", "nystrom"])
def test_declared_budget_and_complexity(name):
    cls = ATTENTION.get(name)
    assert cls.complexity.startswith("time O(")
    expected = {"linformer": "rank", "performer": "n_features", "linear": None,
                "nystrom": "n_landmarks"}[name]
    assert cls.budget_knob == expected
    for d_model, n_heads in ((64, 4), (16, 2)):
        out = ATTENTION.build(name, d_model=d_model, n_heads=n_heads)(torch.randn(1, 1, d_model))
        assert out.output.shape == (1, 1, d_model)
