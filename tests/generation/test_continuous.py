"""Continuous batching (generation/continuous.py): sequences that join and leave one batched
decode between its steps produce exactly the greedy tokens each would alone, for every
decoder-only kind of cache (keys/values in a shared window, recurrent states), through the
window growing for a long prompt and sliding back when it outgrows the rows."""

from __future__ import annotations

import random

import pytest
import torch

from attnlab.generation.continuous import ContinuousBatch, SequentialStates
from attnlab.models import build_model
from attnlab.nn.cache import SlotKVCache

torch.set_num_threads(1)
VOCAB = 97


def _model(preset: str, **overrides):
    torch.manual_seed(0)
    model = build_model(preset, **overrides).eval()
    with torch.no_grad():  # sharper random logits: greedy paths that differ between prompts
        model.lm_head.weight.mul_(8.0)
    return model


def _alone(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, eos_token_id=-1)
    return out[0, len(prompt):].tolist()


def _run_schedule(batch, jobs: list[tuple[int, list[int], int]]) -> dict[int, list[int]]:
    """jobs: (step at which it joins, prompt, tokens); returns each job's greedy tokens."""
    outputs: dict[int, list[int]] = {}
    running: list[int] = []  # job index per row
    pending: list[int] = []
    step = 0
    while len(outputs) < len(jobs) or running:
        for j, (start, prompt, _) in enumerate(jobs):
            if start == step:
                logits = batch.add(prompt)
                token = int(logits[-1].argmax())
                outputs[j] = [token]
                running.append(j)
                pending.append(token)
        for row in reversed(range(len(running))):
            j = running[row]
            if len(outputs[j]) == jobs[j][2]:
                batch.remove(row)
                running[row] = running[-1]
                running.pop()
                pending[row] = pending[-1]
                pending.pop()
        if running:
            logits = batch.step(torch.tensor(pending))
            for row, j in enumerate(running):
                token = int(logits[row].argmax())
                outputs[j].append(token)
                pending[row] = token
        step += 1
        assert step < 500
    return outputs


def _jobs(seed: int, count: int, longest_prompt: int, longest_output: int):
    rng = random.Random(seed)
    return [(rng.randrange(0, 12), [rng.randrange(1, VOCAB) for _ in
                                    range(rng.randint(1, longest_prompt))],
             rng.randint(1, longest_output)) for _ in range(count)]


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny", "mamba-tiny", "rwkv-tiny",
                                    "retnet-tiny", "lstm-lm-tiny"])
def test_rows_that_join_and_leave_decode_as_if_alone(preset):
    model = _model(preset)
    jobs = _jobs(0, 10, longest_prompt=20, longest_output=16)
    got = _run_schedule(ContinuousBatch(model, max_rows=10, max_length=64), jobs)
    for j, (_, prompt, n) in enumerate(jobs):
        assert got[j] == _alone(model, prompt, n), (preset, j)
    assert len({tuple(v) for v in got.values()}) > 1  # the outputs differ: a real check


def test_the_window_grows_for_a_long_prompt_and_slides_back_when_full():
    model = _model("gpt2-tiny")
    # max_length 40: short rows keep stepping past it, so the shared window must slide back;
    # a 30-token prompt joining rows with a window of a few positions grows it on the left.
    jobs = [(0, [5, 6, 7], 36), (1, [9], 30), (3, list(range(1, 31)), 9), (20, [4, 4], 18),
            (25, list(range(40, 60)), 19)]
    batch = ContinuousBatch(model, max_rows=4, max_length=40)
    slides = []
    slide = batch._slide
    batch._slide = lambda count, *, to, start=0: (slides.append((start, to)), slide(
        count, to=to, start=start))[1]
    got = _run_schedule(batch, jobs)
    assert any(start == 0 and to > 0 for start, to in slides)  # grown on the left
    assert any(start > 0 for start, to in slides)  # slid back
    for j, (_, prompt, n) in enumerate(jobs):
        assert got[j] == _alone(model, prompt, n), j
    assert batch.rows == 0 and batch.length == 0


def test_an_empty_batch_starts_again_from_position_zero():
    model = _model("llama-tiny")
    batch = ContinuousBatch(model, max_rows=2, max_length=32)
    batch.add([1, 2, 3])
    batch.step(torch.tensor([4]))
    batch.remove(0)
    assert (batch.rows, batch.length) == (0, 0)
    logits = batch.add([7, 8])
    torch.testing.assert_close(logits, model(torch.tensor([[7, 8]])).logits[0])


def test_bad_use_is_refused():
    model = _model("gpt2-tiny")
    batch = ContinuousBatch(model, max_rows=1, max_length=16)
    with pytest.raises(ValueError, match="does not fit 16 positions"):
        batch.add(list(range(1, 17)))
    batch.add([1])
    with pytest.raises(RuntimeError, match="full"):
        batch.add([2])
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        batch.step(torch.tensor([1, 2]))
    with pytest.raises(IndexError, match="not running"):
        batch.remove(3)
    with pytest.raises(ValueError, match="max_length must be in"):
        ContinuousBatch(model, max_rows=1, max_length=10_000)
    with pytest.raises(NotImplementedError):
        SlotKVCache(1, 4).reorder(torch.tensor([0]))


def test_encoder_decoders_step_each_state_in_turn():
    torch.manual_seed(0)
    model = build_model("transformer-tiny").eval()
    batch = SequentialStates(model, max_rows=3, max_length=32)
    sources = [[5, 6, 7, 2], [9, 10, 2], [11, 2]]
    tokens = [[int(batch.add(s, 6)[0].argmax())] for s in sources]
    for _ in range(5):
        logits = batch.step(torch.tensor([t[-1] for t in tokens]))
        for row, t in enumerate(tokens):
            t.append(int(logits[row].argmax()))
    for source, got in zip(sources, tokens, strict=True):
        alone = model.generate(torch.tensor([source]), max_new_tokens=6, eos_token_id=-1)
        assert got == alone[0].tolist()
    batch.remove(0)
    assert batch.rows == 2
