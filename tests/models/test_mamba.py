"""The Mamba family (models/mamba.py): generation with the recurrent state equals greedy decoding
by full recomputation (left padding too), the state's size does not grow, both scan forms give
the same model, the paper's initialisation, bad configs named, and a training step lowers the
loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from greedy_oracle import greedy_by_recompute

from attnlab.models import build_model, get_config
from attnlab.models.mamba import Mamba
from attnlab.nn.cache import DecoderCache

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends


def tiny(**overrides) -> Mamba:
    torch.manual_seed(0)
    return build_model("mamba-tiny", **{"eos_token_id": None, **overrides}).eval()



@pytest.mark.parametrize("form", ["recurrent", "chunkwise"])
def test_generation_with_the_state_equals_full_recompute(form):
    model = tiny(form=form, chunk_size=4, n_layers=2)
    ids = torch.randint(1, 1000, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[2, :4] = 0  # a left-padded row
    got = model.generate(ids, mask, max_new_tokens=10)
    assert torch.equal(got, greedy_by_recompute(model, ids, 10, mask))
    alone = model.generate(ids[2:, 4:], max_new_tokens=10)
    assert torch.equal(got[2:, 4:], alone)


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
    # per layer: conv window (B, E=128, 3) and SSM state (B, 128, 16), float32
    assert sizes[0] == 4 * 2 * 128 * (3 + 16) * 4


def test_both_forms_give_the_same_model():
    model = tiny().double()
    ids = torch.randint(1, 1000, (2, 37))
    with torch.no_grad():
        recurrent = model(ids).logits
        for layer in model.decoder.layers:
            layer.mixer.form = "chunkwise"
        torch.testing.assert_close(model(ids).logits, recurrent, atol=1e-9, rtol=1e-9)


def test_a_kv_cache_and_attention_weights_are_refused():
    model = tiny()
    ids = torch.randint(1, 1000, (1, 5))
    with pytest.raises(TypeError, match="RecurrentState"):
        model(ids, cache=DecoderCache.empty(4))
    with pytest.raises(ValueError, match="no attention weights"):
        model(ids, output_attentions=True)


def test_the_papers_initialisation():
    model = tiny(n_layers=9)
    mixer = model.decoder.layers[0].mixer
    torch.testing.assert_close(mixer.A_log, torch.log(torch.arange(1.0, 17.0)).expand(128, 16))
    assert torch.equal(mixer.D, torch.ones(128))
    dt = F.softplus(mixer.dt_proj.bias)
    assert bool(((dt > 0.001 * 0.999) & (dt < 0.1 * 1.001)).all())
    bound = 1 / math.sqrt(128) / math.sqrt(9)  # PyTorch's default, / sqrt(n_layers)
    assert float(mixer.out_proj.weight.detach().abs().max()) <= bound
    assert model.lm_head.weight is model.embed_tokens.weight
    assert abs(float(model.embed_tokens.weight.detach().std()) - 0.02) < 0.002


@pytest.mark.parametrize("form", ["recurrent", "chunkwise"])
def test_a_training_step_lowers_the_loss(form):
    torch.manual_seed(0)
    model = build_model("mamba-tiny", form=form).train()
    ids = torch.randint(1, 1000, (4, 24))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


def test_presets():
    assert build_model("mamba-tiny").num_parameters() < 1_000_000
    config = get_config("mamba-130m")
    assert (config.d_model, config.n_layers, config.vocab_size) == (768, 24, 50280)
    assert (config.d_state, config.d_conv, config.d_inner, config.time_step_rank) == \
        (16, 4, 1536, 48)
    assert (get_config("mamba-2.8b").d_model, get_config("mamba-2.8b").n_layers) == (2560, 64)


@pytest.mark.parametrize("field, value, message", [
    ("d_model", 0, "d_model must be a positive integer"),
    ("n_layers", 0, "n_layers must be a positive integer"),
    ("d_state", 0, "d_state must be a positive integer, got 0"),
    ("d_conv", 0, "d_conv must be a positive integer, got 0"),
    ("expand", 0, "expand must be a positive integer, got 0"),
    ("chunk_size", -1, "chunk_size must be a positive integer, got -1"),
    ("dt_rank", 0, "dt_rank must be 'auto' or a positive integer, got 0"),
    ("dt_min", 1.0, "dt_min and dt_max must satisfy 0 < dt_min <= dt_max"),
    ("rms_norm_eps", 0.0, "rms_norm_eps must be > 0"),
    ("form", "parallel", "form must be one of"),
    ("eos_token_id", 1000, r"eos_token_id must be in \[0, vocab_size=1000\)"),
    ("vocab_size", 10**9, "vocab_size=1000000000 is outside the sane range"),
])
def test_bad_configs_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_config("mamba-tiny", **{field: value})
