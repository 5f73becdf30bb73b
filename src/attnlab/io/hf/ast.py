"""AST <-> Hugging Face `transformers` (ASTModel / ASTForAudioClassification, model_type
"audio-spectrogram-transformer"): config fields, id2label and weight names. Folders carry the
names transformers writes (`audio_spectrogram_transformer.encoder.layer.N.attention.attention.
query`, read by every version); the names of transformers 5's modules in memory
(`layers.N.attention.q_proj`, `mlp.fc1`) are accepted too."""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import renamed_from_hf, renamed_to_hf
from attnlab.io.hf.vit import encoder_layer_pairs

MODEL_TYPE = "audio-spectrogram-transformer"  # our family has the same name as transformers'
PREFIX = "audio_spectrogram_transformer."
# transformers 5's module names in memory (`layers.N.<name>`) -> what its folders hold
# (`encoder.layer.N.<name>`)
IN_MEMORY = {"attention.q_proj.": "attention.attention.query.",
             "attention.k_proj.": "attention.attention.key.",
             "attention.v_proj.": "attention.attention.value.",
             "attention.o_proj.": "attention.output.dense.",
             "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense.",
             "layernorm_before.": "layernorm_before.", "layernorm_after.": "layernorm_after."}
IN_MEMORY_NAME = re.compile(r"^((?:audio_spectrogram_transformer\.)?)layers\.(\d+)\.(.*\.)(\w+)$")


def _labels(hf: dict[str, Any], classify: bool) -> tuple[int, tuple[str, ...]]:
    """(num_labels, class names) from id2label; the names transformers makes up (LABEL_i)
    become no names, so a config without names round-trips to one without names."""
    if not classify:
        return 0, ()
    id2label = hf.get("id2label") or {}
    n = len(id2label) or 2  # transformers leaves id2label out for its 2-label default
    names = tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n))
    return n, (() if names == tuple(f"LABEL_{i}" for i in range(n)) else names)


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act must be 'gelu' (exact), got {hf['hidden_act']!r}")
    architectures = hf.get("architectures") or []
    unknown = [a for a in architectures if a not in ("ASTModel", "ASTForAudioClassification")]
    if unknown:
        raise ValueError(f"architectures {unknown} are not supported; attnlab reads ASTModel "
                         "and ASTForAudioClassification")
    num_labels, labels = _labels(hf, "ASTForAudioClassification" in architectures)
    return dict(
        num_mel_bins=hf.get("num_mel_bins", 128), max_length=hf.get("max_length", 1024),
        patch_size=hf.get("patch_size", 16), frequency_stride=hf.get("frequency_stride", 10),
        time_stride=hf.get("time_stride", 10), d_model=hf.get("hidden_size", 768),
        n_heads=hf.get("num_attention_heads", 12), n_layers=hf.get("num_hidden_layers", 12),
        d_ff=hf.get("intermediate_size", 3072), dropout=hf.get("hidden_dropout_prob", 0.0),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), qkv_bias=hf.get("qkv_bias", True),
        init_std=hf.get("initializer_range", 0.02), num_labels=num_labels, labels=labels,
    )


def config_to_hf(c: Any) -> dict[str, Any]:
    hf: dict[str, Any] = {
        "model_type": MODEL_TYPE,
        "architectures": ["ASTForAudioClassification" if c.num_labels else "ASTModel"],
        "num_mel_bins": c.num_mel_bins, "max_length": c.max_length, "patch_size": c.patch_size,
        "frequency_stride": c.frequency_stride, "time_stride": c.time_stride,
        "hidden_size": c.d_model, "num_attention_heads": c.n_heads,
        "num_hidden_layers": c.n_layers, "intermediate_size": c.d_ff, "hidden_act": "gelu",
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "layer_norm_eps": c.layer_norm_eps, "qkv_bias": c.qkv_bias,
        "initializer_range": c.init_std,
    }
    if c.num_labels:
        names = c.labels or tuple(f"LABEL_{i}" for i in range(c.num_labels))
        hf["id2label"] = {str(i): name for i, name in enumerate(names)}
        hf["label2id"] = {name: i for i, name in enumerate(names)}
    return hf


def _pairs(c: Any, bare: bool = False) -> list[tuple[str, str]]:
    """(ours, HF) names; `bare`: an ASTModel folder (no `audio_spectrogram_transformer.`)."""
    p = "" if bare else PREFIX
    e = p + "embeddings."
    pairs = [("embeddings.cls_token", e + "cls_token"),
             ("embeddings.distillation_token", e + "distillation_token"),
             ("embeddings.position_embeddings", e + "position_embeddings"),
             ("embeddings.projection.weight", e + "patch_embeddings.projection.weight"),
             ("embeddings.projection.bias", e + "patch_embeddings.projection.bias"),
             ("encoder.final_norm.weight", p + "layernorm.weight"),
             ("encoder.final_norm.bias", p + "layernorm.bias")]
    if c.num_labels:
        pairs += [(f"{a}.{w}", f"classifier.{b}.{w}") for a, b in
                  (("head_norm", "layernorm"), ("classifier", "dense"))
                  for w in ("weight", "bias")]
    return pairs + encoder_layer_pairs(c, p)


def _folder_name(name: str) -> str:
    """A transformers 5 in-memory name as its folders write it (other names unchanged)."""
    match = IN_MEMORY_NAME.match(name)
    if match is None or match[3] not in IN_MEMORY:
        return name
    return f"{match[1]}encoder.layer.{match[2]}.{IN_MEMORY[match[3]]}{match[4]}"


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our AST state dict from an ASTForAudioClassification or ASTModel one (a bare
    ASTModel's keys have no prefix)."""
    hf = {_folder_name(k): v for k, v in hf.items()}
    bare = any(k.startswith("embeddings.") for k in hf)
    return renamed_from_hf(hf, _pairs(config, bare), (), "AST")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    c = model.config
    return renamed_to_hf(model, _pairs(c, bare=not c.num_labels))
