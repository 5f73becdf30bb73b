"""The serving engine (serve/engine.py) without HTTP: concurrent requests decoded together give
each the tokens it would get alone; seeds, logprobs, stop strings, limits, cancellation,
timeouts and draining behave as the HTTP layer relies on."""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from attnlab.models import build_model
from attnlab.serve.engine import Engine
from attnlab.serve.requests import (
    EngineClosed,
    PromptTooLong,
    QueueFull,
    RequestTimeout,
    SamplingParams,
)
from attnlab.tokenizers import Tokenizer

torch.set_num_threads(1)
WORDS = "the cat sat on a warm mat while the dog ran after a red ball near a café".split()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train_byte_level([" ".join(WORDS)] * 30, vocab_size=300,
                                      specials=["<|endoftext|>"])


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    model = build_model("llama-tiny", vocab_size=tokenizer.vocab_size, bos_token_id=0,
                        eos_token_id=0).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # sharper random logits: outputs differ by prompt
    return model


def _prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(n)]


async def _collect(engine: Engine, ids: list[int], params: SamplingParams):
    handle = engine.submit(ids, params)
    text, last = "", None
    async for delta in handle.deltas():
        text += delta.text
        last = delta
    return handle, text, last.finish_reason


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_32_concurrent_greedy_requests_equal_their_outputs_alone(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, max_batch=32)
        engine.start()
        try:
            prompts = [engine.encode(p) for p in _prompts(32)]
            lengths = [4 + i % 29 for i in range(32)]
            together = await asyncio.gather(*(
                _collect(engine, ids, SamplingParams(max_tokens=n, temperature=0))
                for ids, n in zip(prompts, lengths, strict=True)))
            alone = [await _collect(engine, ids, SamplingParams(max_tokens=n, temperature=0))
                     for ids, n in zip(prompts, lengths, strict=True)]
            for _ in range(100):  # the last row leaves just after its last Delta is handed out
                if engine.stats().running == 0:
                    break
                await asyncio.sleep(0.01)
            return together, alone, engine.stats()
        finally:
            engine.stop(5)

    together, alone, stats = _run(main())
    assert [h.output_ids for h, _, _ in together] == [h.output_ids for h, _, _ in alone]
    assert [t for _, t, _ in together] == [t for _, t, _ in alone]
    assert len({tuple(h.output_ids) for h, _, _ in together}) > 16  # a test that can fail
    for (handle, text, _), prompt in zip(together, _prompts(32), strict=True):
        ids = torch.tensor([handle.prompt_ids])
        out = model.generate(ids, max_new_tokens=handle.params.max_tokens)[0, ids.size(1):]
        out = out.tolist()
        assert handle.output_ids == (out[: out.index(0)] if 0 in out else out), prompt
        assert text == tokenizer.decode(handle.output_ids)
    assert stats.steps > 0 and stats.running == 0 and stats.queued == 0


def test_a_seed_gives_the_same_sample_beside_any_neighbours(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, max_batch=8)
        engine.start()
        params = SamplingParams(max_tokens=12, temperature=1.3, top_p=0.9, top_k=50, seed=7)
        ids = engine.encode("the cat")
        alone = await _collect(engine, ids, params)
        crowd = await asyncio.gather(
            _collect(engine, ids, params),
            *(_collect(engine, engine.encode(p), SamplingParams(max_tokens=9, temperature=1))
              for p in _prompts(6, seed=1)))
        other = await _collect(engine, ids, SamplingParams(max_tokens=12, temperature=1.3,
                                                           top_p=0.9, top_k=50, seed=8))
        engine.stop(5)
        return alone, crowd[0], other

    alone, crowd, other = _run(main())
    assert alone[0].output_ids == crowd[0].output_ids
    assert alone[0].output_ids != other[0].output_ids


def test_logprobs_are_the_models_log_softmax(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer)
        engine.start()
        params = SamplingParams(max_tokens=3, temperature=0, logprobs=2, prompt_logprobs=True)
        handle = engine.submit(engine.encode("the red ball"), params)
        deltas = [d async for d in handle.deltas()]
        engine.stop(5)
        return handle, deltas

    handle, deltas = _run(main())
    ids = handle.prompt_ids + handle.output_ids
    logp = model(torch.tensor([ids])).logits[0].detach().double().log_softmax(-1)  # (T, V)
    T = len(handle.prompt_ids)
    for t, delta in enumerate(deltas):
        (lp,) = delta.logprobs
        assert lp.token_id == ids[T + t]
        assert lp.logprob == pytest.approx(float(logp[T + t - 1, lp.token_id]), abs=1e-4)
        assert [i for i, _, _ in lp.top] == logp[T + t - 1].topk(2).indices.tolist()
    assert handle.prompt_logprobs[0].logprob is None
    assert handle.prompt_logprobs[1].logprob == pytest.approx(float(logp[0, ids[1]]), abs=1e-4)
    assert len(handle.prompt_logprobs) == T


def test_stop_strings_end_the_text(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer)
        engine.start()
        ids = engine.encode("the dog")
        free = await _collect(engine, ids, SamplingParams(max_tokens=20, temperature=0))
        stop = free[1][3:6]
        stopped = await _collect(engine, ids, SamplingParams(max_tokens=20, temperature=0,
                                                             stop=(stop,)))
        engine.stop(5)
        return free, stopped, stop

    free, stopped, stop = _run(main())
    assert stop and stopped[2] == "stop"
    assert stopped[1] == free[1][: free[1].find(stop)]


def test_limits_are_named(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, max_batch=1, max_queue=1, max_model_len=64)
        with pytest.raises(PromptTooLong, match="max_model_len=64") as too_long:
            engine.submit([5] * 10, SamplingParams(max_tokens=60))
        assert too_long.value.param == "max_tokens" and too_long.value.limit == 64
        with pytest.raises(PromptTooLong) as prompt_too_long:
            engine.submit([5] * 64, SamplingParams(max_tokens=1))
        assert prompt_too_long.value.param == "prompt"
        with pytest.raises(ValueError, match="empty"):
            engine.submit([], SamplingParams(max_tokens=1))
        with pytest.raises(ValueError, match=r"\[0, 3"):
            engine.submit([10**6], SamplingParams(max_tokens=1))
        # not started: the row and the queue place fill up, the third is refused
        engine.submit([5], SamplingParams(max_tokens=5))
        engine.submit([5], SamplingParams(max_tokens=5))
        with pytest.raises(QueueFull) as full:
            engine.submit([5], SamplingParams(max_tokens=5))
        assert full.value.retry_after >= 1
        engine.stop(0)
        with pytest.raises(EngineClosed):
            engine.submit([5], SamplingParams(max_tokens=5))

    _run(main())


def test_a_cancelled_request_frees_its_row_for_the_next(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, max_batch=1, max_queue=1, max_model_len=256)
        engine.start()
        params = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
        long = engine.submit(engine.encode("the cat"), params)
        waiting = engine.submit(engine.encode("the dog"), SamplingParams(max_tokens=3))
        async for _ in long.deltas():
            break
        long.cancel()
        done = [d async for d in waiting.deltas()]
        engine.stop(5)
        return long, done

    long, done = _run(main())
    assert done[-1].finish_reason is not None
    assert len(long.output_ids) < 200


def test_a_request_past_its_timeout_ends_with_an_error(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, request_timeout=0.05, max_model_len=256)
        engine.start()
        handle = engine.submit(engine.encode("the cat"),
                               SamplingParams(max_tokens=250, ignore_eos=True, temperature=0))
        with pytest.raises(RequestTimeout, match="request_timeout"):
            async for _ in handle.deltas():
                await asyncio.sleep(0.01)
        engine.stop(5)

    _run(main())


def test_stop_lets_running_and_queued_requests_finish(model, tokenizer):
    async def main():
        engine = Engine(model, tokenizer, max_batch=1, max_queue=2)
        engine.start()
        handles = [engine.submit(engine.encode(p), SamplingParams(max_tokens=8, temperature=0,
                                                                  ignore_eos=True))
                   for p in _prompts(3)]
        stopping = asyncio.get_running_loop().run_in_executor(None, engine.stop, 30)
        results = [[d async for d in h.deltas()] for h in handles]
        await stopping
        return handles, results

    handles, results = _run(main())
    assert all(r[-1].finish_reason == "length" for r in results)
    assert all(len(h.output_ids) == 8 for h in handles)


def test_encoder_decoder_requests_run_side_by_side(tokenizer):
    torch.manual_seed(0)
    model = build_model("transformer-tiny", vocab_size=tokenizer.vocab_size).eval()

    async def main():
        engine = Engine(model, tokenizer, max_batch=4)
        engine.start()
        sources = [engine.encode(p) for p in _prompts(5)]
        got = await asyncio.gather(*(_collect(engine, s, SamplingParams(max_tokens=6,
                                                                         temperature=0))
                                     for s in sources))
        engine.stop(5)
        return sources, got

    sources, got = _run(main())
    for source, (handle, _, _) in zip(sources, got, strict=True):
        assert source[-1] == model.config.eos_token_id
        out = model.generate(torch.tensor([source]), max_new_tokens=6)[0].tolist()
        eos = model.config.eos_token_id
        assert handle.output_ids == (out[: out.index(eos)] if eos in out else out)
