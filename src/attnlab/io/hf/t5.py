"""T5 <-> Hugging Face `transformers` (T5ForConditionalGeneration / T5Model): config fields and
weight names.

HF keeps T5 sub-layers in numbered lists: encoder `block.{i}.layer.0` is self-attention and
`layer.1` the feed-forward; decoder `layer.1` is cross-attention and `layer.2` the feed-forward.
The relative position bias lives in block 0's self-attention and is shared by the stack; ours
sits on the stack itself. Embeddings are one `shared` matrix (HF also lists it as each stack's
`embed_tokens`, and transformers 5 always ties `lm_head` to it).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import renamed_from_hf, renamed_to_hf

MODEL_TYPE = "t5"  # the attnlab family these Hugging Face names map onto


FEED_FORWARD = {"relu": "relu", "gated-gelu": "gated-gelu"}
# Copies of `shared` and an unused cross-attention bias some checkpoints carry.
IGNORED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
           "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in FEED_FORWARD:
        raise ValueError(f"feed_forward_proj {proj!r} is not implemented; attnlab reads "
                         f"{sorted(FEED_FORWARD)}")
    if proj == "gated-gelu" and hf.get("dense_act_fn", "gelu_new") != "gelu_new":
        raise ValueError(f"gated-gelu with dense_act_fn {hf['dense_act_fn']!r} is not "
                         "implemented (only gelu_new)")
    tie = hf.get("tie_word_embeddings", True)
    return dict(
        vocab_size=hf.get("vocab_size", 32128), d_model=hf.get("d_model", 512),
        n_heads=hf.get("num_heads", 8), head_dim=hf.get("d_kv", 64),
        n_layers=hf.get("num_layers", 6), n_decoder_layers=hf.get("num_decoder_layers"),
        d_ff=hf.get("d_ff", 2048), feed_forward=FEED_FORWARD[proj],
        num_buckets=hf.get("relative_attention_num_buckets", 32),
        max_distance=hf.get("relative_attention_max_distance", 128),
        max_seq_len=hf.get("n_positions", 512), dropout=hf.get("dropout_rate", 0.1),
        norm_eps=hf.get("layer_norm_epsilon", 1e-6), tie_word_embeddings=tie,
        # transformers 5 writes tie_word_embeddings=True always and keeps the v1.0 / v1.1
        # difference in scale_decoder_outputs; older folders only have tie_word_embeddings.
        scale_decoder_outputs=hf.get("scale_decoder_outputs", tie),
        pad_token_id=hf.get("pad_token_id", 0) if hf.get("pad_token_id") is not None else 0,
        eos_token_id=hf.get("eos_token_id", 1) if hf.get("eos_token_id") is not None else 1,
        decoder_start_token_id=hf.get("decoder_start_token_id") or 0,
    )


def config_to_hf(c: Any) -> dict[str, Any]:
    return {
        "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
        "is_encoder_decoder": True, "vocab_size": c.vocab_size, "d_model": c.d_model,
        "d_kv": c.head_dim, "d_ff": c.d_ff, "num_layers": c.n_layers,
        "num_decoder_layers": c.n_decoder_layers, "num_heads": c.n_heads,
        "relative_attention_num_buckets": c.num_buckets,
        "relative_attention_max_distance": c.max_distance, "n_positions": c.max_seq_len,
        "dropout_rate": c.dropout, "layer_norm_epsilon": c.norm_eps,
        "feed_forward_proj": c.feed_forward,
        "dense_act_fn": "gelu_new" if c.feed_forward == "gated-gelu" else "relu",
        "is_gated_act": c.feed_forward == "gated-gelu",
        "tie_word_embeddings": c.tie_word_embeddings,
        "scale_decoder_outputs": c.scale_decoder_outputs,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id,
        "decoder_start_token_id": c.decoder_start_token_id,
    }


def _attention(ours: str, hf: str) -> list[tuple[str, str]]:
    return [(f"{ours}.{a}.weight", f"{hf}.{b}.weight")
            for a, b in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o"))]


def _feed_forward(ours: str, hf: str, gated: bool) -> list[tuple[str, str]]:
    names = [("gate_proj", "wi_0"), ("up_proj", "wi_1")] if gated else [("up_proj", "wi")]
    names.append(("down_proj", "wo"))
    return [(f"{ours}.{a}.weight", f"{hf}.{b}.weight") for a, b in names]


def _pairs(c: Any) -> list[tuple[str, str]]:
    gated = c.feed_forward == "gated-gelu"
    pairs = [("embed_tokens.weight", "shared.weight")]
    if not c.tie_word_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for stack, n in (("encoder", c.n_layers), ("decoder", c.n_decoder_layers)):
        bias = "relative_attention_bias.weight"
        pairs += [(f"{stack}.position_bias.{bias}",
                   f"{stack}.block.0.layer.0.SelfAttention.{bias}"),
                  (f"{stack}.final_norm.weight", f"{stack}.final_layer_norm.weight")]
        for i in range(n):
            ours, hf = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            pairs += _attention(f"{ours}.self_attn", f"{hf}.0.SelfAttention")
            pairs.append((f"{ours}.self_attn_norm.weight", f"{hf}.0.layer_norm.weight"))
            ff = 1
            if stack == "decoder":
                pairs += _attention(f"{ours}.cross_attn", f"{hf}.1.EncDecAttention")
                pairs.append((f"{ours}.cross_attn_norm.weight", f"{hf}.1.layer_norm.weight"))
                ff = 2
            pairs += _feed_forward(f"{ours}.feed_forward", f"{hf}.{ff}.DenseReluDense", gated)
            pairs.append((f"{ours}.ffn_norm.weight", f"{hf}.{ff}.layer_norm.weight"))
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our T5 state dict from an HF one; a tied model ignores a stored `lm_head.weight`."""
    hf = dict(hf)
    if "shared.weight" not in hf:  # T5EncoderModel-style files name only the stack copies
        for copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if copy in hf:
                hf["shared.weight"] = hf[copy]
                break
    ignored = set(IGNORED) | ({"lm_head.weight"} if config.tie_word_embeddings else set())
    return renamed_from_hf(hf, _pairs(config), ignored, "T5")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    return renamed_to_hf(model, _pairs(model.config))
