"""Mamba <-> Hugging Face `transformers` (MambaForCausalLM; Gu & Dao 2023): config fields and
weight names, onto our Mamba family (`models/mamba.py`). Every tensor maps one to one (the
mixer keeps transformers' names: in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj):

    backbone.embeddings.weight          <-> embed_tokens.weight
    backbone.layers.N.norm.weight       <-> decoder.layers.N.norm.weight
    backbone.layers.N.mixer.<name>      <-> decoder.layers.N.mixer.<name>
    backbone.norm_f.weight              <-> decoder.final_norm.weight
    lm_head.weight                      <-> lm_head.weight (only when untied)

Options that only shape the initialisation or the kernel choice (time_step_scale,
time_step_init_scheme, rescale_prenorm_residual, use_mambapy, use_associative_scan,
residual_in_fp32: float32 residuals, the same in float32) are accepted and not kept; an
activation other than SiLU, a non-integer expand or an inconsistent intermediate_size raise.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import drop_ids_outside_vocabulary, renamed_from_hf, renamed_to_hf

MODEL_TYPE = "mamba"  # the attnlab family these Hugging Face names map onto

# transformers' MambaConfig defaults, for keys a config.json leaves out.
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50280, "hidden_size": 768, "state_size": 16, "num_hidden_layers": 32,
    "layer_norm_epsilon": 1e-5, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0,
    "expand": 2, "conv_kernel": 4, "use_bias": False, "use_conv_bias": True,
    "hidden_act": "silu", "initializer_range": 0.1, "time_step_rank": "auto",
    "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 1e-4,
    "tie_word_embeddings": True,
}
MIXER_TENSORS = ("A_log", "D", "conv1d.weight", "x_proj.weight", "dt_proj.weight",
                 "dt_proj.bias", "in_proj.weight", "out_proj.weight")


def _single_id(name: str, value: Any) -> int | None:
    if isinstance(value, list):
        if len(value) > 1:
            raise ValueError(f"{name}={value}: only one id is supported")
        return value[0] if value else None
    return value


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our Mamba config values from an HF mamba `config.json`; unsupported options raise."""
    if hf.get("model_type", MODEL_TYPE) != MODEL_TYPE:
        raise ValueError(f"model_type must be 'mamba', got {hf.get('model_type')!r}")
    hf = {**HF_DEFAULTS, **hf}
    if hf["hidden_act"] != "silu":
        raise ValueError(f"hidden_act must be silu, got {hf['hidden_act']!r}")
    expand, width = hf["expand"], hf["hidden_size"]
    if isinstance(expand, bool) or not float(expand).is_integer():
        raise ValueError(f"expand must be an integer, got {expand!r}")
    expand = int(expand)
    if hf.get("intermediate_size", expand * width) != expand * width:
        raise ValueError(f"intermediate_size {hf['intermediate_size']} != expand * hidden_size "
                         f"({expand} * {width})")
    rank = hf["time_step_rank"]  # transformers writes "auto" resolved
    if rank in ("auto", math.ceil(width / 16)):
        rank = "auto"
    elif isinstance(rank, bool) or not isinstance(rank, int):
        raise ValueError(f"time_step_rank must be 'auto' or an integer, got {rank!r}")
    values = dict(
        vocab_size=hf["vocab_size"], d_model=width, n_layers=hf["num_hidden_layers"],
        d_state=hf["state_size"], d_conv=hf["conv_kernel"], expand=expand, dt_rank=rank,
        rms_norm_eps=hf["layer_norm_epsilon"], use_bias=bool(hf["use_bias"]),
        conv_bias=bool(hf["use_conv_bias"]), dt_min=hf["time_step_min"],
        dt_max=hf["time_step_max"], dt_init_floor=hf["time_step_floor"],
        tie_embeddings=bool(hf["tie_word_embeddings"]), init_std=hf["initializer_range"],
        **{name: _single_id(name, hf[name])
           for name in ("bos_token_id", "eos_token_id", "pad_token_id")},
    )
    return drop_ids_outside_vocabulary(values, ("bos_token_id", "eos_token_id", "pad_token_id"),
                                       "Mamba")


def config_to_hf(c: Any) -> dict[str, Any]:
    return {
        "model_type": "mamba", "architectures": ["MambaForCausalLM"],
        "vocab_size": c.vocab_size, "hidden_size": c.d_model, "state_size": c.d_state,
        "num_hidden_layers": c.n_layers, "layer_norm_epsilon": c.rms_norm_eps,
        "expand": c.expand, "intermediate_size": c.d_inner, "conv_kernel": c.d_conv,
        "use_bias": c.use_bias, "use_conv_bias": c.conv_bias, "hidden_act": "silu",
        "initializer_range": c.init_std, "time_step_rank": c.time_step_rank,
        "time_step_min": c.dt_min, "time_step_max": c.dt_max, "time_step_floor": c.dt_init_floor,
        "residual_in_fp32": True, "tie_word_embeddings": c.tie_embeddings,
        "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id,
    }


def _pairs(config: Any) -> list[tuple[str, str]]:
    """(ours, HF) names of every parameter."""
    pairs = [("embed_tokens.weight", "backbone.embeddings.weight"),
             ("decoder.final_norm.weight", "backbone.norm_f.weight")]
    if not config.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    names = list(MIXER_TENSORS)
    if config.conv_bias:
        names.append("conv1d.bias")
    if config.use_bias:
        names += ["in_proj.bias", "out_proj.bias"]
    for i in range(config.n_layers):
        ours, hf = f"decoder.layers.{i}.", f"backbone.layers.{i}."
        pairs.append((f"{ours}norm.weight", f"{hf}norm.weight"))
        pairs += [(f"{ours}mixer.{name}", f"{hf}mixer.{name}") for name in names]
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Mamba state dict from an HF one (the older `backbone.embedding.weight` name too, as
    transformers' load hook); unexpected keys are named."""
    if "backbone.embedding.weight" in hf and "backbone.embeddings.weight" not in hf:
        hf = {("backbone.embeddings.weight" if k == "backbone.embedding.weight" else k): v
              for k, v in hf.items()}
    ignored = {"lm_head.weight"} if config.tie_embeddings else set()
    return renamed_from_hf(hf, _pairs(config), ignored, "Mamba")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    return renamed_to_hf(model, _pairs(model.config))
