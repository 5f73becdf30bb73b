"""RWKV-4 against Hugging Face `transformers` (RwkvForCausalLM from configs, random weights,
offline): logits (tiny, rwkv-169m's width, rescale_every crossing layers, a narrower attention),
greedy generation token for token (transformers one row at a time: see below), folders both
ways. transformers' RWKV ignores the attention mask, so padding is checked ours against ours:
a left-padded row equals the row alone."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.io.hf.rwkv import (  # noqa: E402
    config_values_from_hf,
    state_dict_from_hf,
    state_dict_to_hf,
)
from attnlab.models.rwkv import Rwkv, RwkvConfig  # noqa: E402

TINY = dict(vocab_size=300, hidden_size=64, intermediate_size=172, num_hidden_layers=3,
            context_length=128, rescale_every=2, bos_token_id=0, eos_token_id=0)
# rwkv-169m's width (d=768, d_ff=3072, rescale every 6) with 2 of its 12 layers and 2,000 of its
# 50,277 tokens, to keep the test to seconds
REALISTIC = dict(TINY, vocab_size=2000, hidden_size=768, intermediate_size=3072,
                 num_hidden_layers=2, rescale_every=6)


def hf_model(**values):
    """An HF RWKV with random weights, and its state dict taken before any eval-mode forward
    (transformers divides the output weights in place on its first one)."""
    torch.manual_seed(0)
    model = transformers.RwkvForCausalLM(transformers.RwkvConfig(**{**TINY, **values}))
    with torch.no_grad():  # non-trivial norms, decays, bonuses, shift mixes; embeddings that
        # matter (transformers starts them at 1e-4, which pre_ln nearly erases)
        for name, p in model.named_parameters():
            if "ln" in name or "time_" in name or "embeddings" in name:
                p.add_(0.2 * torch.randn_like(p))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return model.eval(), state


def ours_from(hf, state) -> Rwkv:
    config = RwkvConfig(**config_values_from_hf(hf.config.to_dict()))
    model = Rwkv(config).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_hf(state, config), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return model


@pytest.mark.parametrize("values, use_cache", [
    ({}, True), (REALISTIC, True), ({"tie_word_embeddings": True}, True),
    ({"rescale_every": 1}, True), ({"attention_hidden_size": 48}, False),
], ids=["tiny", "169m-width", "tied", "rescale-every-layer", "narrow-attention"])
def test_logits_match(values, use_cache):
    hf, state = hf_model(**values)
    ours = ours_from(hf, state)
    ids = torch.randint(1, hf.config.vocab_size, (2, 21))
    with torch.no_grad():  # transformers' cached path assumes attention width == hidden size
        expected = hf(ids, use_cache=use_cache).logits
        torch.testing.assert_close(ours(ids).logits, expected, atol=1e-4, rtol=1e-4)
        ours.train()  # no rescaling in training mode: the same logits up to the norms' eps
        torch.testing.assert_close(ours(ids).logits, expected, atol=1e-3, rtol=1e-3)


def test_weights_map_one_to_one_both_ways():
    hf, state = hf_model()
    ours = ours_from(hf, state)
    back = state_dict_to_hf(ours)
    assert set(back) == set(state)
    for name, tensor in state.items():
        torch.testing.assert_close(back[name], tensor, atol=0, rtol=0, msg=name)


def test_greedy_generation_matches():
    """transformers' cached one-token step broadcasts the stored (B, D) shifted token against
    the (B, 1, D) input, mixing rows when B > 1 (transformers 5.25), so its reference is
    generated one row at a time; ours runs the batch."""
    hf, state = hf_model()
    ours = ours_from(hf, state)
    torch.manual_seed(4)
    ids = torch.randint(1, 300, (2, 6))
    expected = torch.cat([hf.generate(row, max_new_tokens=12, do_sample=False, eos_token_id=0,
                                      pad_token_id=0) for row in ids.split(1)])
    got = ours.generate(ids, max_new_tokens=12, eos_token_id=0, pad_token_id=0)
    assert len(set(expected[:, 6:].flatten().tolist())) > 6  # a model whose tokens vary
    assert torch.equal(got, expected)


def test_left_padding_equals_each_row_alone():
    hf, state = hf_model()
    ours = ours_from(hf, state)
    torch.manual_seed(5)
    ids = torch.randint(1, 300, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ids = ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        padded = ours(ids, attention_mask=mask).logits
        alone = ours(ids[1:, 4:]).logits
    torch.testing.assert_close(padded[1, 4:], alone[0], atol=1e-5, rtol=1e-5)
    got = ours.generate(ids, mask, max_new_tokens=8, eos_token_id=None, pad_token_id=0)
    row = ours.generate(ids[1:, 4:], max_new_tokens=8, eos_token_id=None)
    assert torch.equal(got[1, 4:], row[0])


def test_hf_folders_both_ways(tmp_path):
    hf, state = hf_model()
    hf_copy = transformers.RwkvForCausalLM(hf.config)
    hf_copy.load_state_dict(state)  # unrescaled weights, as a trained model holds them
    hf_copy.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, Rwkv) and ours.config.rescale_every == 2
    ours.save_pretrained(tmp_path / "ours")  # auto: the Hugging Face layout
    back = transformers.RwkvForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(1, 300, (1, 11))
    with torch.no_grad():
        expected = hf(ids).logits
        torch.testing.assert_close(ours(ids).logits, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back(ids).logits, expected, atol=1e-4, rtol=1e-4)


def test_unsupported_settings_are_named():
    with pytest.raises(ValueError, match="eos_token_id must be one token id"):
        config_values_from_hf({**TINY, "eos_token_id": [0, 1]})
    with pytest.raises(ValueError, match="model_type must be 'rwkv'"):
        config_values_from_hf({**TINY, "model_type": "mamba"})
    with pytest.raises(ValueError, match="rescale_every must be an integer"):
        config_values_from_hf({**TINY, "rescale_every": 1.5})
    assert config_values_from_hf({**TINY, "rescale_every": -1})["rescale_every"] == 0
