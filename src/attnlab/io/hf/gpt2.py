"""GPT-2 <-> Hugging Face `transformers` (GPT2LMHeadModel): config fields and weight names.

HF stores GPT-2's projections as `Conv1D` weights of shape (in, out), the transpose of
`nn.Linear`, and fuses query/key/value into one `attn.c_attn` of width 3 * d_model.

    ours = state_dict_from_hf(hf_state, config)      # load an HF checkpoint into GPT
    hf = state_dict_to_hf(model)                     # and back, for GPT2LMHeadModel
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.io.hf import drop_ids_outside_vocabulary

MODEL_TYPE = "gpt2"  # the attnlab family these Hugging Face names map onto


ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
               "relu": "relu"}


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our GPT config values from the fields of an HF GPT-2 `config.json`; unsupported options
    raise."""
    for flag in ("add_cross_attention", "scale_attn_by_inverse_layer_idx"):
        if hf.get(flag):
            raise ValueError(f"GPT-2 config sets {flag}=true, which attnlab's GPT does not "
                             "implement")
    if hf.get("scale_attn_weights", True) is False:
        raise ValueError("GPT-2 config sets scale_attn_weights=false; attnlab always scales")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation_function must be one of {sorted(ACTIVATIONS)}, "
                         f"got {activation!r}")
    d_model = hf.get("n_embd", 768)
    values = dict(
        vocab_size=hf.get("vocab_size", 50257), max_seq_len=hf.get("n_positions", 1024),
        d_model=d_model, n_heads=hf.get("n_head", 12), n_layers=hf.get("n_layer", 12),
        d_ff=hf.get("n_inner") or 4 * d_model, dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        feedforward=ACTIVATIONS[activation], init_std=hf.get("initializer_range", 0.02),
        bos_token_id=hf.get("bos_token_id", 50256), eos_token_id=hf.get("eos_token_id", 50256),
        pad_token_id=hf.get("pad_token_id"),
    )
    return drop_ids_outside_vocabulary(values, ("bos_token_id", "eos_token_id", "pad_token_id"),
                                       "GPT-2")


def config_to_hf(c: Any) -> dict[str, Any]:
    """The HF `config.json` fields for `c` (GPT2LMHeadModel)."""
    activation = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.feedforward]
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size, "n_positions": c.max_seq_len, "n_embd": c.d_model,
        "n_head": c.n_heads, "n_layer": c.n_layers, "n_inner": c.d_ff,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.attention_dropout,
        "layer_norm_epsilon": c.layer_norm_eps, "activation_function": activation,
        "initializer_range": c.init_std, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id,
        "tie_word_embeddings": True,
    }


def _layer_pairs(i: int) -> list[tuple[str, str]]:
    """(ours, HF) names of one block's parameters that map one to one (Conv1D transposed)."""
    ours, hf = f"decoder.layers.{i}.", f"transformer.h.{i}."
    pairs = [("self_attn_norm", "ln_1"), ("ffn_norm", "ln_2")]
    names = [(f"{ours}{a}.{p}", f"{hf}{b}.{p}") for a, b in pairs for p in ("weight", "bias")]
    linear = [("self_attn.out_proj", "attn.c_proj"), ("feed_forward.up_proj", "mlp.c_fc"),
              ("feed_forward.down_proj", "mlp.c_proj")]
    names += [(f"{ours}{a}.{p}", f"{hf}{b}.{p}") for a, b in linear for p in ("weight", "bias")]
    return names


GLOBAL_PAIRS = [("embed_tokens.weight", "transformer.wte.weight"),
                ("position.embedding.weight", "transformer.wpe.weight"),
                ("decoder.final_norm.weight", "transformer.ln_f.weight"),
                ("decoder.final_norm.bias", "transformer.ln_f.bias")]


def _is_conv1d_weight(hf_name: str) -> bool:
    return hf_name.endswith(("c_proj.weight", "c_fc.weight", "c_attn.weight"))


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our GPT state dict from an HF GPT-2 one; missing / unexpected keys are named."""
    hf = {k.removeprefix("model."): v for k, v in hf.items()}
    if not any(k.startswith("transformer.") for k in hf):  # a bare GPT2Model
        hf = {f"transformer.{k}": v for k, v in hf.items()}
    ignored = {"lm_head.weight"}  # tied to wte
    ignored |= {k for k in hf if k.endswith((".attn.bias", ".attn.masked_bias"))}  # old buffers
    ours: dict[str, Tensor] = {}
    used: set[str] = set()
    pairs = list(GLOBAL_PAIRS)
    for i in range(config.n_layers):
        pairs += _layer_pairs(i)
        c_attn = f"transformer.h.{i}.attn.c_attn."
        for suffix in ("weight", "bias"):
            if c_attn + suffix not in hf:
                continue
            tensor = hf[c_attn + suffix]
            q, k, v = (tensor.t() if suffix == "weight" else tensor).chunk(3, dim=0)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), (q, k, v), strict=True):
                ours[f"decoder.layers.{i}.self_attn.{name}.{suffix}"] = part.contiguous()
            used.add(c_attn + suffix)
    for our_name, hf_name in pairs:
        if hf_name in hf:
            tensor = hf[hf_name]
            ours[our_name] = tensor.t().contiguous() if _is_conv1d_weight(hf_name) else tensor
            used.add(hf_name)
    unexpected = sorted(set(hf) - used - ignored)
    if unexpected:
        raise ValueError(f"unexpected GPT-2 weights for this config: {unexpected[:10]}")
    return ours


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    """The HF GPT2LMHeadModel state dict of our GPT (lm_head tied, so left out)."""
    state = model.state_dict()
    hf: dict[str, Tensor] = {}
    pairs = list(GLOBAL_PAIRS)
    for i in range(model.config.n_layers):
        pairs += _layer_pairs(i)
        prefix = f"decoder.layers.{i}.self_attn."
        for suffix in ("weight", "bias"):
            parts = [state[f"{prefix}{n}.{suffix}"] for n in ("q_proj", "k_proj", "v_proj")]
            fused = torch.cat(parts, dim=0)  # (3D, D) or (3D,)
            hf[f"transformer.h.{i}.attn.c_attn.{suffix}"] = (
                fused.t().contiguous() if suffix == "weight" else fused)
    for our_name, hf_name in pairs:
        tensor = state[our_name]
        hf[hf_name] = tensor.t().contiguous() if _is_conv1d_weight(hf_name) else tensor
    return hf
