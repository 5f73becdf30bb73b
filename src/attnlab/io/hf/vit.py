"""ViT <-> Hugging Face `transformers` (ViTModel / ViTForImageClassification, and for a config
with `distillation` DeiTModel / DeiTForImageClassificationWithTeacher, whose folders
`io/hf/deit.py` reads): config fields, id2label and weight names (the names transformers
writes in its folders, `vit.encoder.layer.N.attention.attention.query`, which every version
reads)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.io.hf import renamed_from_hf, renamed_to_hf

MODEL_TYPE = "vit"  # the attnlab family these Hugging Face names map onto


def optional_prefixes(hf: dict[str, Any]) -> tuple[str, ...]:
    """A bare ViTModel / DeiTModel folder saved with add_pooling_layer=False has no pooler;
    it loads with the pooler at its initial weights (as a BertModel's does)."""
    return ("pooler.",)


def _size(hf: dict[str, Any], key: str, default: int) -> int:
    """An int, or a square [n, n] (transformers accepts both for image and patch sizes)."""
    value = hf.get(key, default)
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{key} must be square, got {value}; attnlab's ViT takes one size")
        value = value[0]
    return value


def _labels(hf: dict[str, Any], classify: bool) -> tuple[int, tuple[str, ...]]:
    """(num_labels, class names) from id2label; names transformers made up (LABEL_i) are
    dropped, so a config without names round-trips to one without names."""
    if not classify:
        return 0, ()
    id2label = hf.get("id2label") or {}
    n = len(id2label) or 2  # transformers leaves id2label out for its 2-label default
    names = tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n))
    return n, (() if names == tuple(f"LABEL_{i}" for i in range(n)) else names)


def config_values(hf: dict[str, Any], *, distillation: bool, classify: bool) -> dict[str, Any]:
    """Our ViTConfig values from a ViT or DeiT config.json."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act must be 'gelu' (exact), got {hf['hidden_act']!r}")
    architectures = hf.get("architectures") or []
    known = [a for a in architectures if a.endswith(("Model", "ImageClassification",
                                                     "ImageClassificationWithTeacher"))]
    if architectures and not known:
        raise ValueError(f"architectures {architectures} are not supported; attnlab reads the "
                         "bare model and the image classifiers")
    # A bare model has the tanh pooler unless the folder says otherwise (our saves write
    # add_pooling_layer; transformers itself takes it as a from_pretrained argument)
    pooler = not classify and bool(hf.get("add_pooling_layer", True))
    if pooler and hf.get("pooler_act", "tanh") != "tanh":
        raise ValueError(f"pooler_act must be 'tanh', got {hf['pooler_act']!r}")
    d_model = hf.get("hidden_size", 768)
    if pooler and hf.get("pooler_output_size", d_model) != d_model:
        raise ValueError(f"pooler_output_size must equal hidden_size ({d_model}), got "
                         f"{hf['pooler_output_size']}")
    num_labels, labels = _labels(hf, classify)
    return dict(
        image_size=_size(hf, "image_size", 224), patch_size=_size(hf, "patch_size", 16),
        num_channels=hf.get("num_channels", 3), d_model=d_model,
        n_heads=hf.get("num_attention_heads", 12), n_layers=hf.get("num_hidden_layers", 12),
        d_ff=hf.get("intermediate_size", 3072), dropout=hf.get("hidden_dropout_prob", 0.0),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), qkv_bias=hf.get("qkv_bias", True),
        init_std=hf.get("initializer_range", 0.02), num_labels=num_labels, labels=labels,
        distillation=distillation, pooler=pooler,
    )


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    architectures = hf.get("architectures") or []
    classify = any("ImageClassification" in a for a in architectures)
    return config_values(hf, distillation=False, classify=classify)


def unsupported(c: Any) -> str | None:
    """Why transformers' classes cannot hold this config (None when they can); such a
    config is saved in attnlab's layout under layout="auto"."""
    if c.pooler and c.num_labels:
        return "transformers' image classifiers have no pooler"
    if c.position_interpolation != "bicubic":
        return "transformers interpolates positions bicubically only"
    if getattr(c, "stem_channels", 0):
        return "transformers' ViT has no convolutional stem (the hybrid)"
    return None


def config_to_hf(c: Any) -> dict[str, Any]:
    reason = unsupported(c)
    if reason is not None:
        raise ConfigError(f"this ViT config has no Hugging Face layout: {reason}; save it "
                          "with layout='attnlab' (or 'auto')")
    family = "DeiT" if c.distillation else "ViT"
    head = "ForImageClassificationWithTeacher" if c.distillation else "ForImageClassification"
    hf = {
        "model_type": family.lower(),
        "architectures": [family + (head if c.num_labels else "Model")],
        "image_size": c.image_size, "patch_size": c.patch_size,
        "num_channels": c.num_channels, "hidden_size": c.d_model,
        "num_attention_heads": c.n_heads, "num_hidden_layers": c.n_layers,
        "intermediate_size": c.d_ff, "hidden_act": "gelu", "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout, "layer_norm_eps": c.layer_norm_eps,
        "qkv_bias": c.qkv_bias, "initializer_range": c.init_std, "encoder_stride": c.patch_size,
        "pooler_output_size": c.d_model, "pooler_act": "tanh",
    }
    if not c.num_labels:
        hf["add_pooling_layer"] = c.pooler
    if c.num_labels:
        names = c.labels or tuple(f"LABEL_{i}" for i in range(c.num_labels))
        hf["id2label"] = {str(i): name for i, name in enumerate(names)}
        hf["label2id"] = {name: i for i, name in enumerate(names)}
    return hf


def _pairs(c: Any, bare: bool = False) -> list[tuple[str, str]]:
    """(ours, HF) names; `bare`: a ViTModel / DeiTModel folder (no `vit.` / `deit.` prefix)."""
    p = "" if bare else ("deit." if c.distillation else "vit.")
    e = p + "embeddings."
    pairs = [("embeddings.cls_token", e + "cls_token"),
             ("embeddings.position_embeddings", e + "position_embeddings"),
             ("embeddings.projection.weight", e + "patch_embeddings.projection.weight"),
             ("embeddings.projection.bias", e + "patch_embeddings.projection.bias"),
             ("encoder.final_norm.weight", p + "layernorm.weight"),
             ("encoder.final_norm.bias", p + "layernorm.bias")]
    if c.distillation:
        pairs.append(("embeddings.distillation_token", e + "distillation_token"))
    if c.pooler:
        pairs += [("pooler.weight", p + "pooler.dense.weight"),
                  ("pooler.bias", p + "pooler.dense.bias")]
    if c.num_labels:
        head = "cls_classifier" if c.distillation else "classifier"
        pairs += [("classifier.weight", head + ".weight"), ("classifier.bias", head + ".bias")]
        if c.distillation:
            pairs += [("distillation_classifier.weight", "distillation_classifier.weight"),
                      ("distillation_classifier.bias", "distillation_classifier.bias")]
    return pairs + encoder_layer_pairs(c, p)


def encoder_layer_pairs(c: Any, prefix: str) -> list[tuple[str, str]]:
    """(our name, transformers' name) of every encoder layer's weights, the same in ViT, DeiT
    and AST folders (`prefix`: "vit.", "deit.", "audio_spectrogram_transformer." or "")."""
    pairs = []
    for i in range(c.n_layers):
        ours, hf = f"encoder.layers.{i}.", f"{prefix}encoder.layer.{i}."
        names = [("self_attn.q_proj", "attention.attention.query", c.qkv_bias),
                 ("self_attn.k_proj", "attention.attention.key", c.qkv_bias),
                 ("self_attn.v_proj", "attention.attention.value", c.qkv_bias),
                 ("self_attn.out_proj", "attention.output.dense", True),
                 ("self_attn_norm", "layernorm_before", True),
                 ("feed_forward.up_proj", "intermediate.dense", True),
                 ("feed_forward.down_proj", "output.dense", True),
                 ("ffn_norm", "layernorm_after", True)]
        pairs += [(f"{ours}{a}.{w}", f"{hf}{b}.{w}") for a, b, bias in names
                  for w in (("weight", "bias") if bias else ("weight",))]
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our ViT state dict from a ViT or DeiT one (a bare ViTModel's keys have no prefix)."""
    bare = any(k.startswith("embeddings.") for k in hf)
    family = "DeiT" if config.distillation else "ViT"
    return renamed_from_hf(hf, _pairs(config, bare), (), family)


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    c = model.config
    return renamed_to_hf(model, _pairs(c, bare=not c.num_labels))
