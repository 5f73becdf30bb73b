"""CLIP <-> Hugging Face `transformers` (CLIPModel, model_type "clip"): the nested text_config /
vision_config values and the weight names transformers writes (`text_model.encoder.layers.N.
self_attn.q_proj`, `vision_model.pre_layrnorm`, `visual_projection`), the same in memory and in
its folders. Older folders' `text_config_dict` / `vision_config_dict` and `position_ids`
buffers are read too."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.io.hf import renamed_from_hf, renamed_to_hf
from attnlab.io.hf.vit import _size

MODEL_TYPE = "clip"
# transformers' hidden_act -> our feed-forward name (and back)
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh",
               "relu": "relu", "silu": "silu"}
IGNORED = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def _sub(hf: dict[str, Any], side: str) -> dict[str, Any]:
    """One side's values; an old folder's `<side>_config_dict` wins, as in transformers."""
    return {**(hf.get(f"{side}_config") or {}), **(hf.get(f"{side}_config_dict") or {})}


def _shared(text: dict[str, Any], vision: dict[str, Any], key: str, default: Any) -> Any:
    """A value attnlab keeps once for both sides; a ValueError when the sides differ."""
    a, b = text.get(key, default), vision.get(key, default)
    if a != b:
        raise ValueError(f"text_config.{key}={a!r} and vision_config.{key}={b!r} differ; "
                         f"attnlab's CLIP has one {key} for both encoders")
    return a


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """Our CLIPConfig values from a CLIPModel config.json."""
    architectures = hf.get("architectures") or []
    if [a for a in architectures if a != "CLIPModel"]:
        raise ValueError(f"architectures {architectures} are not supported; attnlab reads "
                         "CLIPModel folders")
    text, vision = _sub(hf, "text"), _sub(hf, "vision")
    act = _shared(text, vision, "hidden_act", "quick_gelu")
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    eos = text.get("eos_token_id", 49407)
    if not isinstance(eos, int):
        raise ValueError(f"text_config.eos_token_id must be one id, got {eos!r}")
    if text.get("dropout", 0.0) or vision.get("dropout", 0.0):
        raise ValueError("a hidden dropout in text_config / vision_config is not supported")
    return dict(
        vocab_size=text.get("vocab_size", 49408),
        text_max_len=text.get("max_position_embeddings", 77),
        text_d_model=text.get("hidden_size", 512),
        text_n_heads=text.get("num_attention_heads", 8),
        text_n_layers=text.get("num_hidden_layers", 12),
        text_d_ff=text.get("intermediate_size", 2048),
        image_size=_size(vision, "image_size", 224), patch_size=_size(vision, "patch_size", 32),
        num_channels=vision.get("num_channels", 3),
        vision_d_model=vision.get("hidden_size", 768),
        vision_n_heads=vision.get("num_attention_heads", 12),
        vision_n_layers=vision.get("num_hidden_layers", 12),
        vision_d_ff=vision.get("intermediate_size", 3072),
        projection_dim=hf.get("projection_dim", 512),
        logit_scale_init=float(hf.get("logit_scale_init_value", 2.6592)),
        layer_norm_eps=_shared(text, vision, "layer_norm_eps", 1e-5),
        activation=ACTIVATIONS[act],
        bos_token_id=text.get("bos_token_id", 49406), eos_token_id=eos,
        pad_token_id=text.get("pad_token_id", 1),
        attention_dropout=_shared(text, vision, "attention_dropout", 0.0),
        init_std=text.get("initializer_range", 0.02),
    )


def unsupported(c: Any) -> str | None:
    """Why transformers' CLIPModel cannot hold this config (None when it can)."""
    if c.dropout:
        return "transformers' CLIP has no residual or embedding dropout"
    return None


def config_to_hf(c: Any) -> dict[str, Any]:
    reason = unsupported(c)
    if reason is not None:
        raise ConfigError(f"this CLIP config has no Hugging Face layout: {reason}; save it "
                          "with layout='attnlab' (or 'auto')")
    act = {ours: theirs for theirs, ours in ACTIVATIONS.items()}[c.activation]
    common = {"hidden_act": act, "layer_norm_eps": c.layer_norm_eps,
              "attention_dropout": c.attention_dropout, "initializer_range": c.init_std,
              "initializer_factor": 1.0, "projection_dim": c.projection_dim}
    text = {"model_type": "clip_text_model", "vocab_size": c.vocab_size,
            "max_position_embeddings": c.text_max_len, "hidden_size": c.text_d_model,
            "num_attention_heads": c.text_n_heads, "num_hidden_layers": c.text_n_layers,
            "intermediate_size": c.text_d_ff, "bos_token_id": c.bos_token_id,
            "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id, **common}
    vision = {"model_type": "clip_vision_model", "image_size": c.image_size,
              "patch_size": c.patch_size, "num_channels": c.num_channels,
              "hidden_size": c.vision_d_model, "num_attention_heads": c.vision_n_heads,
              "num_hidden_layers": c.vision_n_layers, "intermediate_size": c.vision_d_ff,
              **common}
    return {"model_type": MODEL_TYPE, "architectures": ["CLIPModel"], "text_config": text,
            "vision_config": vision, "projection_dim": c.projection_dim,
            "logit_scale_init_value": c.logit_scale_init, "initializer_factor": 1.0}


def _layer_pairs(ours: str, hf: str, n_layers: int) -> list[tuple[str, str]]:
    names = [("self_attn.q_proj", "self_attn.q_proj"), ("self_attn.k_proj", "self_attn.k_proj"),
             ("self_attn.v_proj", "self_attn.v_proj"),
             ("self_attn.out_proj", "self_attn.out_proj"), ("self_attn_norm", "layer_norm1"),
             ("feed_forward.up_proj", "mlp.fc1"), ("feed_forward.down_proj", "mlp.fc2"),
             ("ffn_norm", "layer_norm2")]
    return [(f"{ours}.layers.{i}.{a}.{w}", f"{hf}.encoder.layers.{i}.{b}.{w}")
            for i in range(n_layers) for a, b in names for w in ("weight", "bias")]


def _pairs(c: Any) -> list[tuple[str, str]]:
    """(ours, HF) names of every tensor."""
    pairs = [("logit_scale", "logit_scale"),
             ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
             ("text_position.embedding.weight", "text_model.embeddings.position_embedding.weight"),
             ("text_projection.weight", "text_projection.weight"),
             ("vision_embeddings.cls_token", "vision_model.embeddings.class_embedding"),
             ("vision_embeddings.position_embeddings",
              "vision_model.embeddings.position_embedding.weight"),
             ("vision_embeddings.projection.weight",
              "vision_model.embeddings.patch_embedding.weight"),
             ("vision_projection.weight", "visual_projection.weight")]
    for ours, hf in (("text_encoder.final_norm", "text_model.final_layer_norm"),
                     ("vision_pre_norm", "vision_model.pre_layrnorm"),
                     ("vision_encoder.final_norm", "vision_model.post_layernorm")):
        pairs += [(f"{ours}.{w}", f"{hf}.{w}") for w in ("weight", "bias")]
    return (pairs + _layer_pairs("text_encoder", "text_model", c.text_n_layers)
            + _layer_pairs("vision_encoder", "vision_model", c.vision_n_layers))


# ours keep a batch axis on [CLS] (1, 1, D) and the position table (1, 1 + N, D); HF's do not
BATCHED = ("vision_embeddings.cls_token", "vision_embeddings.position_embeddings")


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    ours = renamed_from_hf(hf, _pairs(config), IGNORED, "CLIP")
    for name in BATCHED:
        if name in ours:
            ours[name] = ours[name].reshape(1, -1, ours[name].shape[-1])
    return ours


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    hf = renamed_to_hf(model, _pairs(model.config))
    hf["vision_model.embeddings.class_embedding"] = hf[
        "vision_model.embeddings.class_embedding"].reshape(-1)  # (D,)
    name = "vision_model.embeddings.position_embedding.weight"
    hf[name] = hf[name][0]  # (1 + N, D)
    return hf
