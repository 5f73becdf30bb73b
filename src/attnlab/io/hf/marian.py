"""Marian (OPUS-MT) <-> Hugging Face `transformers` (MarianMTModel / MarianModel): config fields
and weight names, onto our 2017 Transformer family.

Marian (Junczys-Dowmunt et al., 2018, "Marian: Fast Neural Machine Translation in C++") is the
encoder-decoder of Vaswani et al. (2017) as the OPUS-MT checkpoints (Tiedemann and Thottingal,
2020) use it: post-norm layers with biases, LayerNorm eps 1e-5, no final stack norm, embeddings
scaled by sqrt(d_model) (`scale_embedding`), one embedding matrix shared by encoder, decoder
and output layer, SiLU ("swish") feed-forward, sinusoidal positions from 0 with the sines in the
first half of the dimensions ("sinusoidal_split"), a `final_logits_bias` added to the logits
(our `output_bias`), and the pad token as the decoder start (our `bos_token_id`). The position
tables are not stored (transformers recomputes them; so do we).

Not mapped: separate source and target embeddings (`share_encoder_decoder_embeddings` false),
different encoder and decoder widths or head counts, and the training-only `activation_dropout`
and layer drop (ignored: they change nothing at inference).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.io.hf import renamed_from_hf, renamed_to_hf

MODEL_TYPE = "transformer"  # the attnlab family these Hugging Face names map onto

# HF activation_function -> our feedforward name (transformers' ACT2FN meanings).
FEED_FORWARD = {"swish": "silu", "silu": "silu", "relu": "relu", "gelu": "gelu",
                "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
ACTIVATION = {"silu": "swish", "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new"}
# Copies of `shared`, and the position tables older conversions stored.
IGNORED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
           "model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")
# What our Transformer must be for a Marian folder to hold it: field -> the value it needs.
MARIAN_SETTINGS = {"position": "sinusoidal_split", "norm": "layer", "norm_first": False,
                   "bias": True, "layer_norm_eps": 1e-5, "attention": "multi_head",
                   "attention_options": {}}


def _same(hf: dict[str, Any], encoder: str, decoder: str, default: int) -> int:
    value = hf.get(encoder, default)
    if hf.get(decoder, value) != value:
        raise ValueError(f"{encoder}={value} differs from {decoder}={hf[decoder]}; attnlab's "
                         "Transformer uses one value for both stacks")
    return value


def _token_id(hf: dict[str, Any], name: str, default: int) -> int:
    value = hf.get(name, default)
    value = default if value is None else value
    if isinstance(value, list):  # transformers allows several EOS ids; generation uses one
        if len(value) != 1:
            raise ValueError(f"{name}={value} lists several ids; attnlab takes one")
        value = value[0]
    return value


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    if not hf.get("share_encoder_decoder_embeddings", True):
        raise ValueError("share_encoder_decoder_embeddings=false (separate source and target "
                         "vocabularies) is not supported; attnlab's Transformer shares one "
                         "embedding")
    act = hf.get("activation_function", "gelu")
    if act not in FEED_FORWARD:
        raise ValueError(f"activation_function {act!r} is not implemented; attnlab reads "
                         f"{sorted(FEED_FORWARD)}")
    vocab_size = hf.get("vocab_size", 58101)
    pad = _token_id(hf, "pad_token_id", vocab_size - 1)
    return dict(
        vocab_size=vocab_size, d_model=hf.get("d_model", 1024),
        n_heads=_same(hf, "encoder_attention_heads", "decoder_attention_heads", 16),
        n_layers=hf.get("encoder_layers", 12), n_decoder_layers=hf.get("decoder_layers", 12),
        d_ff=_same(hf, "encoder_ffn_dim", "decoder_ffn_dim", 4096),
        dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.0),
        max_seq_len=hf.get("max_position_embeddings", 1024), feedforward=FEED_FORWARD[act],
        tie_embeddings=hf.get("tie_word_embeddings", True),
        scale_embeddings=hf.get("scale_embedding", False), output_bias=True,
        pad_token_id=pad, eos_token_id=_token_id(hf, "eos_token_id", 0),
        bos_token_id=_token_id(hf, "decoder_start_token_id", pad),  # our decoder start
        **MARIAN_SETTINGS,
    )


def unsupported(c: Any) -> str | None:
    """Why a Marian folder cannot hold this Transformer config (None when it can)."""
    wrong = {name: getattr(c, name) for name, value in MARIAN_SETTINGS.items()
             if getattr(c, name) != value}
    if c.feedforward not in ACTIVATION:
        wrong["feedforward"] = c.feedforward
    if c.n_kv_heads not in (None, c.n_heads):
        wrong["n_kv_heads"] = c.n_kv_heads
    if not wrong:
        return None
    return (f"Marian (transformers' MarianMTModel) needs {MARIAN_SETTINGS} and feedforward in "
            f"{sorted(ACTIVATION)} without grouped-query attention, got {wrong}")


def config_to_hf(c: Any) -> dict[str, Any]:
    problem = unsupported(c)
    if problem is not None:
        raise ConfigError(f"no Hugging Face layout for model_type 'transformer' with this "
                          f"config: {problem}")
    return {
        "model_type": "marian", "architectures": ["MarianMTModel"], "is_encoder_decoder": True,
        "vocab_size": c.vocab_size, "decoder_vocab_size": c.vocab_size, "d_model": c.d_model,
        "encoder_layers": c.n_layers, "decoder_layers": c.n_decoder_layers,
        "encoder_attention_heads": c.n_heads, "decoder_attention_heads": c.n_heads,
        "encoder_ffn_dim": c.d_ff, "decoder_ffn_dim": c.d_ff,
        "activation_function": ACTIVATION[c.feedforward], "dropout": c.dropout,
        "attention_dropout": c.attention_dropout, "activation_dropout": 0.0,
        "max_position_embeddings": c.max_seq_len, "scale_embedding": c.scale_embeddings,
        "share_encoder_decoder_embeddings": True, "tie_word_embeddings": c.tie_embeddings,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "bos_token_id": None,
        "decoder_start_token_id": c.bos_token_id,
        # MarianConfig defaults to forcing EOS at the maximum length; attnlab's generate does
        # not, so the folder asks transformers not to either (same output on both sides).
        "forced_eos_token_id": None,
    }


def _pairs(c: Any) -> list[tuple[str, str]]:
    pairs = [("embed_tokens.weight", "model.shared.weight")]
    if not c.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for stack, n in (("encoder", c.n_layers), ("decoder", c.n_decoder_layers)):
        sublayers = [("self_attn", "self_attn", "self_attn_norm", "self_attn_layer_norm")]
        if stack == "decoder":
            sublayers.append(("cross_attn", "encoder_attn", "cross_attn_norm",
                              "encoder_attn_layer_norm"))
        for i in range(n):
            ours, hf = f"{stack}.layers.{i}", f"model.{stack}.layers.{i}"
            names = [("feed_forward.up_proj", "fc1"), ("feed_forward.down_proj", "fc2"),
                     ("ffn_norm", "final_layer_norm")]
            for attn, hf_attn, norm, hf_norm in sublayers:
                names += [(f"{attn}.{p}", f"{hf_attn}.{p}")
                          for p in ("q_proj", "k_proj", "v_proj", "out_proj")]
                names.append((norm, hf_norm))
            pairs += [(f"{ours}.{a}.{w}", f"{hf}.{b}.{w}")
                      for a, b in names for w in ("weight", "bias")]
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Transformer state dict from a MarianMTModel one; a tied model ignores a stored
    `lm_head.weight`, and `final_logits_bias` (1, V) becomes `lm_head.bias` (V,)."""
    hf = dict(hf)
    if "model.shared.weight" not in hf:  # files that name only the stack copies
        for copy in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
            if copy in hf:
                hf["model.shared.weight"] = hf[copy]
                break
    bias = hf.pop("final_logits_bias", None)
    shared = hf["model.shared.weight"] if "model.shared.weight" in hf else None
    for copy in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
        # transformers 5 unties these from `shared` when tie_word_embeddings is false; one
        # embedding serves both stacks here, so a copy must equal it.
        tensor = hf.get(copy)
        if (shared is not None and tensor is not None and tensor.device.type != "meta"
                and tensor is not shared and not tensor.equal(shared)):
            raise ValueError(f"{copy} differs from model.shared.weight; attnlab's Transformer "
                             "has one embedding for the encoder, the decoder and their source")
    ignored = set(IGNORED) | ({"lm_head.weight"} if config.tie_embeddings else set())
    state = renamed_from_hf(hf, _pairs(config), ignored, "Marian")
    if bias is not None:
        state["lm_head.bias"] = bias.reshape(-1)  # (V,)
    return state


def optional_prefixes(hf: dict[str, Any]) -> tuple[str, ...]:
    """transformers loads a MarianMTModel file without `final_logits_bias` (zeros); so do we."""
    return ("lm_head.bias",)


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    c = model.config
    state = renamed_to_hf(model, _pairs(c))
    bias = model.lm_head.bias
    state["final_logits_bias"] = (bias.detach() if bias is not None
                                  else model.lm_head.weight.new_zeros(c.vocab_size))[None]
    if not c.tie_embeddings:  # transformers 5 then reads the stacks' embeddings from the file
        for copy in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
            state[copy] = state["model.shared.weight"].detach().clone()  # stored, not deduplicated
    return state
