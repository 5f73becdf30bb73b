"""Decoder-only generation: Hugging Face parity (greedy, left padding), sampling controls,
repetition penalty, and clear errors for invalid settings."""

from __future__ import annotations

import pytest
import torch

from attnlab.generation import filter_top_k_top_p, generate, penalize_repetition
from attnlab.interop.gpt2 import config_from_hf, state_dict_from_hf
from attnlab.models import build_model
from attnlab.models.gpt import GPT

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_head=4,
                                     n_layer=2, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, bos_token_id=1, eos_token_id=2,
                                     pad_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT(config_from_hf(config.to_dict())).eval()
    ours.load_state_dict(state_dict_from_hf(hf.state_dict(), ours.config), strict=False)
    return hf, ours


def test_greedy_matches_transformers_with_left_padding(pair):
    hf, ours = pair
    torch.manual_seed(3)
    ids = torch.randint(3, 300, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :5] = 0
    ids = ids.masked_fill(mask == 0, 0)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                           pad_token_id=0, eos_token_id=2)
    got = ours.generate(ids, mask, max_new_tokens=12, eos_token_id=2, pad_token_id=0)
    assert torch.equal(got, expected)


def test_sampling_is_seeded_and_top_k_1_is_greedy(pair):
    _, ours = pair
    ids = torch.randint(3, 300, (2, 5))
    a = generate(ours, ids, max_new_tokens=10, do_sample=True, seed=7, eos_token_id=-1)
    b = generate(ours, ids, max_new_tokens=10, do_sample=True, seed=7, eos_token_id=-1)
    c = generate(ours, ids, max_new_tokens=10, do_sample=True, seed=8, eos_token_id=-1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = generate(ours, ids, max_new_tokens=10, eos_token_id=-1)
    top1 = generate(ours, ids, max_new_tokens=10, do_sample=True, top_k=1, seed=1,
                    eos_token_id=-1)
    assert torch.equal(greedy, top1) and greedy.shape == (2, 15)


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = filter_top_k_top_p(logits, top_k=2, top_p=1.0).isfinite()
    assert kept.tolist() == [[True, True, False, False, False]]
    kept = filter_top_k_top_p(logits, top_k=0, top_p=0.8).isfinite()  # 0.5 + 0.2 + 0.15
    assert kept.tolist() == [[True, True, True, False, False]]
    kept = filter_top_k_top_p(logits, top_k=0, top_p=0.01).isfinite()  # best always kept
    assert kept.tolist() == [[True, False, False, False, False]]


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    logits, seen = torch.randn(2, 20), torch.randint(0, 20, (2, 6))
    expected = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    torch.testing.assert_close(penalize_repetition(logits, seen, 1.3), expected)


@pytest.mark.parametrize("settings, message", [
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0 when sampling, got 0.0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_k=-1), "top_k must be >= 0"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(max_new_tokens=200), "exceeds the model's context of 128 positions"),
])
def test_invalid_settings_are_clear_errors(settings, message):
    model = build_model("gpt2-tiny")
    with pytest.raises(ValueError, match=message):
        generate(model, torch.ones(1, 4, dtype=torch.long), **settings)
