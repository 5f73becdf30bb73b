"""Mamba against Hugging Face `transformers` (MambaForCausalLM built from configs with random
weights, never downloaded): logits in both scan forms (tiny, with biases and an untied head, and
mamba-130m's width and state), left padding through the attention mask, greedy generation
token for token with left padding, weights one to one, folders both ways, unsupported options
named."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.io.hf.mamba import (  # noqa: E402
    config_to_hf,
    config_values_from_hf,
    state_dict_from_hf,
    state_dict_to_hf,
)
from attnlab.models.mamba import Mamba, MambaConfig  # noqa: E402

TINY = dict(vocab_size=300, hidden_size=64, state_size=8, num_hidden_layers=2, conv_kernel=4,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
# mamba-130m's width, state and conv (d=768, N=16, E=1536, dt_rank 48) with 2 of its 24 layers
# and 2,000 of its 50,280 tokens, to keep the test to seconds
REALISTIC = dict(TINY, vocab_size=2000, hidden_size=768, state_size=16, num_hidden_layers=2)


def hf_model(**values):
    torch.manual_seed(0)
    model = transformers.MambaForCausalLM(transformers.MambaConfig(**{**TINY, **values}))
    with torch.no_grad():  # non-trivial norms, skips and biases
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith((".D", "bias")):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def ours_from(hf, form: str = "recurrent") -> Mamba:
    config = MambaConfig(**config_values_from_hf(hf.config.to_dict()), form=form, chunk_size=4)
    model = Mamba(config).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_hf(hf.state_dict(), config),
                                                strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return model


@pytest.mark.parametrize("values", [
    {}, {"use_bias": True, "use_conv_bias": False, "tie_word_embeddings": False},
    {"time_step_rank": 5, "expand": 3, "conv_kernel": 2}, REALISTIC,
], ids=["tiny", "biases-untied", "rank-expand-kernel", "130m-width"])
@pytest.mark.parametrize("form", ["recurrent", "chunkwise"])
def test_logits_match(values, form):
    hf = hf_model(**values)
    ours = ours_from(hf, form)
    ids = torch.randint(3, hf.config.vocab_size, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("form", ["recurrent", "chunkwise"])
def test_logits_match_with_left_padding(form):
    hf = hf_model()
    ours = ours_from(hf, form)
    ids = torch.randint(3, 300, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    mask[2, :11] = 0
    with torch.no_grad():
        expected, got = hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
        alone = ours(ids[1:2, 5:]).logits  # the padded row without its padding
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1:2, 5:], alone, atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_with_left_padding():
    hf = hf_model(initializer_range=0.5)  # wider weights: varied tokens, not one repeated
    ours = ours_from(hf)
    torch.manual_seed(4)
    ids = torch.randint(3, 300, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids = ids.masked_fill(mask == 0, 0)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                           pad_token_id=0, eos_token_id=2)
    got = ours.generate(ids, mask, max_new_tokens=12, eos_token_id=2, pad_token_id=0)
    assert torch.equal(got, expected)
    assert len(set(got[:, 7:].flatten().tolist())) > 12


def test_weights_and_config_map_one_to_one_both_ways():
    hf = hf_model(use_bias=True, tie_word_embeddings=False)
    ours = ours_from(hf)
    back = state_dict_to_hf(ours)
    assert set(back) == set(hf.state_dict())
    for name, tensor in hf.state_dict().items():
        torch.testing.assert_close(back[name], tensor, atol=0, rtol=0, msg=name)
    values = config_to_hf(ours.config)
    again = transformers.MambaConfig(**{k: v for k, v in values.items() if k != "model_type"})
    assert config_values_from_hf(again.to_dict()) == config_values_from_hf(hf.config.to_dict())


@pytest.mark.parametrize("tied", [True, False])
def test_hf_folders_both_ways(tmp_path, tied):
    hf = hf_model(tie_word_embeddings=tied)
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, Mamba) and ours.config.tie_embeddings == tied
    ours.save_pretrained(tmp_path / "ours")  # auto: Hugging Face's layout
    back = transformers.MambaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        expected = hf(ids).logits
        torch.testing.assert_close(ours(ids).logits, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back(ids).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "gelu"}, "hidden_act must be silu, got 'gelu'"),
    ({"expand": 1.5}, "expand must be an integer, got 1.5"),
    ({"intermediate_size": 100}, r"intermediate_size 100 != expand \* hidden_size"),
    ({"time_step_rank": "big"}, "time_step_rank must be 'auto' or an integer"),
    ({"eos_token_id": [2, 3]}, r"eos_token_id=\[2, 3\]: only one id is supported"),
    ({"model_type": "mamba2"}, "model_type must be 'mamba', got 'mamba2'"),
])
def test_unsupported_options_are_named(change, message):
    values = {**hf_model().config.to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        config_values_from_hf(values)
