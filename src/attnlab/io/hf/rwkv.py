"""RWKV-4 <-> Hugging Face `transformers` (RwkvForCausalLM): config fields and weight names.
Every tensor maps one to one with the same shape (the mixers use transformers' names); only
the prefixes differ:

    embed_tokens                        rwkv.embeddings
    decoder.layers.{i}.pre_ln (i = 0)   rwkv.blocks.0.pre_ln
    decoder.layers.{i}.ln1 / ln2        rwkv.blocks.{i}.ln1 / ln2
    decoder.layers.{i}.attention.*      rwkv.blocks.{i}.attention.*     (time mix)
    decoder.layers.{i}.feed_forward.*   rwkv.blocks.{i}.feed_forward.*  (channel mix)
    decoder.final_norm                  rwkv.ln_out
    lm_head                             head

transformers' `context_length` (the bound of its CUDA kernel) is kept as our `context_length`;
`rescale_every` is kept (a negative value, transformers' "never", becomes 0). attnlab's own
settings (`chunk_size`, `max_seq_len`, `init_std`) take their defaults in a folder of this
layout."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import drop_ids_outside_vocabulary, renamed_from_hf, renamed_to_hf

MODEL_TYPE = "rwkv"  # the attnlab family these Hugging Face names map onto

TIME_MIX = ("time_decay", "time_first", "time_mix_key", "time_mix_value", "time_mix_receptance",
            "key.weight", "value.weight", "receptance.weight", "output.weight")
CHANNEL_MIX = ("time_mix_key", "time_mix_receptance", "key.weight", "receptance.weight",
               "value.weight")


def _one_id(hf: dict[str, Any], name: str, default: int | None) -> int | None:
    value = hf.get(name, default)
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"{name} must be one token id, got the list {value}")
        value = value[0]
    return value


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our RWKV config values from an HF rwkv `config.json`; unsupported options raise."""
    if hf.get("model_type", "rwkv") != "rwkv":
        raise ValueError(f"model_type must be 'rwkv', got {hf['model_type']!r}")
    d_model = hf.get("hidden_size", 4096)
    rescale = hf.get("rescale_every", 6)
    if isinstance(rescale, bool) or not isinstance(rescale, int):
        raise ValueError(f"rescale_every must be an integer, got {rescale!r}")
    values = dict(
        vocab_size=hf.get("vocab_size", 50277), d_model=d_model,
        n_layers=hf.get("num_hidden_layers", 32),
        attention_hidden_size=hf.get("attention_hidden_size") or d_model,
        d_ff=hf.get("intermediate_size") or 4 * d_model,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), rescale_every=max(rescale, 0),
        context_length=hf.get("context_length", 1024),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_token_id=_one_id(hf, "bos_token_id", 0), eos_token_id=_one_id(hf, "eos_token_id", 0),
        pad_token_id=_one_id(hf, "pad_token_id", None),
    )
    return drop_ids_outside_vocabulary(values, ("bos_token_id", "eos_token_id", "pad_token_id"),
                                       "RWKV")


def config_to_hf(c: Any) -> dict[str, Any]:
    return {
        "model_type": "rwkv", "architectures": ["RwkvForCausalLM"],
        "vocab_size": c.vocab_size, "context_length": c.context_length,
        "hidden_size": c.d_model, "num_hidden_layers": c.n_layers,
        "attention_hidden_size": c.attention_hidden_size, "intermediate_size": c.d_ff,
        "layer_norm_epsilon": c.layer_norm_eps, "rescale_every": c.rescale_every,
        "tie_word_embeddings": c.tie_embeddings, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id,
    }


def _pairs(config: Any) -> list[tuple[str, str]]:
    """(ours, HF) names of every parameter."""
    pairs = [("embed_tokens.weight", "rwkv.embeddings.weight"),
             ("decoder.final_norm.weight", "rwkv.ln_out.weight"),
             ("decoder.final_norm.bias", "rwkv.ln_out.bias")]
    if not config.tie_embeddings:
        pairs.append(("lm_head.weight", "head.weight"))
    for i in range(config.n_layers):
        ours, hf = f"decoder.layers.{i}.", f"rwkv.blocks.{i}."
        norms = ("pre_ln", "ln1", "ln2") if i == 0 else ("ln1", "ln2")
        pairs += [(f"{ours}{n}.{p}", f"{hf}{n}.{p}") for n in norms for p in ("weight", "bias")]
        pairs += [(f"{ours}attention.{p}", f"{hf}attention.{p}") for p in TIME_MIX]
        pairs += [(f"{ours}feed_forward.{p}", f"{hf}feed_forward.{p}") for p in CHANNEL_MIX]
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Rwkv state dict from an HF one; unexpected keys are named."""
    ignored = {"head.weight"} if config.tie_embeddings else set()
    return renamed_from_hf(hf, _pairs(config), ignored, "RWKV")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    return renamed_to_hf(model, _pairs(model.config))
