"""Mixtral against Hugging Face `transformers` (MixtralForCausalLM from a config with random
weights, offline): logits, router logits, load-balancing loss and total loss with and without
padding, greedy generation token by token, folders both ways, the fused layout of transformers 5,
and the configs transformers' Mixtral cannot hold."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.errors import ConfigError  # noqa: E402
from attnlab.io.hf import mixtral as layout  # noqa: E402
from attnlab.models import build_model  # noqa: E402
from attnlab.models.mixtral import Mixtral, MixtralConfig  # noqa: E402

TINY = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_attention_heads=4,
            num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=128,
            num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.02,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_model(**values) -> transformers.MixtralForCausalLM:
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(
        transformers.MixtralConfig(**{**TINY, **values})).eval()
    with torch.no_grad():  # non-trivial norms, and routers that prefer some experts
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            if name.endswith("gate.weight"):
                p.mul_(20)
    return model


def ours_from(hf) -> Mixtral:
    config = MixtralConfig(**layout.config_values_from_hf(hf.config.to_dict()))
    model = Mixtral(config).eval()
    model.load_state_dict(layout.state_dict_from_hf(hf.state_dict(), config))
    return model


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 8:] = 0  # right padding
    return ids.masked_fill(mask == 0, 0), mask


def test_config_values_both_ways():
    hf = hf_model(router_jitter_noise=0.1, rope_parameters={"rope_type": "default",
                                                             "rope_theta": 5e5})
    config = MixtralConfig(**layout.config_values_from_hf(hf.config.to_dict()))
    assert (config.moe.experts, config.moe.top_k, config.moe.aux_loss_coef,
            config.moe.router_jitter) == (4, 2, 0.02, 0.1)
    assert (config.n_kv_heads, config.d_ff, config.rope_theta) == (2, 96, 5e5)
    again = transformers.MixtralConfig(**layout.config_to_hf(config))
    for name in ("num_local_experts", "num_experts_per_tok", "router_aux_loss_coef",
                 "router_jitter_noise", "intermediate_size", "num_key_value_heads",
                 "rms_norm_eps", "sliding_window"):
        assert getattr(again, name) == getattr(hf.config, name), name
    assert again.rope_parameters["rope_theta"] == 5e5


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_logits_router_logits_and_losses_match(padded):
    hf = hf_model()
    ours = ours_from(hf)
    ids, mask = padded_batch()
    mask = mask if padded else None
    labels = ids if mask is None else ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, labels=labels, output_router_logits=True)
        got = ours(ids, attention_mask=mask, labels=labels)
    real = slice(None) if mask is None else mask.bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-4, rtol=1e-4)
    assert len(got.router_logits) == len(expected.router_logits) == 2
    for a, b in zip(got.router_logits, expected.router_logits, strict=True):
        torch.testing.assert_close(a, b.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.aux_loss, expected.aux_loss, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-4, rtol=1e-4)
    assert got.loss - got.lm_loss == pytest.approx(0.02 * got.aux_loss.item(), abs=1e-6)
    assert got.aux_loss > 1.05  # the scaled routers are unbalanced: the loss measures it


def test_greedy_generation_token_exact():
    hf = hf_model()
    ours = ours_from(hf)
    ids, mask = padded_batch()
    ids, mask = ids[:2, :8], mask[:2, :8]  # left padding only, as generation expects
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                           pad_token_id=0, eos_token_id=2)
    got = ours.generate(ids, mask, max_new_tokens=12, eos_token_id=2, pad_token_id=0)
    assert torch.equal(got, expected)


def test_folders_both_ways(tmp_path):
    hf = hf_model()
    hf.save_pretrained(tmp_path / "hf")
    ours = attnlab.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, Mixtral) and ours.config.moe.experts == 4
    ours.save_pretrained(tmp_path / "ours")  # auto: the HF layout, per-expert names
    names = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert names["model_type"] == "mixtral" and "attnlab_version" not in names
    back = transformers.MixtralForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, attention_mask=mask).logits, expected,
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back(ids, attention_mask=mask).logits, expected,
                                   atol=1e-4, rtol=1e-4)


def test_hub_and_fused_layouts_read_the_same():
    hf = hf_model()
    ours = ours_from(hf)  # from transformers 5's fused state dict
    hub = layout.state_dict_to_hf(ours)
    assert "model.layers.1.block_sparse_moe.experts.3.w2.weight" in hub
    assert not any(".mlp." in name for name in hub)
    again = layout.state_dict_from_hf(hub, ours.config)
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="expert weights missing"):
        layout.state_dict_from_hf(
            {k: v for k, v in hub.items() if "experts.2.w1" not in k}, ours.config)
    with pytest.raises(ValueError, match="unexpected Mixtral weights"):
        layout.state_dict_from_hf({**hub, "model.layers.0.block_sparse_moe.experts.9.w1.weight":
                                   hub["model.layers.0.block_sparse_moe.experts.0.w1.weight"]},
                                  ours.config)


@pytest.mark.parametrize("moe", [{"capacity_factor": 1.25}, {"top_k": 1}, {"z_loss_coef": 1e-3},
                                 {"every": 2}, {"normalize_top_k": False}])
def test_configs_transformers_cannot_hold_save_in_attnlab_layout(tmp_path, moe):
    model = build_model("mixtral-tiny", moe=moe)
    model.save_pretrained(tmp_path / "auto")
    assert "attnlab_version" in json.loads((tmp_path / "auto" / "config.json").read_text())
    assert attnlab.from_pretrained(tmp_path / "auto").config == model.config
    with pytest.raises(ConfigError, match="no Hugging Face layout for model_type 'mixtral'"):
        model.save_pretrained(tmp_path / "hf", layout="hf")


def test_single_expert_per_token_folders_are_refused():
    values = hf_model(num_experts_per_tok=1).config.to_dict()
    with pytest.raises(ValueError, match="num_experts_per_tok=1"):
        layout.config_values_from_hf(values)
