"""Marian (OPUS-MT) against Hugging Face `transformers`' MarianMTModel (random weights from
configs, offline): the split sinusoidal table, logits and loss with padding, greedy and beam-4
generation token for token, folders both ways, and the settings attnlab refuses."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.errors import ConfigError, FolderError  # noqa: E402
from attnlab.io.hf import marian  # noqa: E402
from attnlab.models import build_model  # noqa: E402
from attnlab.models.transformer import Transformer, TransformerConfig  # noqa: E402
from attnlab.nn.position import POSITION  # noqa: E402

PAD, EOS = 99, 0
TINY = dict(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
            decoder_ffn_dim=64, activation_function="swish", max_position_embeddings=64,
            pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS, scale_embedding=True,
            dropout=0.0, forced_eos_token_id=None)  # attnlab's generate never forces EOS
REALISTIC = dict(TINY, vocab_size=1000, d_model=256, encoder_layers=3, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                 pad_token_id=999, decoder_start_token_id=999)


def hf_model(values: dict, seed: int = 0, std: float = 0.5, eos_bias: float = 0.0):
    """A MarianMTModel with weights N(0, std), norms away from 1 and a random
    final_logits_bias (zeros would hide a missing bias), EOS raised by `eos_bias`."""
    torch.manual_seed(seed)
    hf = transformers.MarianMTModel(transformers.MarianConfig(**values, init_std=std))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        hf.final_logits_bias.normal_(0.0, 0.1)
        hf.final_logits_bias[0, values["eos_token_id"]] += eos_bias
        for stack in (hf.model.encoder, hf.model.decoder):  # one matrix, as Marian trains it
            stack.embed_tokens.weight.copy_(hf.model.shared.weight)
    return hf.eval()


def loaded(hf, tmp_path) -> Transformer:
    hf.save_pretrained(tmp_path / "hf")
    return attnlab.from_pretrained(tmp_path / "hf")


def batch(values: dict, seed: int = 0):
    """Right-padded sources (rows of 12, 8 and 4 tokens), decoder inputs and labels."""
    g = torch.Generator().manual_seed(seed)
    pad, vocab = values["pad_token_id"], values["vocab_size"]
    ids = torch.randint(1, vocab - 1, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    labels = torch.randint(1, vocab - 1, (3, 9), generator=g)
    labels[0, 6:] = -100
    return ids.masked_fill(mask == 0, pad), mask, labels


@pytest.mark.parametrize("d_model", [32, 512])
def test_split_sinusoidal_table_is_marians(d_model):
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    expected = MarianSinusoidalPositionalEmbedding(64, d_model).create_weight()
    ours = POSITION.build("sinusoidal_split", d_model=d_model, n_heads=4, max_seq_len=64)
    torch.testing.assert_close(ours(torch.arange(64)), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(POSITION.build("sinusoidal", d_model=d_model, n_heads=4,
                                             max_seq_len=64)(torch.arange(64)), expected)


@pytest.mark.parametrize("values", [
    TINY, dict(TINY, activation_function="relu", scale_embedding=False),
    dict(TINY, activation_function="gelu", tie_word_embeddings=False), REALISTIC,
], ids=["swish", "relu-unscaled", "gelu-untied", "realistic"])
def test_logits_and_loss_with_padding(values, tmp_path):
    hf = hf_model(values, std=0.02 if values is REALISTIC else 0.5)
    ours = loaded(hf, tmp_path)
    assert isinstance(ours, Transformer) and ours.config.position == "sinusoidal_split"
    assert ours.config.bos_token_id == values["decoder_start_token_id"]  # the decoder start
    tied = values.get("tie_word_embeddings", True)
    assert (ours.lm_head.weight is ours.embed_tokens.weight) == tied
    ids, mask, labels = batch(values)
    dec_mask = torch.ones_like(labels)
    dec_mask[2, 7:] = 0
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(ids, attention_mask=mask, labels=labels)
        dec = labels.clamp(min=1)
        kwargs = dict(attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        expected_dec = hf(input_ids=ids, **kwargs).logits
        got_dec = ours(ids, **kwargs).logits
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    real = dec_mask.bool()
    torch.testing.assert_close(got_dec[real], expected_dec[real], atol=1e-4, rtol=1e-4)


def test_greedy_generation_matches_transformers(tmp_path):
    hf = hf_model(TINY, seed=0, eos_bias=5.0)
    ours = loaded(hf, tmp_path)
    ids, mask, _ = batch(TINY)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=15, do_sample=False,
                               num_beams=1)
        got = ours.generate(ids, mask, max_new_tokens=15)
    assert got.tolist() == expected[:, 1:].tolist()  # HF keeps the start token
    assert (got == EOS).any(dim=1).sum() >= 2 and (got != PAD).sum() > 6  # EOS at several steps


@pytest.mark.parametrize("eos_bias,std", [(3.0, 0.5), (0.0, 1.0)], ids=["eos", "full-length"])
def test_beam_search_matches_transformers(eos_bias, std, tmp_path):
    """Beam 4 with length_penalty 0: both rank by log P (transformers divides by |Y| ** alpha,
    attnlab by GNMT's ((5 + |Y|) / 6) ** alpha, equal only at alpha = 0)."""
    hf = hf_model(TINY, seed=0, std=std, eos_bias=eos_bias)
    ours = loaded(hf, tmp_path)
    ids, mask, _ = batch(TINY)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=15, do_sample=False,
                               num_beams=4, length_penalty=0.0)
        got = ours.generate(ids, mask, max_new_tokens=15, num_beams=4, length_penalty=0.0)
        greedy = ours.generate(ids, mask, max_new_tokens=15)
    assert got.tolist() == expected[:, 1:].tolist()
    assert got.tolist() != greedy.tolist()  # the beams found something greedy did not


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_our_folder_loads_in_transformers(tie, tmp_path):
    config = TransformerConfig(**marian.config_values_from_hf({**TINY, "tie_word_embeddings": tie}))
    torch.manual_seed(5)
    model = Transformer(config).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_()
    model.save_pretrained(tmp_path)  # "auto": a config Marian's layout holds is saved as Marian
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "marian"
    hf = transformers.MarianMTModel.from_pretrained(tmp_path).eval()
    ids, mask, labels = batch(TINY, seed=5)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask, labels=labels).logits
        torch.testing.assert_close(hf(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                   expected, atol=1e-5, rtol=1e-5)
        assert hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                           num_beams=1)[:, 1:].tolist() == model.generate(ids, mask,
                                                                          max_new_tokens=8).tolist()
    back = attnlab.from_pretrained(tmp_path)
    assert back.config == config


def test_refused_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="share_encoder_decoder_embeddings=false"):
        marian.config_values_from_hf({**TINY, "share_encoder_decoder_embeddings": False})
    with pytest.raises(ValueError, match="activation_function 'tanh' is not implemented"):
        marian.config_values_from_hf({**TINY, "activation_function": "tanh"})
    with pytest.raises(ValueError, match="encoder_ffn_dim=64 differs from decoder_ffn_dim=32"):
        marian.config_values_from_hf({**TINY, "decoder_ffn_dim": 32})
    untied = hf_model(dict(TINY, tie_word_embeddings=False))
    with torch.no_grad():
        untied.model.decoder.embed_tokens.weight.add_(1.0)
    untied.save_pretrained(tmp_path / "untied")
    with pytest.raises(FolderError, match="model.decoder.embed_tokens.weight differs"):
        attnlab.from_pretrained(tmp_path / "untied")
    hf = hf_model(TINY)
    hf.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "activation_function": "tanh"}))
    with pytest.raises(FolderError, match="activation_function 'tanh'"):
        attnlab.from_pretrained(tmp_path / "hf")
    # The paper's Transformer (interleaved sin/cos) keeps attnlab's layout, and refuses Marian's.
    model = build_model("transformer-tiny")
    model.save_pretrained(tmp_path / "native")
    assert "attnlab_version" in json.loads((tmp_path / "native" / "config.json").read_text())
    with pytest.raises(ConfigError, match="'position': 'sinusoidal'"):
        model.save_pretrained(tmp_path / "t", layout="hf")


@pytest.mark.parametrize(("eos_bias", "std", "alpha"),
                         [(3.0, 0.5, 1.0), (2.0, 0.5, 0.6), (0.0, 1.0, 1.0), (4.0, 0.5, 2.0)],
                         ids=["eos", "alpha-0.6", "full-length", "alpha-2"])
def test_beam_search_with_hugging_face_rules_matches_transformers(eos_bias, std, alpha,
                                                                  tmp_path):
    """With transformers' rules (log P / |Y| ** alpha, EOS forced at the last step, pad never
    generated) beam 4 gives MarianMTModel.generate's output for any alpha; GNMT's penalty
    gives another one, so the test can fail."""
    from attnlab.generation.beam import beam_search

    hf = hf_model(TINY, seed=0, std=std, eos_bias=eos_bias)
    ours = loaded(hf, tmp_path)
    ids, mask, _ = batch(TINY)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                               num_beams=4, length_penalty=alpha, forced_eos_token_id=EOS,
                               bad_words_ids=[[PAD]], early_stopping=False)[:, 1:]
        got = beam_search(ours, ids, mask, beam_size=4, length_penalty=alpha, max_new_tokens=12,
                          length_penalty_form="power", force_eos_at_limit=True,
                          suppress_ids=(PAD,)).sequences
        gnmt = beam_search(ours, ids, mask, beam_size=4, length_penalty=alpha,
                           max_new_tokens=12).sequences
    assert got.tolist() == expected.tolist()
    assert gnmt.tolist() != expected.tolist()


def test_hugging_face_beam_rules_come_from_the_folder(tmp_path):
    from attnlab.io import hugging_face_beam_rules

    hf = hf_model(TINY)
    hf.generation_config.forced_eos_token_id = EOS
    hf.generation_config.bad_words_ids = [[PAD]]
    hf.generation_config.num_beams, hf.generation_config.length_penalty = 4, 0.8
    hf.save_pretrained(tmp_path / "hf")
    assert hugging_face_beam_rules(tmp_path / "hf") == {
        "length_penalty_form": "power", "length_penalty": 0.8, "force_eos_at_limit": True,
        "suppress_ids": (PAD,)}
    from attnlab.models import build_model

    build_model("transformer-tiny").save_pretrained(tmp_path / "ours")
    assert hugging_face_beam_rules(tmp_path / "ours") == {}  # attnlab's layout ranks by GNMT
