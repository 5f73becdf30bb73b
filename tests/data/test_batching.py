"""Token-count batching: the budget holds, every pair appears once per epoch, resume is exact."""

from __future__ import annotations

import random

import pytest
import torch

from attnlab.data.batching import TokenBatches, collate, iterate_in_order, plan_batches


def random_pairs(n=200, seed=0):
    rng = random.Random(seed)
    return [([rng.randrange(4, 50) for _ in range(rng.randint(1, 30))] + [2],
             [rng.randrange(4, 50) for _ in range(rng.randint(1, 30))] + [2]) for _ in range(n)]


def test_collate_pads_and_masks():
    batch = collate([([5, 6, 2], [7, 2]), ([8, 2], [9, 9, 9, 2])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 2], [8, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 2, -100, -100], [9, 9, 9, 2]]


def test_plan_respects_the_budget_and_covers_everything():
    pairs = random_pairs()
    lengths = [(len(s), len(t)) for s, t in pairs]
    plan = plan_batches(lengths, max_tokens=120)
    assert sorted(i for batch in plan for i in batch) == list(range(len(pairs)))
    for batch in plan:
        assert len(batch) * max(max(lengths[i]) for i in batch) <= 120
    with pytest.raises(ValueError, match="more than max_tokens=10"):
        plan_batches(lengths, max_tokens=10)


def test_epochs_shuffle_and_resume_exactly():
    pairs = random_pairs()
    stream = TokenBatches(pairs, max_tokens=120, pad_id=0, seed=3)
    first_epoch = [stream.next()["input_ids"] for _ in range(len(stream))]
    assert sum(int((b != 0).sum()) for b in first_epoch) == sum(len(s) for s, _ in pairs)
    for _ in range(5):
        stream.next()
    state = stream.state_dict()
    expected = [stream.next()["labels"] for _ in range(len(stream))]
    resumed = TokenBatches(pairs, max_tokens=120, pad_id=0, seed=3)
    resumed.load_state_dict(state)
    for want in expected:
        assert torch.equal(resumed.next()["labels"], want)
    other = TokenBatches(pairs, max_tokens=100, pad_id=0, seed=3)
    with pytest.raises(ValueError, match="different data or --max-tokens"):
        other.load_state_dict(state)


def test_iterate_in_order_visits_each_pair_once():
    pairs = random_pairs(50)
    seen = []
    for indices, batch in iterate_in_order(pairs, 200, pad_id=0):
        seen += indices
        assert batch["input_ids"].size(0) == len(indices)
    assert sorted(seen) == list(range(50))
