"""RNN encoder-decoders (Sutskever 2014, Bahdanau 2014, Luong 2015) under the Transformer's
interfaces: learning, attention distributions, cache, decoding, padding, saving, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import attnlab.models as models
from attnlab.generation.beam import beam_search
from attnlab.generation.greedy import greedy_decode
from attnlab.models.io import from_pretrained, save_pretrained
from attnlab.models.rnn import PRESETS, RNNConfig, RNNSeq2Seq, reverse_rows

# (attention, extra config): Sutskever, Bahdanau, Luong dot, Luong general with input feeding.
VARIANTS = [
    ("none", dict(reverse_source=True)),
    ("additive", {}),
    ("dot", {}),
    ("general", dict(input_feeding=True, reverse_source=True)),
]
CASES = [(a, cell, extra) for a, extra in VARIANTS for cell in ("lstm", "gru")]
IDS = [f"{a}-{cell}" for a, cell, _ in CASES]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/models/conftest.py


def tiny(attention: str, cell: str = "lstm", seed: int = 0, **extra) -> RNNSeq2Seq:
    torch.manual_seed(seed)
    values = dict(vocab_size=30, d_model=16, n_layers=2, max_seq_len=32, dropout=0.0)
    return RNNSeq2Seq(RNNConfig(attention=attention, cell=cell, **{**values, **extra})).eval()


def padded_batch(seed: int = 0):
    """Three sources of lengths 6, 4, 2 (right padded with 0) and targets (B, 5)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 30, (3, 6), generator=g)
    mask = (torch.arange(6) < torch.tensor([[6], [4], [2]])).long()  # (3, 6)
    return src * mask, mask, torch.randint(3, 30, (3, 5), generator=g)


@pytest.mark.parametrize(("attention", "cell", "extra"), CASES, ids=IDS)
def test_overfits_a_few_pairs(attention, cell, extra):
    torch.manual_seed(0)
    config = RNNConfig(vocab_size=20, d_model=64, n_layers=1, max_seq_len=16, cell=cell,
                       attention=attention, **extra)
    model = RNNSeq2Seq(config)
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 11, 2, 0], [12, 13, 2, 0, 0], [14, 15, 2, 0, 0]])
    labels = torch.tensor([[8, 7, 6, 5, 2], [11, 10, 9, 2, -100], [13, 12, 2, -100, -100],
                           [15, 14, 15, 14, 2]])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        loss = model(src, attention_mask=(src != 0).long(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    out = greedy_decode(model, src, (src != 0).long(), max_new_tokens=6)
    for row, target in zip(out.tolist(), labels.tolist(), strict=True):
        target = [t for t in target if t != -100]
        assert row[: len(target)] == target


@pytest.mark.parametrize(("attention", "cell", "extra"), CASES, ids=IDS)
def test_attention_is_a_distribution_over_real_source_positions(attention, cell, extra):
    model = tiny(attention, cell, **extra)
    src, mask, tgt = padded_batch()
    out = model(src, tgt, attention_mask=mask, output_attentions=True)
    assert out.logits.shape == (3, 5, 30)
    if attention == "none":  # Sutskever: no attention to show
        assert out.cross_attentions is None
        return
    (weights,) = out.cross_attentions
    assert weights.shape == (3, 1, 5, 6)  # (B, H, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 5))
    assert (weights >= 0).all()
    assert (weights.masked_select(~mask.bool()[:, None, None, :]) == 0).all()


@pytest.mark.parametrize(("attention", "cell", "extra"), CASES, ids=IDS)
def test_cached_steps_match_the_full_prefix_and_follow_reorder(attention, cell, extra):
    model = tiny(attention, cell, **extra)
    src, mask, tgt = padded_batch()
    memory = model.encode(src, mask).last_hidden_state  # (B, S, D_mem)
    full = model.decode(tgt, memory, attention_mask=mask, output_attentions=True)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, t : t + 1], memory, attention_mask=mask, cache=cache,
                          output_attentions=True) for t in range(3)]
    assert cache.length == 3
    hidden = torch.cat([s.last_hidden_state for s in steps], dim=1)  # (B, 3, D)
    torch.testing.assert_close(hidden, full.last_hidden_state[:, :3], rtol=1e-5, atol=1e-6)
    if attention != "none":
        weights = torch.cat([s.cross_attentions[0] for s in steps], dim=2)  # (B, 1, 3, S)
        torch.testing.assert_close(weights, full.cross_attentions[0][:, :, :3])
    # Beam search reorders rows: the cache must follow them.
    index = torch.tensor([2, 0, 0])
    cache.reorder(index)
    rest = model.decode(tgt[index, 3:], memory[index], attention_mask=mask[index], cache=cache)
    expected = model.decode(tgt[index], memory[index], attention_mask=mask[index])
    torch.testing.assert_close(rest.last_hidden_state, expected.last_hidden_state[:, 3:],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("attention", "cell", "extra"), CASES, ids=IDS)
def test_greedy_equals_beam_of_one_with_and_without_cache(attention, cell, extra):
    model = tiny(attention, cell, **extra)
    src, mask, _ = padded_batch()
    greedy = greedy_decode(model, src, mask, max_new_tokens=8)
    assert torch.equal(greedy, greedy_decode(model, src, mask, max_new_tokens=8,
                                             use_cache=False))
    beam = beam_search(model, src, mask, beam_size=1, max_new_tokens=8).sequences
    assert torch.equal(beam, greedy[:, : beam.size(1)])
    wide = beam_search(model, src, mask, beam_size=3, max_new_tokens=8)
    assert wide.sequences.size(0) == 3 and torch.isfinite(wide.scores).all()


@pytest.mark.parametrize(("attention", "cell", "extra"), CASES, ids=IDS)
def test_source_padding_does_not_change_a_row(attention, cell, extra):
    model = tiny(attention, cell, **extra)
    src, mask, tgt = padded_batch()
    batched = model(src, tgt, attention_mask=mask).logits
    for row, length in enumerate((6, 4, 2)):
        alone = model(src[row : row + 1, :length], tgt[row : row + 1]).logits
        torch.testing.assert_close(batched[row : row + 1], alone, rtol=1e-5, atol=1e-5)


def test_loss_is_cross_entropy_on_shifted_labels_and_reaches_every_parameter():
    model = tiny("additive").train()
    src, mask, tgt = padded_batch()
    labels = tgt.clone()
    labels[2, 3:] = -100
    out = model(src, attention_mask=mask, labels=labels)
    shifted = torch.cat([torch.full((3, 1), 1), labels[:, :-1].clamp(min=0)], dim=1)
    logits = model(src, shifted, attention_mask=mask).logits
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                 ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    assert model.lm_head.weight is model.embed_tokens.weight  # tied


def test_reverse_rows_reverses_real_positions_only():
    x = torch.arange(8.0).view(2, 4, 1)  # (B, S, 1)
    out = reverse_rows(x, torch.tensor([4, 2]))
    assert out.squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert reverse_rows(out, torch.tensor([4, 2])).equal(x)


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    # io knows model types through the registered presets; register one for this test only.
    monkeypatch.setitem(models.PRESETS, "rnn-test", models.Preset(RNNSeq2Seq, {}, "test"))
    model = tiny("general", "gru", input_feeding=True)
    model.save_pretrained(tmp_path / "a")
    save_pretrained(model, tmp_path / "b")
    src, mask, tgt = padded_batch()
    for folder in ("a", "b"):
        back = from_pretrained(tmp_path / folder)
        assert type(back) is RNNSeq2Seq and back.config == model.config
        torch.testing.assert_close(back(src, tgt, attention_mask=mask).logits,
                                   model(src, tgt, attention_mask=mask).logits, rtol=0, atol=0)


def test_presets_sizes():
    transformer = {}
    for size in ("mini", "small"):
        with torch.device("meta"):
            transformer[size] = models.build_model(f"transformer-{size}",
                                                   vocab_size=4000).num_parameters()
    assert transformer == {"mini": 1_239_936, "small": 6_553_600}
    for name, (values, source) in PRESETS.items():
        size = name.rsplit("-", 1)[1]
        assert source and name.startswith("rnn-")
        with torch.device("meta"):
            model = RNNSeq2Seq(RNNConfig(**{"vocab_size": 4000, **values}))
        if size == "tiny":
            assert values["vocab_size"] == 1000 and model.num_parameters() < 1_000_000
        else:
            ratio = model.num_parameters() / transformer[size]
            assert 0.9 < ratio < 1.1, (name, model.num_parameters())
    assert {f"rnn-{p}-{s}" for p in ("sutskever", "bahdanau", "luong")
            for s in ("tiny", "mini", "small")} <= set(PRESETS)


def test_paper_settings_of_the_presets():
    sutskever, bahdanau, luong = (RNNConfig(**PRESETS[f"rnn-{p}-mini"][0])
                                  for p in ("sutskever", "bahdanau", "luong"))
    assert sutskever.attention == "none" and sutskever.reverse_source
    assert sutskever.cell == "lstm" and not sutskever.bidirectional
    assert bahdanau.attention == "additive" and bahdanau.bidirectional and bahdanau.cell == "gru"
    assert luong.attention == "general" and luong.input_feeding and luong.reverse_source
    assert all(c.decoder_start_token_id == c.bos_token_id == 1
               for c in (sutskever, bahdanau, luong))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(cell="rnn"), r"cell must be one of \('lstm', 'gru'\), got 'rnn'"),
        (dict(attention="concat"), r"attention must be one of .*'general'\), got 'concat'"),
        (dict(d_model=0), "d_model must be a positive integer, got 0"),
        (dict(n_layers=1.5), "n_layers must be a positive integer, got 1.5"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(attention="additive", input_feeding=True),
         "input_feeding needs attention 'dot' or 'general', got 'additive'"),
        (dict(attention="additive", reverse_source=True), "reverse_source needs bidirectional"),
        (dict(attention="dot", bidirectional=True), "attention='dot' needs bidirectional=False"),
        (dict(bidirectional=1), "bidirectional must be a bool, got 1"),
        (dict(eos_token_id=30), r"eos_token_id must be in \[0, vocab_size=30\), got 30"),
        (dict(init_range=0.0), "init_range must be a positive number, got 0.0"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        RNNConfig(**{"vocab_size": 30, **overrides})


def test_config_is_frozen_with_derived_direction():
    config = RNNConfig(attention="additive")
    assert config.bidirectional and not RNNConfig(attention="general").bidirectional
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 3  # type: ignore[misc]


def test_bad_inputs_raise_clear_errors():
    model = tiny("additive")
    src, mask, tgt = padded_batch()
    left = mask.flip(1)
    with pytest.raises(ValueError, match="right padding"):
        model.encode(src, left)
    with pytest.raises(ValueError, match="at least one real token"):
        model.encode(src, torch.zeros_like(mask))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(3, 6\)"):
        model.encode(src, mask[:, :4])
    with pytest.raises(ValueError, match="memory .* is needed"):
        model.decode(tgt, None)
    memory = model.encode(src, mask).last_hidden_state
    with pytest.raises(ValueError, match=r"memory must be \(batch=3, length, 32\)"):
        model.decode(tgt, memory[..., :16])
    with pytest.raises(ValueError, match="pass decoder_input_ids, or labels"):
        model(src)
    with pytest.raises(ValueError, match="vocab_size=30"):
        model(src, tgt + 30)
