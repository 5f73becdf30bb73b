"""The RWKV-4 family (models/rwkv.py): generation with the recurrent state equals greedy decoding
by full recomputation, the state's size does not grow, both WKV forms give the same model,
bad configs are named, and a training step lowers the loss."""

from __future__ import annotations

import pytest
import torch
from greedy_oracle import greedy_by_recompute

from attnlab.models import build_model, get_config
from attnlab.models.rwkv import Rwkv, RwkvConfig
from attnlab.nn.cache import DecoderCache


def tiny(**overrides) -> Rwkv:
    torch.manual_seed(0)
    return build_model("rwkv-tiny", **overrides).eval()



def test_generation_with_the_state_equals_full_recompute():
    model = tiny()
    ids = torch.randint(1, 1000, (3, 11), generator=torch.Generator().manual_seed(1))
    got = model.generate(ids, max_new_tokens=15, eos_token_id=None)
    assert torch.equal(got, greedy_by_recompute(model, ids, 15))


def test_the_state_does_not_grow():
    model = tiny()
    ids = torch.randint(1, 1000, (2, 30))
    cache = model.new_cache()
    sizes = []
    with torch.no_grad():
        model(ids[:, :10], cache=cache)
        sizes.append(cache.nbytes)
        for t in range(10, 30):
            model(ids[:, t:t + 1], cache=cache)
            sizes.append(cache.nbytes)
    assert cache.length == 30 and len(set(sizes)) == 1
    # per layer: time-mix input, num, den, max and channel-mix input, each (B, 64) float32
    assert sizes[0] == 2 * 5 * 2 * 64 * 4


def test_both_forms_give_the_same_model():
    model = tiny().double()
    ids = torch.randint(1, 1000, (2, 37))
    with torch.no_grad():
        parallel = model(ids).logits
        for layer in model.decoder.layers:
            layer.attention.form = "recurrent"
        torch.testing.assert_close(model(ids).logits, parallel, atol=1e-9, rtol=1e-9)


def test_rescale_every_changes_only_eval_mode_and_only_by_eps():
    model = tiny(n_layers=4, rescale_every=1)
    ids = torch.randint(1, 1000, (2, 9))
    with torch.no_grad():
        rescaled = model(ids).logits
        model.train()
        plain = model(ids).logits
    assert not torch.equal(rescaled, plain)
    torch.testing.assert_close(rescaled, plain, atol=1e-2, rtol=1e-2)  # LayerNorm eps


def test_a_kv_cache_and_attention_weights_are_refused():
    model = tiny()
    ids = torch.randint(1, 1000, (1, 5))
    with pytest.raises(TypeError, match="RecurrentState"):
        model(ids, cache=DecoderCache.empty(2))
    with pytest.raises(ValueError, match="no attention weights"):
        model(ids, output_attentions=True)


def test_a_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model("rwkv-tiny").train()
    ids = torch.randint(1, 1000, (4, 24))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_defaults_follow_d_model():
    config = RwkvConfig(vocab_size=100, d_model=48, n_layers=2)
    assert config.attention_hidden_size == 48 and config.d_ff == 192
    assert get_config("rwkv-169m").d_ff == 3072


@pytest.mark.parametrize("field, value, message", [
    ("d_model", 0, "d_model must be a positive integer"),
    ("n_layers", 0, "n_layers must be a positive integer"),
    ("attention_hidden_size", 0, "attention_hidden_size must be a positive integer"),
    ("d_ff", -4, "d_ff must be a positive integer"),
    ("chunk_size", 0, "chunk_size must be a positive integer"),
    ("rescale_every", -1, "rescale_every must be an integer >= 0"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be > 0"),
    ("eos_token_id", 1000, r"eos_token_id must be in \[0, vocab_size=1000\)"),
    ("vocab_size", 10**9, "vocab_size=1000000000 is outside the sane range"),
])
def test_bad_configs_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_config("rwkv-tiny", **{field: value})
