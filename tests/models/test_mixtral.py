"""Mixtral (models/mixtral.py): transformers' MixtralConfig defaults, the presets (the 8x7B one
only on the meta device), MoE settings given as a dict, and a short training run that moves
every expert that receives tokens."""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.models import build_model, get_config, list_models
from attnlab.models.mixtral import Mixtral, MixtralConfig


def test_defaults_are_transformers_mixtral_config():
    c = MixtralConfig()
    assert (c.vocab_size, c.d_model, c.d_ff, c.n_layers, c.n_heads, c.n_kv_heads) == \
        (32000, 4096, 14336, 32, 32, 8)
    assert (c.max_seq_len, c.rms_norm_eps, c.rope_theta, c.tie_embeddings) == \
        (131072, 1e-5, 1e6, False)
    m = c.moe
    assert (m.experts, m.top_k, m.aux_loss_coef, m.capacity_factor, m.router_jitter) == \
        (8, 2, 0.001, 0.0, 0.0)
    assert m.normalize_top_k and not m.router_noise and m.every == 1


def test_moe_dict_goes_over_mixtral_defaults_and_none_is_refused():
    c = MixtralConfig(n_heads=4, n_kv_heads=2, d_model=64, moe={"experts": 4})
    assert (c.moe.experts, c.moe.top_k, c.moe.aux_loss_coef) == (4, 2, 0.001)
    assert get_config("mixtral-tiny", moe={"top_k": 1}).moe.experts == 8
    with pytest.raises(ConfigError, match="moe"):
        MixtralConfig(moe=None)
    with pytest.raises(ConfigError, match="unknown moe setting"):
        MixtralConfig(moe={"expert": 4})


def test_presets():
    assert list_models("mixtral") == ["mixtral-8x7b", "mixtral-tiny"]
    assert build_model("mixtral-tiny").num_parameters() < 1_000_000
    with torch.device("meta"):  # 46.7B parameters: counted, never allocated
        big = Mixtral(get_config("mixtral-8x7b"))
    c = big.config
    total = big.num_parameters()
    idle = c.n_layers * (c.moe.experts - c.moe.top_k) * 3 * c.d_model * c.d_ff
    assert round(total / 1e9, 1) == 46.7  # the model card's figures
    assert round((total - idle) / 1e9, 1) == 12.9
    assert (c.max_seq_len, c.moe.aux_loss_coef) == (32768, 0.02)  # the hub config.json


def test_training_steps_move_routed_experts_and_lower_the_loss():
    torch.manual_seed(0)
    model = build_model("mixtral-tiny", vocab_size=50, moe={"experts": 4})
    ids = torch.randint(0, 50, (4, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(8):
        out = model(ids, labels=ids)
        optimizer.zero_grad()
        out.loss.backward()
        if first is None:
            first = out.loss.item()
            routed = [out.expert_load[i] > 0 for i in range(2)]
            for i, layer in enumerate(model.decoder.layers):
                grad = layer.feed_forward.experts.down_proj.grad  # (E, D, F)
                assert torch.equal(grad.flatten(1).abs().sum(1) > 0, routed[i])
                assert layer.feed_forward.router.weight.grad.abs().sum() > 0
        optimizer.step()
    assert out.loss.item() < first - 0.5
