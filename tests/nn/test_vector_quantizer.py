"""The vector quantizer (nn/vector_quantizer.py): nearest codes against a loop, the
straight-through gradient, the EMA update against a hand computation, dead-code restarts, usage
counts and perplexity, and buffers that change only in training mode."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.nn.vector_quantizer import VectorQuantizer


def quantizer(codebook: list[list[float]], decay: float = 0.5, restart_after: int = 100,
              eps: float = 1e-5) -> VectorQuantizer:
    """A quantizer with a hand-set codebook whose statistics are 'one vector per code' and
    no code idle yet."""
    e = torch.tensor(codebook)
    q = VectorQuantizer(len(e), e.size(1), decay=decay, eps=eps, restart_after=restart_after)
    q.codebook.copy_(e)
    q.embed_sum.copy_(e)
    q.cluster_size.fill_(1.0)
    q.idle_steps.zero_()
    return q


def test_nearest_codes_match_a_loop_and_forward_returns_their_vectors():
    torch.manual_seed(0)
    q = VectorQuantizer(13, 5).eval()
    z = torch.randn(2, 3, 4, 5)
    out = q(z)
    assert out.codes.shape == (2, 3, 4) and out.codes.dtype == torch.long
    for index in torch.cartesian_prod(torch.arange(2), torch.arange(3), torch.arange(4)):
        b, i, j = index.tolist()
        distances = [float(((z[b, i, j] - e) ** 2).sum()) for e in q.codebook]
        assert out.codes[b, i, j] == min(range(13), key=distances.__getitem__)
    torch.testing.assert_close(out.quantized, q.codebook[out.codes])
    torch.testing.assert_close(out.commitment_loss, ((z - q.codebook[out.codes]) ** 2).mean())
    assert torch.equal(q.nearest(z), out.codes)
    torch.testing.assert_close(q.lookup(out.codes), out.quantized)


def test_straight_through_passes_the_gradient_unchanged():
    torch.manual_seed(1)
    q = VectorQuantizer(8, 4).eval()
    z = torch.randn(6, 4, requires_grad=True)
    weights = torch.randn(6, 4)
    (q(z).quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # d quantized / d z = identity
    z.grad = None
    q(z).commitment_loss.backward()  # and the commitment pulls z towards its code
    codes = q.nearest(z)
    torch.testing.assert_close(z.grad, 2 * (z - q.codebook[codes]).detach() / z.numel())


def test_ema_update_matches_a_hand_computation():
    eps = 1e-5
    q = quantizer([[0.0, 0.0], [10.0, 10.0]], decay=0.5, eps=eps).train()
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    out = q(z)
    assert out.codes.tolist() == [0, 0, 1] and out.usage.tolist() == [2, 1]
    # the forward value is the code before the update
    torch.testing.assert_close(out.quantized, torch.tensor([[0.0, 0.0], [0.0, 0.0],
                                                           [10.0, 10.0]]))
    # N = 0.5 * 1 + 0.5 * (2, 1) = (1.5, 1.0); m = 0.5 * e + 0.5 * sums
    torch.testing.assert_close(q.cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(q.embed_sum, torch.tensor([[0.5, 0.5], [9.5, 9.5]]))
    n = 2.5
    smoothed = [(1.5 + eps) / (n + 2 * eps) * n, (1.0 + eps) / (n + 2 * eps) * n]
    expected = torch.tensor([[0.5 / smoothed[0]] * 2, [9.5 / smoothed[1]] * 2])
    torch.testing.assert_close(q.codebook, expected)
    assert q.idle_steps.tolist() == [0, 0]


def test_eval_mode_and_nearest_never_change_the_buffers():
    torch.manual_seed(2)
    q = VectorQuantizer(6, 3, restart_after=1)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.eval()(torch.randn(10, 3))
    q.train().nearest(torch.randn(10, 3))
    for name, value in q.state_dict().items():
        assert torch.equal(value, before[name]), name
    q.train()(torch.randn(10, 3))
    assert not torch.equal(q.codebook, before["codebook"])
    assert set(before) == {"codebook", "cluster_size", "embed_sum", "idle_steps"}


def test_a_code_idle_for_restart_after_steps_moves_onto_a_batch_vector():
    torch.manual_seed(3)
    q = quantizer([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]], decay=0.9, restart_after=3).train()
    far = q.codebook[2].clone()
    z = torch.rand(32, 2)  # near codes 0 and 1 only
    for step in (1, 2):
        q(z)
        assert q.idle_steps[2] == step  # in place (Laplace smoothing nudges it a little)
        torch.testing.assert_close(q.codebook[2], far, rtol=1e-4, atol=0)
    q(z)  # third step unchosen: restarted
    assert q.idle_steps[2] == 0 and q.cluster_size[2] == 1.0
    assert any(torch.equal(q.codebook[2], v) for v in z)
    assert torch.equal(q.embed_sum[2], q.codebook[2])
    assert q.idle_steps[:2].tolist() == [0, 0]


def test_the_first_training_step_places_every_unchosen_code_on_the_data():
    torch.manual_seed(4)
    q = VectorQuantizer(16, 4, restart_after=50).train()
    z = torch.randn(64, 4) * 0.01 + 3.0  # far from the N(0, 1) start: one code takes them all
    out = q(z)
    assert int((out.usage > 0).sum()) == 1
    chosen = int(out.usage.argmax())
    for k in range(16):
        if k != chosen:
            assert any(torch.equal(q.codebook[k], v) for v in z), k
    assert int((q(z).usage > 0).sum()) > 4  # the next batch spreads over the placed codes


def test_usage_counts_and_perplexity():
    q = quantizer([[0.0], [10.0], [20.0], [30.0]]).eval()
    out = q(torch.tensor([[0.1], [0.2], [9.9], [19.0], [21.0], [22.0]]))
    assert out.usage.tolist() == [2, 1, 3, 0] and out.usage.dtype == torch.long
    share = torch.tensor([2, 1, 3]) / 6
    torch.testing.assert_close(out.perplexity, torch.exp(-(share * share.log()).sum()))
    uniform = q(torch.tensor([[0.0], [10.0], [20.0], [30.0]]))
    assert math.isclose(float(uniform.perplexity), 4.0, rel_tol=1e-6)


def test_bad_vectors_and_decay_are_refused():
    with pytest.raises(ValueError, match="vectors of 3 values, got shape \\(2, 4\\)"):
        VectorQuantizer(4, 3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="decay must be in \\[0, 1\\), got 1.0"):
        VectorQuantizer(4, 3, decay=1.0)


def _two_ranks(rank: int, store: str, results: str) -> None:
    """Rank `rank` of a 2-process gloo group: its half of the batch, then its buffers."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        q = VectorQuantizer(8, 3, decay=0.9, restart_after=10**6)
        q.idle_steps.zero_()  # no restarts: the EMA alone, comparable with one process
        z = torch.randn(40, 3, generator=torch.Generator().manual_seed(5))
        q.train()(z[rank * 20:(rank + 1) * 20])
        restarted = VectorQuantizer(8, 3, restart_after=1)  # restarts on every rank
        torch.manual_seed(rank)  # each rank would draw other candidates
        restarted.train()(torch.randn(10, 3) + 5)
        torch.save({"ema": q.state_dict(), "restarted": restarted.state_dict()},
                   f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_processes_update_the_codebook_as_one(tmp_path):
    """Under torchrun each rank sees half the batch: counts and sums are summed over the ranks,
    so the EMA equals one process's over the whole batch, and rank 0's restart candidates
    keep every rank's codebook the same."""
    import torch.multiprocessing as mp

    results = tmp_path / "state"
    mp.spawn(_two_ranks, args=(str(tmp_path / "store"), str(results)), nprocs=2)
    ranks = [torch.load(f"{results}.{r}") for r in (0, 1)]
    torch.manual_seed(0)
    one = VectorQuantizer(8, 3, decay=0.9, restart_after=10**6)
    one.idle_steps.zero_()
    one.train()(torch.randn(40, 3, generator=torch.Generator().manual_seed(5)))
    for name, value in one.state_dict().items():
        for state in ranks:
            torch.testing.assert_close(state["ema"][name], value, msg=name)
    for name, value in ranks[0]["restarted"].items():
        assert torch.equal(ranks[1]["restarted"][name], value), name
