"""T5 against Hugging Face `transformers` (random weights from configs, offline): v1.0 (ReLU,
tied, scaled head) and v1.1 (gated-GELU, unscaled), logits and loss with padding, attention
weights, cached decoding, greedy generation, folders both ways."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.interop.hf_folder import save_hf  # noqa: E402
from attnlab.interop.t5 import config_from_hf, state_dict_from_hf  # noqa: E402
from attnlab.models import build_model, get_config  # noqa: E402
from attnlab.models.t5 import T5, T5Config  # noqa: E402

TINY = dict(vocab_size=300, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=16, relative_attention_max_distance=20,
            dropout_rate=0.0, decoder_start_token_id=0)
REALISTIC = dict(TINY, vocab_size=3000, d_model=384, d_kv=64, d_ff=1536, num_layers=3,
                 num_heads=6, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128)
V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)


def hf_model(values: dict, seed: int = 0):
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**values))
    with torch.no_grad():  # norms away from 1 so a wrong norm wiring shows
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return hf.eval()


def ours_from(hf) -> T5:
    config = config_from_hf(hf.config.to_dict())
    model = T5(config).eval()
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), config), strict=False)
    return model


def batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (3, 40), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    mask[2, 5:] = 0
    labels = torch.randint(2, vocab, (3, 35), generator=g)
    labels[0, 20:] = -100
    return ids, mask, labels


@pytest.mark.parametrize("version", [{}, V1_1], ids=["v1.0", "v1.1"])
@pytest.mark.parametrize("values", [TINY, REALISTIC], ids=["tiny", "realistic"])
def test_logits_loss_and_encoder_states_with_padding(values, version):
    hf = hf_model({**values, **version})
    ours = ours_from(hf)
    assert ours.config.scale_decoder_outputs == (not version)
    ids, mask, labels = batch(values["vocab_size"])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(got.encoder_last_hidden_state[real],
                               expected.encoder_last_hidden_state[real], atol=1e-4, rtol=1e-4)


def test_decoder_padding_mask_and_attention_weights():
    values = dict(TINY)
    torch.manual_seed(3)
    hf_config = transformers.T5Config(**values)
    hf_config._attn_implementation = "eager"  # weights are only returned by the eager path
    hf = transformers.T5ForConditionalGeneration(hf_config).eval()
    ours = ours_from(hf)
    ids, mask, labels = batch(values["vocab_size"], seed=1)
    dec_ids = labels.clamp(min=0)
    dec_mask = torch.ones_like(dec_ids)
    dec_mask[2, 30:] = 0
    kwargs = dict(attention_mask=mask, decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask,
                  output_attentions=True)
    with torch.no_grad():
        expected = hf(input_ids=ids, **kwargs)
        got = ours(ids, **kwargs)
    real = dec_mask.bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-4, rtol=1e-4)
    for name in ("encoder_attentions", "cross_attentions"):
        assert len(getattr(got, name)) == len(getattr(expected, name)) == 2
        for a, b in zip(getattr(got, name), getattr(expected, name), strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a[:1], b[:1], atol=1e-5, rtol=1e-4)  # unpadded row


def test_cached_decoding_equals_full_pass():
    model = build_model("t5-tiny", dropout=0.0).eval()
    ids = torch.randint(2, 1000, (2, 9))
    dec = torch.randint(2, 1000, (2, 7))
    with torch.no_grad():
        full = model(ids, decoder_input_ids=dec).logits
        memory = model.encode(ids).last_hidden_state
        cache = model.new_cache()
        steps = [model.lm_head(model.decode(dec[:, t:t + 1], memory, cache=cache)
                               .last_hidden_state) for t in range(dec.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("version", [{}, V1_1], ids=["v1.0", "v1.1"])
def test_greedy_generation_matches_transformers(version):
    hf = hf_model({**TINY, **version}, seed=2)
    ours = ours_from(hf)
    ids, mask, _ = batch(TINY["vocab_size"], seed=2)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                               num_beams=1)
        got = ours.generate(ids, mask, max_new_tokens=12)
    assert got.tolist() == expected[:, 1:].tolist()  # HF keeps the start token


def test_folders_both_ways(tmp_path):
    hf = hf_model(TINY, seed=4)
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, T5) and ours.lm_head.weight is ours.embed_tokens.weight
    ids, mask, labels = batch(TINY["vocab_size"], seed=4)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, labels=labels).logits
        torch.testing.assert_close(ours(ids, attention_mask=mask, labels=labels).logits, expected,
                                   atol=1e-5, rtol=1e-5)
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                   expected, atol=1e-5, rtol=1e-5)


def test_untied_head_round_trips_and_loads_from_older_files(tmp_path):
    """v1.1 checkpoints from transformers 4 store a separate lm_head and tie_word_embeddings
    false (transformers 5 ties them always, so this direction is tested on our side)."""
    config = get_config("t5-tiny", tie_word_embeddings=False, feed_forward="gated-gelu")
    model = T5(config).eval()
    assert model.lm_head.weight is not model.embed_tokens.weight
    save_hf(model, tmp_path)
    back = attnlab.from_pretrained(tmp_path)
    assert not back.config.scale_decoder_outputs and not back.config.tie_word_embeddings
    ids = torch.randint(2, 1000, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(back(ids, decoder_input_ids=ids).logits,
                                   model(ids, decoder_input_ids=ids).logits)


def test_unsupported_settings_and_stray_weights_are_named():
    with pytest.raises(ValueError, match="feed_forward_proj 'gated-silu'"):
        config_from_hf({**TINY, "feed_forward_proj": "gated-silu"})
    config = config_from_hf(TINY)
    hf = hf_model(TINY).state_dict()
    hf["decoder.block.9.layer.0.SelfAttention.q.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"decoder\.block\.9"):
        state_dict_from_hf(hf, config)
    with pytest.raises(ValueError, match="feed_forward must be one of"):
        T5Config(feed_forward="swiglu")
