"""Mixtral <-> Hugging Face `transformers` (MixtralForCausalLM; Jiang et al. 2024): config
fields and weight names, onto our Mixtral family (`models/mixtral.py`).

Everything but the feed-forward is LLaMA's (`llama.py`). Each layer's mixture of experts is
stored in one of two layouts, both read:

- the hub's (what transformers 4.x and 5.x, vLLM and llama.cpp's converter read, and what
  transformers 5 itself writes back): `model.layers.N.block_sparse_moe.gate.weight` (E, D) and
  per expert M `block_sparse_moe.experts.M.w1.weight` (gate, F x D), `w3` (up, F x D), `w2`
  (down, D x F);
- transformers 5's fused modules: `model.layers.N.mlp.gate.weight` (E, D),
  `mlp.experts.gate_up_proj` (E, 2F, D, gate rows first) and `mlp.experts.down_proj` (E, D, F).

We write the hub's layout; our router / experts hold (E, D), (E, F, D) and (E, D, F) tensors.
A transformers Mixtral always renormalises its top-k probabilities, never drops a token and has
no router z-loss or noisy gating, so a Mixtral config with any of those (or top_k 1, whose
weight transformers makes 1) is `unsupported` here and saved in attnlab's layout. HF's
`router_jitter_noise` maps to `moe.router_jitter`; transformers multiplies the hidden states
that reach the experts too, we only the router's input (training only; inference is the same).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.io.hf import renamed_from_hf, renamed_to_hf
from attnlab.io.hf.llama import attention_pairs, decoder_values
from attnlab.io.hf.llama import config_to_hf as llama_config_to_hf

MODEL_TYPE = "mixtral"  # the attnlab family these Hugging Face names map onto

# transformers' MixtralConfig defaults, for keys a config.json leaves out.
HF_DEFAULTS = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
               "max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-5,
               "rope_theta": 1e6, "num_local_experts": 8, "num_experts_per_tok": 2,
               "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0}
HUB_EXPERT = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}  # ours -> hub name


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our Mixtral config values from an HF mixtral `config.json`; unsupported options raise."""
    if hf.get("model_type", MODEL_TYPE) != MODEL_TYPE:
        raise ValueError(f"model_type must be 'mixtral', got {hf.get('model_type')!r}")
    hf = {**HF_DEFAULTS, **hf}
    if hf["num_experts_per_tok"] < 2:
        raise ValueError(f"num_experts_per_tok={hf['num_experts_per_tok']}: transformers "
                         "gives a single expert the weight 1, attnlab its probability; only "
                         "top-k >= 2 is mapped")
    values = decoder_values(hf)
    values["moe"] = dict(experts=hf["num_local_experts"], top_k=hf["num_experts_per_tok"],
                         aux_loss_coef=hf["router_aux_loss_coef"],
                         router_jitter=hf["router_jitter_noise"])
    return values


def unsupported(c: Any) -> str | None:
    """Why transformers' Mixtral cannot hold this config (None when it can)."""
    m = c.moe
    if m is None:
        return "a Mixtral without moe"
    wrong = {name: getattr(m, name) for name, ok in (
        ("capacity_factor", m.capacity_factor == 0), ("top_k", m.top_k >= 2),
        ("normalize_top_k", m.normalize_top_k), ("router_noise", not m.router_noise),
        ("z_loss_coef", m.z_loss_coef == 0), ("every", m.every == 1)) if not ok}
    if c.attention_bias:
        wrong["attention_bias"] = True
    if not wrong:
        return None
    return ("transformers' Mixtral routes every layer's tokens to top-k >= 2 renormalised "
            f"experts without capacity, noise, z-loss or attention biases; got {wrong}")


def config_to_hf(c: Any) -> dict[str, Any]:
    problem = unsupported(c)
    if problem is not None:
        raise ConfigError(f"no Hugging Face layout for model_type 'mixtral' with this config: "
                          f"{problem}")
    hf = llama_config_to_hf(c)
    del hf["attention_bias"]
    hf.update({"model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
               "num_local_experts": c.moe.experts, "num_experts_per_tok": c.moe.top_k,
               "router_aux_loss_coef": c.moe.aux_loss_coef,
               "router_jitter_noise": c.moe.router_jitter, "sliding_window": None,
               "output_router_logits": False})
    return hf


def _hub_names(config: Any, i: int) -> dict[str, list[str]]:
    """Our expert weight name -> the E hub names it stacks, for layer i."""
    hub = f"model.layers.{i}.block_sparse_moe.experts."
    return {f"decoder.layers.{i}.feed_forward.experts.{ours}":
            [f"{hub}{e}.{w}.weight" for e in range(config.moe.experts)]
            for ours, w in HUB_EXPERT.items()}


def _experts_from_hf(hf: dict[str, Tensor], config: Any, i: int) -> dict[str, Tensor]:
    """Layer i's (E, F, D) / (E, D, F) expert tensors from either layout."""
    ours = f"decoder.layers.{i}.feed_forward.experts."
    fused = f"model.layers.{i}.mlp.experts."
    found: dict[str, Tensor] = {}
    if fused + "gate_up_proj" in hf:
        gate_up = hf[fused + "gate_up_proj"]  # (E, 2F, D)
        half = gate_up.size(1) // 2
        found[ours + "gate_proj"], found[ours + "up_proj"] = gate_up[:, :half], gate_up[:, half:]
    if fused + "down_proj" in hf:
        found[ours + "down_proj"] = hf[fused + "down_proj"]
    for name, hub in _hub_names(config, i).items():
        present = [h for h in hub if h in hf]
        if present and len(present) < len(hub):
            raise ValueError(f"Mixtral layer {i}: expert weights missing: "
                             f"{sorted(set(hub) - set(present))[:5]}")
        if present:
            found[name] = torch.stack([hf[h] for h in hub])
    return found


def _router_pairs(config: Any) -> list[tuple[str, str]]:
    return [(f"decoder.layers.{i}.feed_forward.router.weight",
             f"model.layers.{i}.block_sparse_moe.gate.weight") for i in range(config.n_layers)]


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Mixtral state dict from an HF one in either layout; unexpected keys are named."""
    hf = {k.replace(".mlp.gate.weight", ".block_sparse_moe.gate.weight"): v
          for k, v in hf.items()}
    experts = {n: t for i in range(config.n_layers) for n, t in
               _experts_from_hf(hf, config, i).items()}
    ignored = {h for i in range(config.n_layers) for hub in _hub_names(config, i).values()
               for h in hub}
    ignored |= {f"model.layers.{i}.mlp.experts.{name}" for i in range(config.n_layers)
                for name in ("gate_up_proj", "down_proj")}
    if config.tie_embeddings:
        ignored.add("lm_head.weight")
    ignored |= {k for k in hf if k.endswith("rotary_emb.inv_freq")}
    pairs = attention_pairs(config) + _router_pairs(config)
    return {**renamed_from_hf(hf, pairs, ignored, "Mixtral"), **experts}


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    """The hub's per-expert layout."""
    config = model.config
    hf = renamed_to_hf(model, attention_pairs(config) + _router_pairs(config))
    state = model.state_dict()
    for i in range(config.n_layers):
        for name, hub in _hub_names(config, i).items():
            hf.update({h: state[name][e].clone() for e, h in enumerate(hub)})
    return hf
