"""Reformer, Routing and Synthesizer attention against float64 references of their own mechanism,
their exactness limits, their error against exact attention, causality and padding, knob errors.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import functional as AF
from attnlab.nn.attention import ATTENTION, MultiHeadAttention

torch.set_num_threads(1)

D, H = 16, 2
TIGHT = dict(atol=1e-10, rtol=1e-10)


def build(name, seed=0, d_model=D, n_heads=H, **kw):
    torch.manual_seed(seed)
    return ATTENTION.build(name, d_model=d_model, n_heads=n_heads, **kw).double().eval()


def data(seed, batch=2, length=50, d_model=D, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, length, d_model, generator=g, dtype=torch.float64)


def padded_keep(batch, length, real):
    keep = torch.ones(batch, length, dtype=torch.bool)
    keep[-1, real:] = False  # the last example is right-padded
    return keep


def heads(attn, x):
    q = attn.split_heads(attn.q_proj(x))  # (B, H, T, Dh)
    key_proj = attn.q_proj if attn.shared_qk else attn.k_proj
    return q, attn.split_heads(key_proj(x)), attn.split_heads(attn.v_proj(x))


def dense(q, k, v, visible):
    """Float64 softmax attention over the keys marked visible (B, H, T, S)."""
    weights = AF.masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)), visible)
    return weights @ v, weights


def rel_error(got, want):
    return ((got - want).norm() / want.norm()).item()


# --------------------------------------------------------------------------------------------
# Reformer
# --------------------------------------------------------------------------------------------


def lsh_visible(buckets, keep, bucket_size, causal):
    """Union over rounds of the chunked same-bucket pairs, by plain sorting: (B, H, T, T)."""
    B, H, R, T = buckets.shape
    c = bucket_size
    visible = torch.zeros(B, H, T, T, dtype=torch.bool)
    for b in range(B):
        for h in range(H):
            for r in range(R):
                bucket = buckets[b, h, r].tolist()
                order = sorted(range(T), key=lambda i: (bucket[i], i))
                slot = {pos: s for s, pos in enumerate(order)}
                for i in range(T):
                    for j in range(T):
                        if bucket[i] != bucket[j] or not keep[b, j]:
                            continue
                        si, sj = slot[i], slot[j]
                        near = si - c <= sj <= si if causal else sj // c in (si // c, si // c - 1)
                        visible[b, h, i, j] |= near
    return visible


def without_self(visible):
    """A token skips itself unless it sees nothing else (Reformer sec. 2.2)."""
    eye = torch.eye(visible.size(-1), dtype=torch.bool)
    others = visible & ~eye
    alone = ~others.any(-1, keepdim=True)
    return others | (visible & eye & alone)


def shared_qk_exact(attn, x, keep, causal):
    """Exact shared-QK attention (keys = unit queries, no self unless alone) with its weights."""
    q, k, v = heads(attn, x)
    T = x.size(1)
    visible = keep[:, None, None, :].expand(-1, H, T, T)
    if causal:
        visible = visible & AF.causal_mask(T, T)
    return dense(q, F.normalize(k, dim=-1), v, without_self(visible))


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_reformer_equals_dense_reference_with_the_same_buckets(causal):
    attn = build("reformer", n_hashes=3, bucket_size=8)
    x = data(1, length=50)  # 8 buckets, 7 chunks of 8 with 6 padded slots
    keep = padded_keep(2, 50, 43)
    q, k, v = heads(attn, x)
    buckets = attn.hash(k, keep)
    assert buckets.shape == (2, H, 3, 50) and buckets[0].max() == 7
    visible = without_self(lsh_visible(buckets, keep, 8, causal))
    want, want_w = dense(q, F.normalize(k, dim=-1), v, visible)
    got, got_w = attn.attend(q, k, v, key_keep=keep, mask=None, causal=causal, need_weights=True)
    torch.testing.assert_close(got, want, **TIGHT)
    torch.testing.assert_close(got_w, want_w, **TIGHT)
    # Sparse, yet most rows see several keys.
    assert visible.float().mean() < 0.6 and (visible.sum(-1) > 1).float().mean() > 0.5


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("length", [1, 5, 32])
def test_reformer_in_one_chunk_is_exact_shared_qk_attention(causal, length):
    attn = build("reformer", bucket_size=32)
    x = data(2, length=length)
    keep = padded_keep(2, length, max(1, length - 3))
    result = attn(x, mask=AF.padding_mask(keep), causal=causal, need_weights=True)
    out, weights = shared_qk_exact(attn, x, keep, causal)
    B, T = x.shape[:2]
    real = keep[:, None, :, None].expand(B, H, T, T)  # padded queries' rows are not compared
    torch.testing.assert_close(result.weights[real], weights[real], **TIGHT)
    out = attn.out_proj(out.transpose(1, 2).reshape(B, T, D))
    torch.testing.assert_close(result.output[keep], out[keep], **TIGHT)


def test_reformer_error_shrinks_with_more_hash_rounds():
    errors = []
    for n_hashes in (1, 2, 4, 8):
        error = 0.0
        for seed in range(3):
            attn = build("reformer", seed=seed, n_hashes=n_hashes, bucket_size=8)
            x = data(10 + seed, batch=1, length=96, scale=2.0)
            keep = torch.ones(1, 96, dtype=torch.bool)
            want = shared_qk_exact(attn, x, keep, False)[0]
            q, k, v = heads(attn, x)
            got = attn.attend(q, k, v, key_keep=None, mask=None, causal=False,
                              need_weights=False)[0]
            error += rel_error(got, want) / 3
        errors.append(error)
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.6 * errors[0], errors


def test_reformer_is_strictly_causal_across_chunks():
    attn = build("reformer", n_hashes=2, bucket_size=4)
    x = data(3, length=40)
    full = attn(x, causal=True, need_weights=True)
    assert (full.weights[..., torch.ones(40, 40, dtype=torch.bool).triu(1)] == 0).all()
    for t in (0, 7, 21, 38):
        changed = x.clone()
        changed[:, t + 1:] = data(4, length=40)[:, t + 1:]
        out = attn(changed, causal=True).output
        torch.testing.assert_close(out[:, : t + 1], full.output[:, : t + 1], **TIGHT)


@pytest.mark.parametrize("name, kw", [("reformer", dict(bucket_size=4)),
                                      ("routing", dict(n_clusters=3))])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_right_padding_changes_nothing_over_many_blocks(name, kw, causal):
    attn = build(name, **kw)
    x = data(5, length=37)
    padded = torch.cat([x, 50 * data(6, length=13)], dim=1)
    keep = torch.ones(2, 50, dtype=torch.bool)
    keep[:, 37:] = False
    want = attn(x, causal=causal).output
    got = attn(padded, mask=AF.padding_mask(keep), causal=causal, need_weights=True)
    torch.testing.assert_close(got.output[:, :37], want, **TIGHT)
    assert (got.weights[..., 37:] == 0).all()


def test_reformer_shares_queries_and_keys_and_keeps_its_rotations():
    attn = build("reformer", seed=3)
    assert not hasattr(attn, "k_proj") and "rotations" in dict(attn.named_buffers())
    assert torch.equal(build("reformer", seed=3).rotations, attn.rotations)
    before = attn.rotations.clone()
    attn.redraw()
    assert not torch.equal(before, attn.rotations)


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


def routing_visible(q_cluster, k_cluster, keep, n_clusters, causal):
    """Each query's keys, by plain lists: the w keys of its cluster nearest it in position
    (causal: the w latest at or before it), plus its own key if those miss it."""
    B, H, T = q_cluster.shape
    visible = torch.zeros(B, H, T, T, dtype=torch.bool)
    for b in range(B):
        w = max(1, math.ceil(int(keep[b].sum()) / n_clusters))
        for h in range(H):
            for i in range(T):
                members = [j for j in range(T)
                           if keep[b, j] and k_cluster[b, h, j] == q_cluster[b, h, i]]
                here = sum(1 for j in members if j <= i)
                if causal:
                    chosen = members[max(0, here - w): here]
                else:
                    start = min(max(here - w // 2, 0), max(len(members) - w, 0))
                    chosen = members[start: start + w]
                for j in chosen:
                    visible[b, h, i, j] = True
                if keep[b, i] and i not in chosen:
                    visible[b, h, i, i] = True
    return visible


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_routing_equals_dense_reference_with_the_same_clusters(causal):
    attn = build("routing", n_clusters=3)
    x = data(7, length=50)
    keep = padded_keep(2, 50, 41)
    q, k, v = heads(attn, x)
    q_cluster, k_cluster = attn.route(q), attn.route(k)
    assert len(q_cluster.unique()) == 3 and len(k_cluster.unique()) == 3
    visible = routing_visible(q_cluster, k_cluster, keep, 3, causal)
    want, want_w = dense(q, k, v, visible)
    got, got_w = attn.attend(q, k, v, key_keep=keep, mask=None, causal=causal, need_weights=True)
    torch.testing.assert_close(got, want, **TIGHT)
    torch.testing.assert_close(got_w, want_w, **TIGHT)
    assert visible.float().mean() < 0.5


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("length", [1, 7, 50])
def test_routing_with_one_cluster_is_exact_attention(causal, length):
    attn = build("routing", n_clusters=1)
    exact = MultiHeadAttention(D, H, kernel="reference").double().eval()
    exact.load_state_dict(attn.state_dict(), strict=False)
    x = data(8, length=length)
    mask = AF.padding_mask(padded_keep(2, length, max(1, length - 5)))
    got = attn(x, mask=mask, causal=causal, need_weights=True)
    want = exact(x, mask=mask, causal=causal, need_weights=True)
    torch.testing.assert_close(got.output, want.output, **TIGHT)
    torch.testing.assert_close(got.weights, want.weights, **TIGHT)


def test_routing_error_shrinks_with_fewer_clusters():
    errors = []
    for n_clusters in (16, 4, 2, 1):
        error = 0.0
        for seed in range(3):
            attn = build("routing", seed=seed, n_clusters=n_clusters)
            exact = MultiHeadAttention(D, H, kernel="reference").double().eval()
            exact.load_state_dict(attn.state_dict(), strict=False)
            x = data(20 + seed, batch=1, length=96)
            error += rel_error(attn(x).output, exact(x).output) / 3
        errors.append(error)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-12, errors


def test_routing_is_strictly_causal_across_clusters():
    attn = build("routing", n_clusters=5)
    x = data(9, length=40)
    full = attn(x, causal=True, need_weights=True)
    assert (full.weights[..., torch.ones(40, 40, dtype=torch.bool).triu(1)] == 0).all()
    assert (full.weights.sum(-1) - 1).abs().max() < 1e-12  # every row sees a key
    for t in (0, 9, 26, 38):
        changed = x.clone()
        changed[:, t + 1:] = data(10, length=40)[:, t + 1:]
        out = attn(changed, causal=True).output
        torch.testing.assert_close(out[:, : t + 1], full.output[:, : t + 1], **TIGHT)


def test_routing_centroids_move_only_in_training_and_deterministically():
    attn = build("routing", seed=4)
    assert "centroids" in dict(attn.named_buffers())
    assert "centroids" not in dict(attn.named_parameters())
    x = data(11, length=30)
    before = attn.centroids.clone()
    attn(x)
    assert torch.equal(attn.centroids, before)  # eval: frozen
    attn.train()(x)
    moved = attn.centroids.clone()
    assert not torch.equal(moved, before)
    torch.testing.assert_close((moved - before).norm(dim=-1).max(), torch.tensor(0.0,
                               dtype=torch.float64), atol=2e-3, rtol=0)  # decay 0.999
    again = build("routing", seed=4).train()
    again(x)
    assert torch.equal(again.centroids, moved)
    # Padding does not move the centroids.
    padded = build("routing", seed=4).train()
    keep = torch.ones(2, 40, dtype=torch.bool)
    keep[:, 30:] = False
    padded(torch.cat([x, data(12, length=10)], dim=1), mask=AF.padding_mask(keep))
    torch.testing.assert_close(padded.centroids, moved, **TIGHT)


# --------------------------------------------------------------------------------------------
# Synthesizer
# --------------------------------------------------------------------------------------------


def test_random_synthesizer_weights_are_the_same_for_every_input():
    attn = build("synthesizer", kind="random", max_length=32)
    a = attn(data(13, length=20), need_weights=True).weights
    b = attn(data(14, length=20), need_weights=True).weights
    torch.testing.assert_close(a, b, **TIGHT)
    want = torch.softmax(attn.random_scores[:, :20, :20], dim=-1)
    torch.testing.assert_close(a, want.expand(2, H, 20, 20), **TIGHT)


def test_dense_synthesizer_scores_of_a_token_depend_only_on_that_token():
    attn = build("synthesizer", max_length=32)
    x = data(15, length=20)
    w1, b1 = attn.hidden.weight.view(H, -1, D), attn.hidden.bias.view(H, -1)
    hidden = torch.relu(torch.einsum("btd,hed->bhte", x, w1) + b1[:, None])  # (B, H, T, Dh)
    scores = hidden @ attn.score_weight[..., :20] + attn.score_bias[:, None, :20]
    v = attn.split_heads(attn.v_proj(x))
    weights = torch.softmax(scores, dim=-1)
    result = attn(x, need_weights=True)
    torch.testing.assert_close(result.weights, weights, **TIGHT)
    out = (weights @ v).transpose(1, 2).reshape(2, 20, D)
    torch.testing.assert_close(result.output, attn.out_proj(out), **TIGHT)
    changed = x.clone()
    changed[:, 5:] = data(16, length=15)
    torch.testing.assert_close(attn(changed, need_weights=True).weights[:, :, :5],
                               result.weights[:, :, :5], **TIGHT)


@pytest.mark.parametrize("kind", ["dense", "random"])
def test_synthesizer_causal_and_full_masks(kind):
    attn = build("synthesizer", kind=kind, max_length=16)
    x = data(17, length=9)
    scores = attn.scores(x).expand(2, H, 9, 9)
    full = attn(x, causal=True, need_weights=True).weights
    torch.testing.assert_close(full, AF.masked_softmax(scores, AF.causal_mask(9, 9)), **TIGHT)
    pattern = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0)) < 0.5
    got = attn(x, mask=pattern, need_weights=True).weights
    torch.testing.assert_close(got, AF.masked_softmax(scores, pattern), **TIGHT)
    loss = attn.train()(x, causal=True).output.square().sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attn.parameters())


def test_synthesizer_length_limit():
    attn = build("synthesizer", max_length=8)
    assert attn(data(18, length=8)).output.shape == (2, 8, D)
    with pytest.raises(ValueError, match="max_length=8"):
        attn(data(18, length=9))


# --------------------------------------------------------------------------------------------
# Every variant: defaults, odd lengths, knob errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reformer", "routing", "synthesizer"])
def test_defaults_and_odd_lengths(name):
    attn = build(name, d_model=64, n_heads=4)
    for length in (1, 3, 33, 100):
        x = data(19, length=length, d_model=64)
        result = attn(x, causal=True, need_weights=True)
        assert result.output.shape == (2, length, 64) and torch.isfinite(result.output).all()
        torch.testing.assert_close(result.weights.sum(-1), torch.ones(2, 4, length,
                                   dtype=torch.float64), **TIGHT)


@pytest.mark.parametrize("name, kw, match", [
    ("reformer", dict(n_hashes=0), "n_hashes"),
    ("reformer", dict(bucket_size=-1), "bucket_size"),
    ("reformer", dict(max_length=0), "max_length"),
    ("reformer", dict(n_hashes=2.0), "n_hashes"),
    ("routing", dict(n_clusters=0), "n_clusters"),
    ("routing", dict(decay=1.0), "decay"),
    ("routing", dict(decay=-0.5), "decay"),
    ("synthesizer", dict(kind="mixed"), "kind"),
    ("synthesizer", dict(max_length=0), "max_length"),
    ("synthesizer", dict(dropout=1.0), "dropout"),
])
def test_bad_knobs_name_the_argument(name, kw, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(name, d_model=D, n_heads=H, **kw)


def test_reformer_length_limit():
    attn = build("reformer", max_length=16, bucket_size=4)
    assert attn(data(20, length=16)).output.shape == (2, 16, D)
    with pytest.raises(ValueError, match="max_length=16"):
        attn(data(20, length=17))
