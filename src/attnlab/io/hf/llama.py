"""LLaMA-style decoders <-> Hugging Face `transformers` (LlamaForCausalLM, and the Mistral and
Qwen2 variants that differ only in settings): config fields and weight names. The weights map
one to one (both sides use nn.Linear); only the names differ. Mixtral (`mixtral.py`) reuses
the config values and the names of everything but the feed-forward."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import drop_ids_outside_vocabulary, renamed_from_hf, renamed_to_hf

MODEL_TYPE = "llama"  # the attnlab family these Hugging Face names map onto


MODEL_TYPES = ("llama", "mistral", "qwen2")


def _rope_theta(hf: dict[str, Any]) -> float:
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ValueError(f"rope scaling {kind!r} is not implemented (only plain RoPE)")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our LLaMA config values from an HF llama / mistral / qwen2 `config.json`; unsupported
    options raise."""
    model_type = hf.get("model_type", "llama")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    return decoder_values(hf)


def decoder_values(hf: dict[str, Any]) -> dict[str, Any]:
    """The LLaMA-style decoder's config values (no model_type check; HF keys missing take
    LLaMA's defaults); unsupported options raise."""
    model_type = hf.get("model_type", "llama")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act must be silu, got {hf['hidden_act']!r}")
    if hf.get("mlp_bias"):
        raise ValueError("mlp_bias=true is not implemented")
    d_model, n_heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    if hf.get("head_dim") not in (None, d_model // n_heads):
        raise ValueError(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads")
    max_len = hf.get("max_position_embeddings", 4096)
    window = hf.get("sliding_window") if hf.get("use_sliding_window", True) else None
    if window is not None and window < max_len:
        raise ValueError(f"sliding_window={window} < max_position_embeddings={max_len}: "
                         "local attention is not implemented for this family yet")
    values = dict(
        vocab_size=hf.get("vocab_size", 32000), max_seq_len=max_len, d_model=d_model,
        n_heads=n_heads, n_kv_heads=hf.get("num_key_value_heads"),
        n_layers=hf.get("num_hidden_layers", 32), d_ff=hf.get("intermediate_size", 11008),
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=_rope_theta(hf),
        attention_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        init_std=hf.get("initializer_range", 0.02),
        bos_token_id=hf.get("bos_token_id", 1), eos_token_id=hf.get("eos_token_id", 2),
        pad_token_id=hf.get("pad_token_id"),
    )
    return drop_ids_outside_vocabulary(values, ("bos_token_id", "eos_token_id", "pad_token_id"),
                                       "LLaMA")


def config_to_hf(c: Any) -> dict[str, Any]:
    return {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_seq_len,
        "hidden_size": c.d_model, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads or c.n_heads, "num_hidden_layers": c.n_layers,
        "intermediate_size": c.d_ff, "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta,
        "attention_bias": c.attention_bias, "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu", "initializer_range": c.init_std, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id,
    }


def attention_pairs(config: Any) -> list[tuple[str, str]]:
    """(ours, HF) names of every parameter outside the feed-forwards."""
    pairs = [("embed_tokens.weight", "model.embed_tokens.weight"),
             ("decoder.final_norm.weight", "model.norm.weight")]
    if not config.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for i in range(config.n_layers):
        ours, hf = f"decoder.layers.{i}.", f"model.layers.{i}."
        pairs += [(f"{ours}self_attn_norm.weight", f"{hf}input_layernorm.weight"),
                  (f"{ours}ffn_norm.weight", f"{hf}post_attention_layernorm.weight"),
                  (f"{ours}self_attn.out_proj.weight", f"{hf}self_attn.o_proj.weight")]
        for name in ("q_proj", "k_proj", "v_proj"):
            pairs.append((f"{ours}self_attn.{name}.weight", f"{hf}self_attn.{name}.weight"))
            if config.attention_bias:
                pairs.append((f"{ours}self_attn.{name}.bias", f"{hf}self_attn.{name}.bias"))
    return pairs


def _pairs(config: Any) -> list[tuple[str, str]]:
    """(ours, HF) names of every parameter."""
    pairs = attention_pairs(config)
    for i in range(config.n_layers):
        for name in ("gate_proj", "up_proj", "down_proj"):
            pairs.append((f"decoder.layers.{i}.feed_forward.{name}.weight",
                          f"model.layers.{i}.mlp.{name}.weight"))
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Llama state dict from an HF one; unexpected keys are named."""
    ignored = {"lm_head.weight"} if config.tie_embeddings else set()
    ignored |= {k for k in hf if k.endswith("rotary_emb.inv_freq")}  # old buffers
    return renamed_from_hf(hf, _pairs(config), ignored, "LLaMA")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    return renamed_to_hf(model, _pairs(model.config))
