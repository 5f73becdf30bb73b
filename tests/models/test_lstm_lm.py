"""The LSTM LM (models/lstm_lm.py): both LSTM forms give one model, with and without the
feed-forward; generation from (h, c) equals greedy decoding by full recompute (left padding
included); folders round-trip; bad configs are named; a few steps lower the loss."""

from __future__ import annotations

import json

import pytest
import torch
from greedy_oracle import greedy_by_recompute

import attnlab
from attnlab.models import build_model
from attnlab.models.lstm_lm import LSTMLayer, LstmLMConfig
from attnlab.nn.block import DecoderLayer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides):
    torch.manual_seed(0)
    return build_model("lstm-lm-tiny", **overrides).eval()



@pytest.mark.parametrize("d_ff", [None, 96])
def test_forms_and_cached_steps_give_the_same_logits(d_ff):
    model = tiny(d_ff=d_ff).double()
    kind = LSTMLayer if d_ff is None else DecoderLayer
    assert all(type(layer) is kind for layer in model.decoder.layers)
    ids = torch.randint(0, 1000, (2, 10), generator=torch.Generator().manual_seed(0))
    want = model(ids).logits
    for layer in model.decoder.layers:
        layer.self_attn.form = "recurrent"
    torch.testing.assert_close(model(ids).logits, want)
    cache = model.new_cache()
    pieces = [model(ids[:, :4], cache=cache).logits]
    pieces += [model(ids[:, t:t + 1], cache=cache).logits for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(pieces, 1), want)


def test_generate_with_the_state_equals_greedy_recompute():
    model = tiny(d_ff=64)
    prompt = torch.randint(0, 999, (2, 5), generator=torch.Generator().manual_seed(1))
    got = model.generate(prompt, max_new_tokens=8)
    torch.testing.assert_close(got, greedy_by_recompute(model, prompt, 8), rtol=0, atol=0)


def test_a_left_padded_prompt_generates_as_the_unpadded_one():
    model = tiny()
    prompt = torch.randint(0, 999, (1, 5), generator=torch.Generator().manual_seed(2))
    alone = model.generate(prompt, max_new_tokens=6)
    batch = torch.cat([torch.cat([torch.full((1, 4), 7), prompt], 1),
                       torch.randint(0, 999, (1, 9))])
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :4] = 0
    got = model.generate(batch, attention_mask=mask, max_new_tokens=6)
    torch.testing.assert_close(got[:1, 4:], alone, rtol=0, atol=0)
    logits = model(batch, attention_mask=mask).logits
    torch.testing.assert_close(logits[:1, 4:], model(prompt).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("d_ff", [None, 0, 48])
def test_folder_round_trip(tmp_path, d_ff):
    model = tiny(d_ff=d_ff)
    model.save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["model_type"] == "lstm_lm" and values["d_ff"] == (d_ff or None)
    back = attnlab.from_pretrained(tmp_path)
    assert type(back) is type(model) and back.config == model.config
    ids = torch.randint(0, 1000, (1, 7))
    torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_sizes():
    assert tiny().num_parameters() < 1_000_000
    small = build_model("lstm-lm-small")
    assert 2_000_000 < small.num_parameters() < 5_000_000
    assert small.lm_head.weight is small.embed_tokens.weight


@pytest.mark.parametrize("values, words", [
    (dict(d_model=0), ["d_model", "0"]),
    (dict(n_layers=-1), ["n_layers", "-1"]),
    (dict(d_ff=-4), ["d_ff", "-4"]),
    (dict(dropout=1.5), ["dropout", "1.5"]),
    (dict(vocab_size=10, bos_token_id=12), ["bos_token_id", "vocab_size=10"]),
])
def test_bad_configs_are_named(values, words):
    with pytest.raises(ValueError) as info:
        LstmLMConfig(**values)
    for word in words:
        assert word in str(info.value)


def test_a_few_steps_lower_the_loss():
    model = tiny().train()
    ids = torch.randint(0, 1000, (4, 24), generator=torch.Generator().manual_seed(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses
