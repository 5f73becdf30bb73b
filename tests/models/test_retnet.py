"""RetNet (models/retnet.py): the three retention forms give one model, generation from the
recurrent state equals greedy decoding by full recompute (left padding included), folders
round-trip, bad configs are named, and a few steps lower the loss."""

from __future__ import annotations

import json

import pytest
import torch
from greedy_oracle import greedy_by_recompute

import attnlab
from attnlab.models import build_model
from attnlab.models.retnet import RetNetConfig
from attnlab.nn.cache import RecurrentState

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides):
    torch.manual_seed(0)
    return build_model("retnet-tiny", **overrides).eval()



def test_forms_and_cached_steps_give_the_same_logits():
    model = tiny(chunk_size=3).double()
    ids = torch.randint(0, 1000, (2, 11), generator=torch.Generator().manual_seed(0))
    outs = {}
    for form in ("parallel", "chunkwise", "recurrent"):
        for layer in model.decoder.layers:
            layer.self_attn.form = form
        outs[form] = model(ids).logits
        torch.testing.assert_close(outs[form], outs["parallel"], atol=1e-6, rtol=1e-6)
    cache = model.new_cache()
    assert all(isinstance(layer.self_attn, RecurrentState) for layer in cache.layers)
    pieces = [model(ids[:, :6], cache=cache).logits]
    size = cache.nbytes
    pieces += [model(ids[:, t:t + 1], cache=cache).logits for t in range(6, 11)]
    assert cache.nbytes == size and cache.length == 11
    torch.testing.assert_close(torch.cat(pieces, 1), outs["parallel"], atol=1e-6, rtol=1e-6)


def test_generate_with_the_state_equals_greedy_recompute():
    model = tiny()
    prompt = torch.randint(0, 999, (2, 7), generator=torch.Generator().manual_seed(1))
    got = model.generate(prompt, max_new_tokens=8)
    torch.testing.assert_close(got, greedy_by_recompute(model, prompt, 8), rtol=0, atol=0)


def test_a_left_padded_prompt_generates_as_the_unpadded_one():
    model = tiny()
    prompt = torch.randint(0, 999, (1, 6), generator=torch.Generator().manual_seed(2))
    alone = model.generate(prompt, max_new_tokens=6)
    padded = torch.cat([torch.full((1, 3), 5), prompt], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], 1)
    batch = torch.cat([padded, torch.randint(0, 999, (1, 9))])
    got = model.generate(batch, attention_mask=torch.cat([mask, torch.ones_like(mask)]),
                         max_new_tokens=6)
    torch.testing.assert_close(got[:1, 3:], alone, rtol=0, atol=0)
    logits = model(batch, attention_mask=torch.cat([mask, torch.ones_like(mask)])).logits
    torch.testing.assert_close(logits[:1, 3:], model(prompt).logits, atol=1e-5, rtol=1e-5)


def test_folder_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "retnet"
    back = attnlab.from_pretrained(tmp_path)
    assert type(back) is type(model) and back.config == model.config
    ids = torch.randint(0, 1000, (1, 9))
    torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_paper_sizes_and_block_parameters():
    with torch.device("meta"):
        model = build_model("retnet-1.3b")
    assert round(model.num_parameters() / 1e9, 1) == 1.3
    layer = model.decoder.layers[0]
    d = model.config.d_model
    assert sum(p.numel() for p in layer.self_attn.parameters()) == 8 * d * d
    assert layer.feed_forward.up_proj.weight.numel() == 2 * d * d  # FFN width 2d
    assert tiny().num_parameters() < 1_000_000


@pytest.mark.parametrize("values, words", [
    (dict(d_model=30, n_heads=4), ["d_model (30)", "n_heads (4)"]),
    (dict(d_model=36, n_heads=4), ["36 / 4", "even"]),
    (dict(n_heads=0), ["n_heads", "0"]),
    (dict(chunk_size=0), ["chunk_size", "0"]),
    (dict(dropout=1.0), ["dropout", "1.0"]),
    (dict(vocab_size=10, eos_token_id=10), ["eos_token_id", "vocab_size=10"]),
])
def test_bad_configs_are_named(values, words):
    base = dict(vocab_size=100, d_model=32, n_layers=1, n_heads=4, d_ff=64, bos_token_id=0,
                eos_token_id=0)
    with pytest.raises(ValueError) as info:
        RetNetConfig(**{**base, **values})
    for word in words:
        assert word in str(info.value)


def test_a_few_steps_lower_the_loss():
    model = tiny().train()
    ids = torch.randint(0, 1000, (4, 32), generator=torch.Generator().manual_seed(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses
