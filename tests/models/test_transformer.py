"""The original Transformer: paper sizes, forward contract, masks, cache, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attnlab.models import PRESETS, build_model, get_config, list_models
from attnlab.models.transformer import Transformer, TransformerConfig
from attnlab.nn.position import POSITION

TINY = dict(vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0,
            max_seq_len=64)


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    return build_model("transformer-tiny", **{**TINY, **overrides}).eval()


def batch(B=3, S=7, T=5, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (B, S), generator=g)
    tgt = torch.randint(3, V, (B, T), generator=g)
    return src, tgt


@pytest.mark.parametrize(
    ("name", "paper_millions"), [("transformer-base", 65), ("transformer-big", 213)]
)
def test_paper_parameter_counts(name, paper_millions):
    # Count from the config without allocating the big model twice.
    with torch.device("meta"):
        model = build_model(name, vocab_size=37000)
    params = model.num_parameters() / 1e6
    assert abs(params - paper_millions) / paper_millions < 0.05, params


def test_paper_settings():
    c = get_config("transformer-base")
    assert (c.d_model, c.n_heads, c.n_layers, c.d_ff, c.dropout) == (512, 8, 6, 2048, 0.1)
    assert c.position == "sinusoidal" and not c.norm_first and c.tie_embeddings
    big = get_config("transformer-big")
    assert (big.d_model, big.n_heads, big.d_ff) == (1024, 16, 4096)


def test_tiny_preset_is_small():
    assert build_model("transformer-tiny").num_parameters() < 1_000_000


TRANSFORMER_PRESETS = [n for n in list_models() if PRESETS[n].model_class is Transformer]


@pytest.mark.parametrize("name", TRANSFORMER_PRESETS)
def test_every_preset_builds_and_runs_tiny(name):
    model = build_model(name, **TINY).eval()
    src, tgt = batch()
    out = model(src, tgt)
    assert out.logits.shape == (3, 5, 50)
    assert torch.isfinite(out.logits).all()


def test_embeddings_tied_and_scaled():
    model = tiny()
    assert model.lm_head.weight is model.embed_tokens.weight
    assert model.embed_scale == pytest.approx(32**0.5)
    assert sum(1 for _ in model.parameters()) == len(dict(model.named_parameters()))


def test_loss_from_labels_and_shift_right():
    model = tiny()
    src, tgt = batch()
    labels = tgt.clone()
    labels[0, -2:] = -100
    out = model(src, labels=labels)
    decoder_in = torch.cat([torch.full((3, 1), model.config.bos_token_id), labels[:, :-1]], 1)
    decoder_in = decoder_in.masked_fill(decoder_in == -100, model.config.pad_token_id)
    ref = model(src, decoder_in)
    expected = torch.nn.functional.cross_entropy(
        ref.logits.flatten(0, 1), labels.flatten(), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("family", ["transformer", "rnn", "convs2s"])
def test_label_smoothing_is_not_a_model_setting(family):
    """The loss with labels is plain cross-entropy; label smoothing belongs to the training run
    (the translation task computes it from the logits)."""
    config_class = PRESETS[list_models(family)[0]].model_class.config_class
    assert "label_smoothing" not in {f.name for f in dataclasses.fields(config_class)}
    with pytest.raises(TypeError, match="label_smoothing"):
        config_class(label_smoothing=0.1)


def test_decoder_is_causal():
    model = tiny()
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 3:] = 7
    a, b = model(src, tgt).logits, model(src, changed).logits
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_source_padding_invariance():
    model = tiny()
    src, tgt = batch(B=1)
    padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 4)], dim=1).long()
    torch.testing.assert_close(
        model(src, tgt).logits, model(padded, tgt, attention_mask=mask).logits,
        atol=1e-5, rtol=1e-5,
    )


def test_batch_equals_single_rows():
    model = tiny()
    src, tgt = batch(B=4)
    full = model(src, tgt).logits
    for row in range(4):
        torch.testing.assert_close(model(src[row:row + 1], tgt[row:row + 1]).logits,
                                   full[row:row + 1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", POSITION.names())
def test_incremental_decoding_matches_full(position):
    model = tiny(position=position)
    src, tgt = batch()
    full = model(src, tgt).logits
    memory = model.encode(src).last_hidden_state
    cache = model.new_cache()
    steps = []
    for t in range(tgt.size(1)):
        hidden = model.decode(tgt[:, t:t + 1], memory, cache=cache).last_hidden_state
        steps.append(model.lm_head(hidden))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)
    assert cache.length == tgt.size(1)
    assert cache.layers[0].cross_attn.key.shape == (3, 4, 7, 8)


@pytest.mark.parametrize("kernel", ["sdpa", "reference"])
def test_kernels_agree(kernel):
    src, tgt = batch()
    mask = torch.ones_like(src)
    mask[1, 5:] = 0
    ref = tiny(kernel="reference")(src, tgt, attention_mask=mask).logits
    out = tiny(kernel=kernel)(src, tgt, attention_mask=mask).logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_output_attentions_shapes():
    model = tiny()
    src, tgt = batch()
    out = model(src, tgt, output_attentions=True)
    assert len(out.encoder_attentions) == 2 and len(out.cross_attentions) == 2
    assert out.encoder_attentions[0].shape == (3, 4, 7, 7)
    assert out.decoder_attentions[0].shape == (3, 4, 5, 5)
    assert out.cross_attentions[0].shape == (3, 4, 5, 7)
    torch.testing.assert_close(out.cross_attentions[1].sum(-1), torch.ones(3, 4, 5))
    # Weights do not change the output.
    torch.testing.assert_close(out.logits, model(src, tgt).logits)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(norm_first=True, norm="rms", feedforward="swiglu", bias=False),
        dict(n_kv_heads=2, position="rope"),
        dict(attention="additive", position="learned"),
        dict(attention="multiplicative", position="alibi"),
        dict(position="relative", feedforward="geglu"),
        dict(attention="performer", attention_dropout=0.0),  # efficient variants with the
        dict(attention="linear", attention_dropout=0.0),  # causal + cross the decoder needs
    ],
)
def test_variants_train_one_step(overrides):
    model = tiny(**overrides).train()
    src, tgt = batch()
    loss = model(src, labels=tgt).loss
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_grads_reach_every_parameter():
    model = tiny().train()
    src, tgt = batch()
    model(src, labels=tgt).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # The padding row of the tied embedding gets no gradient by design; nothing else may miss.
    assert missing == [], missing


def test_overfits_a_small_batch():
    torch.manual_seed(0)
    model = tiny(dropout=0.0).train()
    src, tgt = batch(B=4, S=6, T=6)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = model(src, labels=tgt).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, s, t: m(s.float(), t), TypeError, "integer token ids"),
        (lambda m, s, t: m(s, t.float()), TypeError, "integer token ids"),
        (lambda m, s, t: m(s + 100, t), ValueError, "vocab_size=50"),
        (lambda m, s, t: m(s[0], t), ValueError, "shape"),
        (lambda m, s, t: m(torch.ones(1, 65, dtype=torch.long), t[:1]), ValueError,
         "exceeds max_seq_len=64"),
        (lambda m, s, t: m(s, t, attention_mask=torch.ones(3, 7)), TypeError, "attention_mask"),
        (lambda m, s, t: m(s), ValueError, "decoder_input_ids"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    model = tiny()
    src, tgt = batch()
    with pytest.raises(error, match=match):
        call(model, src, tgt)


def test_config_validation_and_immutability():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(KeyError, match="multi_head"):
        TransformerConfig(attention="nope")
    with pytest.raises(ValueError, match="longformer.*causal masking.*cross-attention"):
        TransformerConfig(attention="longformer")
    with pytest.raises(ValueError, match="attention_dropout=0.0, got 0.1"):
        TransformerConfig(attention="linear", attention_dropout=0.1)
    with pytest.raises(ValueError, match="unknown config field"):
        build_model("transformer-tiny", d_modle=8)
    with pytest.raises(KeyError, match="transformer-base"):
        build_model("transformer-huge")
    config = get_config("transformer-tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 8
    assert config.n_decoder_layers == config.n_layers
