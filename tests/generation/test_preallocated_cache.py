"""Decoder-only generation with the preallocated KV cache (the default) gives the same tokens as
the growing cache and as recomputing the whole prefix every step, with left padding."""

from __future__ import annotations

import pytest
import torch

from attnlab.generation import generate
from attnlab.models import build_model

NEW = 12


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def left_padded_prompt(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    ids = torch.randint(3, vocab_size, (3, 7))  # (B, T)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :5] = 0
    return ids.masked_fill(mask == 0, 0), mask


@torch.no_grad()
def greedy_without_cache(model, ids, mask, max_new_tokens):
    """The oracle: every step re-runs the model over the whole (left-padded) sequence."""
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, t)
        logits = model(ids, attention_mask=mask, position_ids=positions).logits  # (B, t, V)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (B, t + 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, t + 1)
    return ids


def test_greedy_same_tokens_preallocated_growing_and_no_cache(model):
    ids, mask = left_padded_prompt(model.config.vocab_size)
    settings = dict(max_new_tokens=NEW, eos_token_id=-1)  # never stop early
    preallocated = generate(model, ids, mask, **settings)
    growing = generate(model, ids, mask, preallocate_cache=False, **settings)
    assert preallocated.shape == (3, 7 + NEW)
    assert torch.equal(preallocated, growing)
    assert torch.equal(preallocated, greedy_without_cache(model, ids, mask, NEW))


def test_sampling_same_tokens_with_either_cache(model):
    ids, mask = left_padded_prompt(model.config.vocab_size)
    settings = dict(max_new_tokens=NEW, do_sample=True, top_k=20, seed=5, eos_token_id=-1)
    assert torch.equal(generate(model, ids, mask, **settings),
                       generate(model, ids, mask, preallocate_cache=False, **settings))


@pytest.mark.parametrize("max_new_tokens", [5, None], ids=["short", "up_to_context"])
def test_cache_is_preallocated_for_prompt_plus_new_tokens(model, monkeypatch, max_new_tokens):
    ids, mask = left_padded_prompt(model.config.vocab_size)
    n = model.config.max_seq_len - ids.size(1) if max_new_tokens is None else max_new_tokens
    caches = []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda *a: caches.append(new_cache(*a)) or caches[-1])
    out = generate(model, ids, mask, max_new_tokens=n, eos_token_id=-1)
    assert out.size(1) == ids.size(1) + n <= model.config.max_seq_len
    self_attn = caches[0].layers[0].self_attn
    assert self_attn.max_length == ids.size(1) + n
    assert self_attn.length == ids.size(1) + n - 1  # the last token is returned, never fed
    generate(model, ids, mask, max_new_tokens=n, eos_token_id=-1, preallocate_cache=False)
    assert caches[1].layers[0].self_attn.max_length is None


def test_new_cache_max_length_is_checked(model):
    limit = model.config.max_seq_len
    assert model.new_cache(limit).layers[-1].self_attn.max_length == limit
    assert len(model.new_cache().layers) == model.config.n_layers
    for bad in (0, limit + 1):
        with pytest.raises(ValueError, match=rf"max_length must be in \[1, max_seq_len={limit}\]"):
            model.new_cache(bad)
