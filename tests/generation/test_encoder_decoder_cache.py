"""Encoder-decoder decoding with preallocated self-attention caches (the default when the number
of new tokens is known) gives the tokens and scores of the growing cache and of no cache, greedy
and beam search, on the 2017 Transformer, a Marian-shaped Transformer and T5; `generate` and
`beam_search` preallocate for exactly the positions they feed; beam reordering never touches the
cross-attention caches."""

from __future__ import annotations

import pytest
import torch

from attnlab.generation.beam import beam_search, search
from attnlab.generation.state import EncoderDecoderState
from attnlab.generation.stepwise import decode_steps
from attnlab.io.hf import marian
from attnlab.models import build_model
from attnlab.models.transformer import Transformer, TransformerConfig
from attnlab.nn.cache import KVCache

NEW = 9
# A tiny MarianConfig (as a dict: no transformers needed) through the Marian mapping.
MARIAN = dict(vocab_size=60, d_model=32, encoder_layers=2, decoder_layers=2,
              encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
              decoder_ffn_dim=64, activation_function="swish", max_position_embeddings=64,
              pad_token_id=59, decoder_start_token_id=59, eos_token_id=0, scale_embedding=True,
              dropout=0.0)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "marian":
        model = Transformer(TransformerConfig(**marian.config_values_from_hf(MARIAN)))
    else:
        model = build_model(name)
    return model.eval()


@pytest.fixture(scope="module", params=["transformer-tiny", "marian", "t5-tiny"])
def model(request):
    return build(request.param)


def source(model, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded source ids (3, 7) and their mask."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    ids = torch.randint(3, c.vocab_size - 1, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return ids.masked_fill(mask == 0, c.pad_token_id), mask


def run(model, ids, mask, beams: int, eos: int, **cache) -> tuple[torch.Tensor, torch.Tensor]:
    """New tokens (B, n) and, for beam search, scores (B,) from a state built with `cache`."""
    c = model.config
    state = EncoderDecoderState(model, ids, mask, beams=beams, max_new_tokens=NEW, **cache)
    if beams > 1:
        out = search(state, torch.full((ids.size(0),), NEW), beam_size=beams,
                     length_penalty=0.6, eos_id=eos, pad_id=c.pad_token_id)
        return out.sequences, out.scores
    steps = list(decode_steps(state, max_new_tokens=NEW, eos_id=eos, pad_id=c.pad_token_id))
    return torch.stack(steps, dim=1), torch.zeros(ids.size(0))


@torch.no_grad()
@pytest.mark.parametrize("beams", [1, 4], ids=["greedy", "beam4"])
@pytest.mark.parametrize("eos", ["config", "never"])
def test_preallocated_equals_growing_and_no_cache(model, beams, eos):
    ids, mask = source(model)
    eos_id = model.config.eos_token_id if eos == "config" else -1  # never: full length
    fast, fast_scores = run(model, ids, mask, beams, eos_id)
    growing, growing_scores = run(model, ids, mask, beams, eos_id, preallocate_cache=False)
    oracle, oracle_scores = run(model, ids, mask, beams, eos_id, use_cache=False)
    assert torch.equal(fast, growing) and torch.equal(fast, oracle)
    torch.testing.assert_close(fast_scores, growing_scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_scores, oracle_scores, rtol=1e-5, atol=1e-5)
    if eos == "never":
        assert fast.shape == (3, NEW)


def test_state_preallocates_only_when_asked(model):
    ids, mask = source(model)
    with torch.no_grad():
        states = {"fast": EncoderDecoderState(model, ids, mask, beams=2, max_new_tokens=NEW),
                  "growing": EncoderDecoderState(model, ids, mask, beams=2, max_new_tokens=NEW,
                                                 preallocate_cache=False),
                  "unknown": EncoderDecoderState(model, ids, mask, beams=2)}
    lengths = {name: {layer.self_attn.max_length for layer in state.cache.layers}
               for name, state in states.items()}
    assert lengths == {"fast": {NEW}, "growing": {None}, "unknown": {None}}
    assert all(layer.cross_attn.max_length is None for layer in states["fast"].cache.layers)


@pytest.mark.parametrize("beams", [1, 3])
def test_generate_preallocates_the_positions_it_feeds(model, monkeypatch, beams):
    """The start token and every new token but the last are fed: max_new_tokens positions,
    capped where the start token and the new tokens would pass max_seq_len."""
    ids, mask = source(model)
    caches = []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda max_length=None: caches.append(
        new_cache(max_length)) or caches[-1])
    limit = model.config.max_seq_len
    for n in (NEW, limit + 5):
        out = model.generate(ids, mask, max_new_tokens=n, num_beams=beams, eos_token_id=-1)
        assert out.size(1) == min(n, limit - 1)
        self_attn = caches[-1].layers[0].self_attn
        assert self_attn.max_length == min(n, limit - 1)
        assert self_attn.length == out.size(1)  # filled to the last position, never past it


def test_beam_search_preallocates_for_the_longest_row(monkeypatch):
    model = build("transformer-tiny")
    ids, mask = source(model)
    caches = []
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda max_length=None: caches.append(
        new_cache(max_length)) or caches[-1])
    beam_search(model, ids, mask, beam_size=2)  # default: source length + 50
    assert caches[0].layers[0].self_attn.max_length == min(7 + 50, model.config.max_seq_len - 1)


def test_beam_reordering_leaves_cross_attention_caches_alone(model, monkeypatch):
    reordered = []
    original = KVCache.reorder

    def spy(self, index):
        reordered.append(self.cross)
        original(self, index)

    monkeypatch.setattr(KVCache, "reorder", spy)
    ids, mask = source(model)
    with torch.no_grad():
        out = model.generate(ids, mask, num_beams=3, max_new_tokens=5, eos_token_id=-1)
    assert out.shape == (3, 5)
    layers = len(model.decoder.layers)
    assert reordered.count(False) == 5 * layers and True not in reordered
