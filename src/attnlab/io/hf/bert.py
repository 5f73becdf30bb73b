"""BERT <-> Hugging Face `transformers` (BertForMaskedLM / BertModel /
BertForSequenceClassification): config fields and weight names (nn.Linear on both sides)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from attnlab.io.hf import renamed_from_hf, renamed_to_hf

MODEL_TYPE = "bert"  # the attnlab family these Hugging Face names map onto


ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}


def optional_prefixes(hf: dict[str, Any]) -> tuple[str, ...]:
    """Weights a folder may lack: BertForMaskedLM has no pooler, and a bare BertModel has no
    head at all (the missing parts keep their initial weights)."""
    architectures = hf.get("architectures") or []
    with_head = ("MaskedLM", "PreTraining", "SequenceClassification")
    if any(kind in a for a in architectures for kind in with_head):
        return ("pooler.",)
    return ("pooler.", "mlm_")


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    activation = hf.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {hf['position_embedding_type']!r} is not "
                         "implemented (only absolute)")
    architectures = hf.get("architectures") or []
    classify = any("SequenceClassification" in a for a in architectures)
    return dict(
        vocab_size=hf.get("vocab_size", 30522), max_seq_len=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2), d_model=hf.get("hidden_size", 768),
        n_heads=hf.get("num_attention_heads", 12), n_layers=hf.get("num_hidden_layers", 12),
        d_ff=hf.get("intermediate_size", 3072), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), feedforward=ACTIVATIONS[activation],
        init_std=hf.get("initializer_range", 0.02),
        # transformers leaves id2label out of config.json when it is its 2-label default
        num_labels=(len(hf.get("id2label") or {}) or 2) if classify else 0,
        pad_token_id=hf.get("pad_token_id", 0) or 0,
    )


def config_to_hf(c: Any) -> dict[str, Any]:
    activation = {v: k for k, v in ACTIVATIONS.items()}[c.feedforward]
    hf = {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification" if c.num_labels else "BertForMaskedLM"],
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_seq_len,
        "type_vocab_size": c.type_vocab_size, "hidden_size": c.d_model,
        "num_attention_heads": c.n_heads, "num_hidden_layers": c.n_layers,
        "intermediate_size": c.d_ff, "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout, "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": activation, "initializer_range": c.init_std, "pad_token_id": c.pad_token_id,
    }
    if c.num_labels:
        hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(c.num_labels)}
        hf["label2id"] = {f"LABEL_{i}": i for i in range(c.num_labels)}
    return hf


def _pairs(c: Any) -> list[tuple[str, str]]:
    e = "bert.embeddings."
    pairs = [("embed_tokens.weight", e + "word_embeddings.weight"),
             ("position.embedding.weight", e + "position_embeddings.weight"),
             ("token_type.weight", e + "token_type_embeddings.weight"),
             ("embed_norm.weight", e + "LayerNorm.weight"),
             ("embed_norm.bias", e + "LayerNorm.bias"),
             ("pooler.weight", "bert.pooler.dense.weight"),
             ("pooler.bias", "bert.pooler.dense.bias")]
    if c.num_labels:
        pairs += [("classifier.weight", "classifier.weight"),
                  ("classifier.bias", "classifier.bias")]
    else:
        t = "cls.predictions."
        pairs += [("mlm_transform.weight", t + "transform.dense.weight"),
                  ("mlm_transform.bias", t + "transform.dense.bias"),
                  ("mlm_norm.weight", t + "transform.LayerNorm.weight"),
                  ("mlm_norm.bias", t + "transform.LayerNorm.bias"), ("mlm_bias", t + "bias")]
    for i in range(c.n_layers):
        ours, hf = f"encoder.layers.{i}.", f"bert.encoder.layer.{i}."
        names = [("self_attn.q_proj", "attention.self.query"),
                 ("self_attn.k_proj", "attention.self.key"),
                 ("self_attn.v_proj", "attention.self.value"),
                 ("self_attn.out_proj", "attention.output.dense"),
                 ("self_attn_norm", "attention.output.LayerNorm"),
                 ("feed_forward.up_proj", "intermediate.dense"),
                 ("feed_forward.down_proj", "output.dense"), ("ffn_norm", "output.LayerNorm")]
        pairs += [(f"{ours}{a}.{p}", f"{hf}{b}.{p}") for a, b in names for p in ("weight", "bias")]
    return pairs


def state_dict_from_hf(hf: dict[str, Tensor], config: Any) -> dict[str, Tensor]:
    """Our Bert state dict from an HF one (BertModel keys without the `bert.` prefix work too);
    heads the HF model lacks (BertForMaskedLM has no pooler) keep their initial weights."""
    if not any(k.startswith("bert.") for k in hf):
        hf = {f"bert.{k}": v for k, v in hf.items()}
    ignored = {k for k in hf if k.endswith(("position_ids", "token_type_ids"))}
    ignored |= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}  # tied
    return renamed_from_hf(hf, _pairs(config), ignored, "BERT")


def state_dict_to_hf(model: nn.Module) -> dict[str, Tensor]:
    return renamed_to_hf(model, _pairs(model.config))
