"""Beam search: greedy equivalence, cache oracle, batch independence, exhaustive optimality."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.generation import beam_search, greedy_decode, length_penalty_gnmt
from attnlab.models import build_model

EOS = 2


class EOSBiasHead(nn.Module):
    """Adds `bias` to the EOS logit of an lm_head: a random model then ends some hypotheses early
    and lets others run on; bias=-inf forces decoding to the maximum length."""

    def __init__(self, head: nn.Module, eos: int, bias: float) -> None:
        super().__init__()
        self.head, self.eos, self.bias = head, eos, bias

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(x)  # (..., V)
        logits[..., self.eos] += self.bias
        return logits


def tiny_model(
    seed: int = 0, vocab_size: int = 20, eos_bias: float = 1.0, **overrides
) -> nn.Module:
    """A seeded tiny Transformer in eval mode, its EOS logit shifted by `eos_bias`."""
    torch.manual_seed(seed)
    model = build_model(
        "transformer-tiny", vocab_size=vocab_size, d_model=32, n_heads=4, n_layers=2, d_ff=64,
        dropout=0.0, **overrides,
    )
    model.lm_head = EOSBiasHead(model.lm_head, EOS, eos_bias)
    return model.eval()


def padded_batch(seed: int = 1, lengths: tuple[int, ...] = (7, 3, 5, 1), vocab: int = 20):
    """Source ids (B, S) with trailing padding and the matching attention mask (B, S)."""
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), S), generator=g)  # (B, S)
    mask = torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    return ids.masked_fill(~mask, 0), mask.long()


def sequence_length(seq: Tensor, eos: int = EOS) -> int:
    """Length of a generated row up to and including its first EOS (all of it if none)."""
    hits = (seq == eos).nonzero()
    return int(hits[0]) + 1 if len(hits) else seq.numel()


def teacher_forced_score(model, src: Tensor, mask: Tensor, seq: Tensor, alpha: float) -> float:
    """log P(seq | src) / lp(|seq|) from one teacher-forced forward pass (the oracle)."""
    start = torch.tensor([model.config.decoder_start_token_id])
    dec_in = torch.cat([start, seq[:-1]])[None]  # (1, n)
    logits = model(src[None], dec_in, attention_mask=mask[None]).logits[0]  # (n, V)
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, seq[:, None]).sum()
    return float(logp.detach()) / length_penalty_gnmt(seq.numel(), alpha)


@torch.no_grad()
@pytest.mark.parametrize(("seed", "eos_bias"), [(7, 1.0), (6, 0.0), (5, 1.0)])
def test_beam_size_one_equals_greedy(seed: int, eos_bias: float) -> None:
    model = tiny_model(seed, eos_bias=eos_bias)
    ids, mask = padded_batch(seed)
    greedy = greedy_decode(model, ids, mask, max_new_tokens=12)
    beam = beam_search(model, ids, mask, beam_size=1, max_new_tokens=12)
    assert torch.equal(beam.sequences, greedy)
    lengths = [sequence_length(row) for row in greedy]
    assert min(lengths) < 12 == max(lengths)  # rows stop at EOS and at the length limit


@torch.no_grad()
@pytest.mark.parametrize("beam_size", [2, 4])
def test_cached_equals_uncached(beam_size: int) -> None:
    model = tiny_model(0)
    ids, mask = padded_batch(0)
    cached = beam_search(model, ids, mask, beam_size=beam_size, max_new_tokens=15)
    full = beam_search(model, ids, mask, beam_size=beam_size, max_new_tokens=15, use_cache=False)
    assert torch.equal(cached.sequences, full.sequences)
    assert len({sequence_length(row) for row in cached.sequences}) > 1
    torch.testing.assert_close(cached.scores, full.scores, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_cached_decoder_sees_one_token_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(4)
    ids, mask = padded_batch(4)
    shapes, decode = [], model.decode

    def spy(step_ids, memory, **kwargs):
        shapes.append((tuple(step_ids.shape), memory.size(0), kwargs["cache"].length))
        return decode(step_ids, memory, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    beam_search(model, ids, mask, beam_size=3, max_new_tokens=6)
    B = ids.size(0)
    assert [s for s, _, _ in shapes] == [(B * 3, 1)] * len(shapes)
    assert all(rows == B * 3 for _, rows, _ in shapes)
    assert [past for _, _, past in shapes] == list(range(len(shapes)))  # the cache grows by one


@torch.no_grad()
def test_batch_equals_each_row_alone() -> None:
    model = tiny_model(0)
    ids, mask = padded_batch(0)
    batch = beam_search(model, ids, mask, beam_size=4, max_new_tokens=15)
    for i in range(ids.size(0)):
        n = int(mask[i].sum())
        alone = beam_search(model, ids[i : i + 1, :n], beam_size=4, max_new_tokens=15)
        width = alone.sequences.size(1)
        assert torch.equal(batch.sequences[i, :width], alone.sequences[0])
        assert bool((batch.sequences[i, width:] == model.config.pad_token_id).all())
        torch.testing.assert_close(batch.scores[i], alone.scores[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize(("seed", "eos_bias"), [(0, 1.0), (7, 1.0), (3, 0.0)])
def test_beam_scores_at_least_greedy(seed: int, eos_bias: float) -> None:
    model = tiny_model(seed, eos_bias=eos_bias)
    ids, mask = padded_batch(seed)
    alpha = 0.6
    greedy = greedy_decode(model, ids, mask, max_new_tokens=12)
    beam = beam_search(model, ids, mask, beam_size=4, length_penalty=alpha, max_new_tokens=12)
    differs = 0
    for i in range(ids.size(0)):
        g = greedy[i, : sequence_length(greedy[i])]
        b = beam.sequences[i, : sequence_length(beam.sequences[i])]
        greedy_score = teacher_forced_score(model, ids[i], mask[i], g, alpha)
        beam_score = teacher_forced_score(model, ids[i], mask[i], b, alpha)
        assert beam_score == pytest.approx(float(beam.scores[i]), abs=1e-4)
        assert beam_score >= greedy_score - 1e-5
        differs += not torch.equal(g, b)
    assert differs > 0  # the beam found something greedy missed


@torch.no_grad()
@pytest.mark.parametrize(
    ("seed", "alpha", "eos_bias"), [(4, 0.6, 1.0), (7, 0.6, 1.0), (1, 0.6, -1.0), (2, 0.0, 1.0),
                                    (4, 2.0, 0.0)],
)
def test_large_beam_finds_exhaustive_argmax(seed: int, alpha: float, eos_bias: float) -> None:
    """Enumerate every hypothesis of a 5-token vocabulary up to length 3: sequences ending at
    their first EOS, plus length-3 sequences without EOS (truncated at the maximum length)."""
    vocab, max_new = 5, 3
    model = tiny_model(seed, vocab_size=vocab, eos_bias=eos_bias)
    src = torch.tensor([[3, 4, 3, 1]])
    mask = torch.ones_like(src)
    others = [t for t in range(vocab) if t != EOS]
    hypotheses = [(*p, EOS) for n in range(max_new) for p in itertools.product(others, repeat=n)]
    hypotheses += list(itertools.product(others, repeat=max_new))
    scores = {
        h: teacher_forced_score(model, src[0], mask[0], torch.tensor(h), alpha) for h in hypotheses
    }
    best = max(scores, key=scores.get)
    found, score = {}, {}
    for k in (1, 64):  # 64 beams hold every prefix: exhaustive; 1 beam: greedy
        out = beam_search(model, src, mask, beam_size=k, length_penalty=alpha,
                          max_new_tokens=max_new)
        found[k] = tuple(out.sequences[0, : sequence_length(out.sequences[0])].tolist())
        score[k] = float(out.scores[0])
    assert found[64] == best
    assert score[64] == pytest.approx(scores[best], abs=1e-5)
    assert found[1] != best  # greedy misses it: the case needs the search


@torch.no_grad()
def test_default_max_length_is_source_length_plus_50() -> None:
    model = tiny_model(8, eos_bias=float("-inf"))
    ids, mask = padded_batch(8, lengths=(7, 3))
    out = beam_search(model, ids, mask, beam_size=2)
    assert out.sequences.shape == (2, 57)
    pad = model.config.pad_token_id
    assert bool((out.sequences[1, 53:] == pad).all())
    assert not bool((out.sequences[1, :53] == EOS).any())


@torch.no_grad()
def test_max_length_capped_by_max_seq_len_and_max_new_tokens() -> None:
    model = tiny_model(9, eos_bias=float("-inf"), max_seq_len=20)
    ids, mask = padded_batch(9, lengths=(7, 3))
    assert beam_search(model, ids, mask, beam_size=2).sequences.shape == (2, 19)
    assert beam_search(model, ids, mask, beam_size=2, max_new_tokens=500).sequences.shape == (2, 19)
    out = beam_search(model, ids, mask, beam_size=2, max_new_tokens=5, use_cache=False)
    assert out.sequences.shape == (2, 5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": -2}, "beam_size"),
        ({"beam_size": 2.0}, "beam_size"),
        ({"length_penalty": -0.1}, "length_penalty"),
        ({"length_penalty": float("nan")}, "length_penalty"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, name: str) -> None:
    model = tiny_model(0)
    ids, mask = padded_batch(0)
    with pytest.raises(ValueError, match=name):
        beam_search(model, ids, mask, **kwargs)


def test_an_unknown_length_penalty_form_is_named():
    from attnlab.errors import ConfigError
    from attnlab.generation.beam import check_beam_arguments

    with pytest.raises(ConfigError, match=r"length_penalty_form must be one of \('gnmt', "
                                          r"'power'\), got 'hf'"):
        check_beam_arguments(4, 1.0, None, "hf")
