"""`model.generate` on every generating `*-tiny` preset (listed from the registry and the
declared model kind, so a new family is tested by being registered): greedy, sampling and beam
search mean the same everywhere and give the tokens the old loops gave."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from legacy_decoding import old_beam_search, old_causal_generate, old_greedy_decode

from attnlab.errors import ConfigError
from attnlab.generation import (
    DECODER_ONLY,
    ENCODER_DECODER,
    ENCODER_ONLY,
    GENERATING_KINDS,
    GenerationMixin,
    beam_search,
    greedy_decode,
    length_penalty_gnmt,
    logits_processor,
    model_kind,
)
from attnlab.generation.beam import search
from attnlab.generation.state import DecoderOnlyState, EncoderDecoderState
from attnlab.models import PRESETS, build_model, list_models

TINY = [name for name in list_models() if name.endswith("-tiny")]
GENERATING = [n for n in TINY if model_kind(PRESETS[n].model_class) in GENERATING_KINDS]
DECODER_ONLY_TINY = [n for n in GENERATING if model_kind(PRESETS[n].model_class) == DECODER_ONLY]
ENCODER_ONLY_TINY = [n for n in TINY if model_kind(PRESETS[n].model_class) == ENCODER_ONLY]
NEW = 12


def test_every_family_declares_its_kind():
    kinds = {model_kind(PRESETS[name].model_class) for name in TINY}
    assert kinds == {ENCODER_ONLY, DECODER_ONLY, ENCODER_DECODER}
    assert {"transformer-tiny", "t5-tiny", "gpt2-tiny", "llama-tiny", "convs2s-tiny",
            "rnn-luong-tiny"} <= set(GENERATING)
    assert {"bert-tiny", "vit-tiny", "ast-tiny", "resnet-tiny"} <= set(ENCODER_ONLY_TINY)


@pytest.fixture(scope="module", params=GENERATING)
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def inputs(model, seed: int = 1):
    """Decoder-only: a left-padded prompt; encoder-decoder: a right-padded source."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (3, 7), generator=g)  # (B, T)
    mask = torch.ones_like(ids)
    if model_kind(model) == DECODER_ONLY:
        mask[1, :2] = 0
        mask[2, :5] = 0
    else:
        mask[1, 5:] = 0
        mask[2, 2:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def new_tokens(model, ids, out):
    return out[:, ids.size(1):] if model_kind(model) == DECODER_ONLY else out


def test_greedy_gives_the_old_tokens(model):
    ids, mask = inputs(model)
    out = model.generate(ids, mask, max_new_tokens=NEW)
    if model_kind(model) == DECODER_ONLY:
        assert torch.equal(out[:, : ids.size(1)], ids)  # the prompt, then the new tokens
        assert torch.equal(out, old_causal_generate(model, ids, mask, max_new_tokens=NEW))
    else:
        old = old_greedy_decode(model, ids, mask, max_new_tokens=NEW)
        assert torch.equal(out, old)  # the new tokens, without the start token
        assert torch.equal(greedy_decode(model, ids, mask, max_new_tokens=NEW), old)
    assert new_tokens(model, ids, out).size(1) == NEW


def test_beam_gives_the_old_tokens(model):
    ids, mask = inputs(model)
    out = model.generate(ids, mask, num_beams=3, length_penalty=0.6, max_new_tokens=8)
    if model_kind(model) == ENCODER_DECODER:
        old = old_beam_search(model, ids, mask, beam_size=3, max_new_tokens=8)
        assert torch.equal(out, old.sequences)
        new = beam_search(model, ids, mask, beam_size=3, max_new_tokens=8)
        assert torch.equal(new.sequences, old.sequences)
        torch.testing.assert_close(new.scores, old.scores, rtol=0, atol=0)
    else:  # decoder-only beam search is new: the prompt is kept, new tokens follow it
        assert torch.equal(out[:, : ids.size(1)], ids) and out.size(1) == ids.size(1) + 8


@pytest.mark.parametrize("name", DECODER_ONLY_TINY)
def test_sampling_gives_the_old_tokens_for_decoder_only(name):
    """(Sampling is new for encoder-decoders: tested by the seeded tests below.)"""
    torch.manual_seed(0)
    model = build_model(name).eval()
    ids, mask = inputs(model)
    settings = dict(do_sample=True, temperature=0.7, top_k=50, top_p=0.9,
                    repetition_penalty=1.3, seed=3, max_new_tokens=NEW)
    assert torch.equal(model.generate(ids, mask, **settings),
                       old_causal_generate(model, ids, mask, **settings))


def test_sampling_is_seeded_with_a_local_generator(model):
    ids, mask = inputs(model)
    state = torch.get_rng_state()
    runs = {seed: model.generate(ids, mask, do_sample=True, seed=seed, max_new_tokens=NEW)
            for seed in (0, 0, 1, 2)}
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    again = model.generate(ids, mask, do_sample=True, seed=0, max_new_tokens=NEW)
    assert torch.equal(runs[0], again)
    assert not torch.equal(runs[0], runs[1]) or not torch.equal(runs[0], runs[2])
    greedy = model.generate(ids, mask, max_new_tokens=NEW)
    assert not torch.equal(runs[0], greedy)  # sampling at temperature 1 leaves the argmax


def test_warpers_do_not_change_greedy_and_repetition_penalty_does(model):
    ids, mask = inputs(model)
    greedy = model.generate(ids, mask, max_new_tokens=NEW)
    warped = model.generate(ids, mask, max_new_tokens=NEW, temperature=0.3, top_k=2, top_p=0.5)
    assert torch.equal(greedy, warped)
    penalized = model.generate(ids, mask, max_new_tokens=NEW, repetition_penalty=1e3)
    assert not torch.equal(greedy, penalized)
    # A huge penalty makes every row's new tokens distinct: repeating a token would need all
    # unseen logits below its penalized one.
    for row in new_tokens(model, ids, penalized).tolist():
        assert len(set(row)) == len(row)


def state_for(model, ids, mask, beams: int):
    if model_kind(model) == DECODER_ONLY:
        return DecoderOnlyState(model, ids, mask, max_new_tokens=NEW, beams=beams)
    return EncoderDecoderState(model, ids, mask, beams=beams)


@torch.no_grad()
@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_one_beam_is_greedy(model, penalty):
    ids, mask = inputs(model)
    greedy = model.generate(ids, mask, max_new_tokens=NEW, repetition_penalty=penalty)
    eos = model.config.eos_token_id
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else eos
    out = search(state_for(model, ids, mask, 1), torch.full((3,), NEW), beam_size=1,
                 length_penalty=0.6, eos_id=eos, pad_id=pad,
                 processor=logits_processor(repetition_penalty=penalty))
    assert torch.equal(out.sequences, new_tokens(model, ids, greedy))


@torch.no_grad()
def sequence_score(model, source, seq, alpha: float) -> float:
    """log P(seq | source) / lp(|seq|) from one teacher-forced pass (the oracle)."""
    if model_kind(model) == DECODER_ONLY:
        logits = model(torch.cat([source, seq])[None]).logits[0, source.numel() - 1 : -1]
    else:
        start = torch.tensor([model.config.decoder_start_token_id])
        logits = model(source[None], torch.cat([start, seq[:-1]])[None]).logits[0]  # (n, V)
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, seq[:, None]).sum()
    return float(logp) / length_penalty_gnmt(seq.numel(), alpha)


@pytest.mark.parametrize("seed", [1, 2])
def test_beam_scores_at_least_greedy(model, seed):
    ids, _ = inputs(model, seed)
    ids = ids[:1]  # one unpadded row
    greedy = new_tokens(model, ids, model.generate(ids, max_new_tokens=6))[0]
    beam = new_tokens(model, ids, model.generate(ids, max_new_tokens=6, num_beams=4))[0]
    eos = model.config.eos_token_id
    assert eos not in greedy.tolist() and eos not in beam.tolist()  # both full length
    beam_score = sequence_score(model, ids[0], beam, 0.6)
    assert beam_score >= sequence_score(model, ids[0], greedy, 0.6) - 1e-5
    # The score the search computed step by step, through the reordered cache, is the
    # teacher-forced one of the sequence it returns.
    with torch.no_grad():
        out = search(state_for(model, ids, None, 4), torch.full((1,), 6), beam_size=4,
                     length_penalty=0.6, eos_id=eos, pad_id=eos)
    assert torch.equal(out.sequences[0], beam)
    assert float(out.scores[0]) == pytest.approx(beam_score, abs=1e-4)


def test_eos_token_id_stops_rows_and_pads_them(model):
    ids, mask = inputs(model)
    first = new_tokens(model, ids, model.generate(ids, mask, max_new_tokens=NEW))[:, 0]
    eos = int(first[0])  # row 0's first token, declared the end
    out = new_tokens(model, ids, model.generate(ids, mask, max_new_tokens=NEW,
                                                eos_token_id=eos, pad_token_id=5))
    assert int(out[0, 0]) == eos and bool((out[0, 1:] == 5).all())


def test_generate_restores_training_mode(model):
    ids, mask = inputs(model)
    model.train()
    try:
        model.generate(ids, mask, max_new_tokens=2)
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize(("settings", "message"), [
    (dict(do_sample=True, num_beams=2), "do_sample=True needs num_beams=1"),
    (dict(num_beams=0), "beam_size must be a positive int, got 0"),
    (dict(length_penalty=-1.0), "length_penalty must be a finite number >= 0"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int, got 0"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0 when sampling"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
])
def test_bad_settings_are_config_errors(settings, message):
    torch.manual_seed(0)
    for name in ("t5-tiny", "gpt2-tiny"):
        model = build_model(name)
        with pytest.raises(ConfigError, match=message):
            model.generate(torch.tensor([[5, 6, 7]]), **settings)


def test_encoder_only_declares_its_kind_and_has_no_generate():
    for name in ENCODER_ONLY_TINY:
        model = build_model(name)
        assert model_kind(model) == ENCODER_ONLY and not hasattr(model, "generate")


def test_a_generating_class_must_declare_a_generating_kind():
    with pytest.raises(TypeError, match="model_kind must be one of"):
        type("Wrong", (GenerationMixin,), {"model_kind": ENCODER_ONLY})
    with pytest.raises(TypeError, match="declares no model_kind"):
        model_kind(object())


def test_logits_processor_is_pure():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    before = logits.clone()
    seen = torch.tensor([[0, 1]])
    process = logits_processor(do_sample=True, temperature=0.5, top_k=3, top_p=0.99,
                               repetition_penalty=2.0)
    first, second = process(logits, seen), process(logits, seen)
    assert torch.equal(logits, before) and torch.equal(first, second)
    # penalty (2 -> 1, -1 -> -2), temperature 0.5 (x2), top-k 3 drops the lowest (-4), top-p
    # 0.99 the 1.0 (probabilities 0.976, 0.018 before it)
    expected = torch.tensor([[2.0, float("-inf"), float("-inf"), 6.0]])
    assert torch.equal(first, expected)
    # without sampling only the repetition penalty applies
    assert torch.equal(logits_processor(temperature=0.5, top_k=1, repetition_penalty=2.0)(
        logits, seen), torch.tensor([[1.0, -2.0, 0.5, 3.0]]))


@pytest.mark.parametrize("name", DECODER_ONLY_TINY)
def test_decoder_only_beam_batch_equals_each_row_alone(name):
    """Left padding, the repeated prompt and the reordered KV cache change no row's search."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    ids, mask = inputs(model)
    batch = model.generate(ids, mask, num_beams=3, max_new_tokens=8)
    T = ids.size(1)
    for row in range(ids.size(0)):
        prompt = ids[row : row + 1, int((mask[row] == 0).sum()) :]  # the real tokens
        alone = model.generate(prompt, num_beams=3, max_new_tokens=8)
        n = alone.size(1) - prompt.size(1)
        assert torch.equal(batch[row, T : T + n], alone[0, prompt.size(1) :])
