"""Mixture of experts in the GPT, LLaMA and T5 families (`moe` in their configs): one expert
equals the dense model, the loss adds the weighted load-balancing and z-losses, padding stays
out of the balance, capacity drops are reported, the KV cache routes as the full forward, each
family's init reaches the experts, and folders keep `moe` (attnlab's layout: transformers'
GPT-2 / LLaMA / T5 have no experts). Dense models keep every MoE field None."""

from __future__ import annotations

import json
import math

import pytest
import torch

import attnlab
from attnlab.errors import ConfigError
from attnlab.models import build_model
from attnlab.nn.moe import load_balancing_loss, router_z_loss

FAMILIES = ["gpt2-tiny", "llama-tiny", "t5-tiny"]


def run(model, ids, mask=None, labels=None):
    if model.model_kind == "encoder-decoder":
        return model(ids, ids, attention_mask=mask, decoder_attention_mask=mask, labels=labels)
    return model(ids, attention_mask=mask, labels=labels)


def moe_state_from_dense(dense: dict, moe: dict) -> dict:
    """A one-expert model's weights from a dense model's: each FFN weight becomes expert 0."""
    state = {}
    for name in moe:
        if ".feed_forward.experts." not in name:
            state[name] = dense[name] if ".router." not in name else moe[name]
            continue
        prefix, kind = name.split(".experts.")
        dense_name = {"up_bias": "up_proj.bias", "down_bias": "down_proj.bias"}.get(
            kind, f"{kind}.weight")
        state[name] = dense[f"{prefix}.{dense_name}"].unsqueeze(0)
    return state


@pytest.mark.parametrize("preset", FAMILIES)
def test_dense_models_leave_the_moe_fields_empty(preset):
    ids = torch.randint(3, 100, (2, 7))
    out = run(build_model(preset).eval(), ids, labels=ids)
    assert out.lm_loss is out.loss
    assert all(getattr(out, name) is None for name in (
        "aux_loss", "z_loss", "router_logits", "expert_load", "dropped_fraction"))


@pytest.mark.parametrize("preset", FAMILIES)
def test_one_expert_equals_the_dense_model(preset):
    torch.manual_seed(0)
    dense = build_model(preset).eval()
    moe = build_model(preset, moe={"experts": 1, "top_k": 1}).eval()
    moe.load_state_dict(moe_state_from_dense(dense.state_dict(), moe.state_dict()))
    ids = torch.randint(3, 1000, (2, 9))
    with torch.no_grad():
        want, got = run(dense, ids, labels=ids), run(moe, ids, labels=ids)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.lm_loss, want.loss)
    stacks = 2 if preset == "t5-tiny" else 1  # E * sum f_i P_i = 1 per stack with E = 1
    torch.testing.assert_close(got.aux_loss, torch.tensor(float(stacks)))


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_loss_adds_the_weighted_terms_of_the_moe_layers(preset):
    torch.manual_seed(0)
    model = build_model(preset, n_layers=4,
                        moe={"experts": 4, "top_k": 2, "z_loss_coef": 1e-3, "every": 2}).eval()
    ids = torch.randint(3, 1000, (2, 9))
    out = model(ids, labels=ids)
    assert len(out.router_logits) == 2 and out.router_logits[0].shape == (18, 4)  # layers 1, 3
    aux = load_balancing_loss(out.router_logits, 4, 2)
    z = (router_z_loss(out.router_logits[0]) + router_z_loss(out.router_logits[1])) / 2
    torch.testing.assert_close(out.aux_loss, aux)
    torch.testing.assert_close(out.z_loss, z)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.01 * aux + 1e-3 * z)
    assert out.expert_load.shape == (2, 4)
    torch.testing.assert_close(out.expert_load.sum(-1), torch.ones(2))
    assert out.dropped_fraction == 0


def test_capacity_drops_are_reported():
    torch.manual_seed(0)
    model = build_model("gpt2-tiny", moe={"experts": 4, "top_k": 1, "capacity_factor": 0.5})
    ids = torch.randint(3, 1000, (4, 16))
    out = model.eval()(ids)
    capacity = math.ceil(0.5 * 64 / 4)
    kept = sum(torch.bincount(logits.argmax(-1), minlength=4).clamp(max=capacity).sum()
               for logits in out.router_logits)
    assert out.dropped_fraction.item() == pytest.approx(1 - kept.item() / (2 * 64))
    assert out.dropped_fraction > 0.4  # at most half the tokens fit


@pytest.mark.parametrize("preset", ["llama-tiny", "t5-tiny"])
def test_padding_stays_out_of_the_load_balancing_loss(preset):
    torch.manual_seed(0)
    model = build_model(preset, moe={"experts": 4, "top_k": 1}).eval()
    ids = torch.randint(3, 1000, (3, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    out = run(model, ids, mask, labels=ids)
    stacks = [out.router_logits[:2], out.router_logits[2:]] if preset == "t5-tiny" \
        else [out.router_logits]
    expected = sum(load_balancing_loss(list(logits), 4, 1, mask) for logits in stacks)
    torch.testing.assert_close(out.aux_loss, expected)
    assert (out.aux_loss - sum(load_balancing_loss(list(g), 4, 1) for g in stacks)).abs() > 1e-4


@pytest.mark.parametrize("preset", ["gpt2-tiny", "mixtral-tiny"])
def test_cached_decoding_routes_as_the_full_forward(preset):
    torch.manual_seed(0)
    model = build_model(preset, moe={"experts": 4, "top_k": 2}).eval()
    ids = torch.randint(3, 1000, (2, 10))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        cache = model.new_cache()
        model(ids[:, :6], attention_mask=mask[:, :6], cache=cache)
        step = model(ids[:, 6:], attention_mask=mask, cache=cache)
    torch.testing.assert_close(step.logits, full.logits[:, 6:], rtol=1e-4, atol=1e-4)
    tail = torch.cat([r.view(2, 10, 4)[:, 6:].reshape(-1, 4) for r in full.router_logits])
    torch.testing.assert_close(torch.cat(step.router_logits), tail, rtol=1e-4, atol=1e-4)
    assert step.aux_loss is not None


def test_t5_switch_routes_both_stacks_and_generates():
    torch.manual_seed(0)
    model = build_model("t5-tiny", n_layers=4, moe={"experts": 4, "top_k": 1, "every": 2,
                                                    "capacity_factor": 1.25}).eval()
    ids = torch.randint(3, 1000, (2, 9))
    out = model(ids, labels=ids[:, :5])
    assert len(out.router_logits) == 4  # encoder layers 1, 3; decoder layers 1, 3
    assert [r.size(0) for r in out.router_logits] == [18, 18, 10, 10]
    enc = load_balancing_loss(out.router_logits[:2], 4, 1)
    dec = load_balancing_loss(out.router_logits[2:], 4, 1)
    torch.testing.assert_close(out.aux_loss, enc + dec)
    torch.testing.assert_close(out.loss, out.lm_loss + 0.01 * (enc + dec))
    assert model.generate(ids, max_new_tokens=4).shape[0] == 2


def test_each_family_init_reaches_the_experts():
    torch.manual_seed(0)
    moe = {"experts": 8, "top_k": 1}
    gpt = build_model("gpt2-tiny", moe=moe).decoder.layers[0].feed_forward
    residual = 0.02 / math.sqrt(2 * 2)
    assert gpt.experts.down_proj.std().item() == pytest.approx(residual, rel=0.03)
    assert gpt.experts.up_proj.std().item() == pytest.approx(0.02, rel=0.03)
    assert gpt.router.weight.std().item() == pytest.approx(0.02, rel=0.15)
    llama = build_model("llama-tiny", moe=moe, init_std=0.05).decoder.layers[0].feed_forward
    for weight in (llama.experts.gate_proj, llama.experts.down_proj, llama.router.weight):
        assert weight.std().item() == pytest.approx(0.05, rel=0.15)
    t5 = build_model("t5-tiny", moe=moe).encoder.layers[0].feed_forward  # d 64, d_ff 128
    assert t5.experts.up_proj.std().item() == pytest.approx(64**-0.5, rel=0.03)
    assert t5.experts.down_proj.std().item() == pytest.approx(128**-0.5, rel=0.03)


@pytest.mark.parametrize("preset", FAMILIES)
def test_folders_keep_moe_in_attnlab_layout(tmp_path, preset):
    torch.manual_seed(0)
    model = build_model(preset, moe={"experts": 4, "top_k": 1, "capacity_factor": 1.25})
    model.save_pretrained(tmp_path / "auto")
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert "attnlab_version" in config and config["moe"]["capacity_factor"] == 1.25
    back = attnlab.from_pretrained(tmp_path / "auto")
    assert back.config == model.config
    ids = torch.randint(3, 1000, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(run(back, ids).logits, run(model.eval(), ids).logits)
    with pytest.raises(ConfigError, match="no mixture-of-experts layers"):
        model.save_pretrained(tmp_path / "hf", layout="hf")
