"""DeiT (Touvron et al. 2021) folders of Hugging Face `transformers` -> our ViT with
`distillation=True`: DeiTModel and DeiTForImageClassificationWithTeacher. The names and the
save direction are ViT's (`io/hf/vit.py` writes a distillation config as a DeiT folder)."""

from __future__ import annotations

from typing import Any

from attnlab.io.hf.vit import (
    config_to_hf,
    config_values,
    optional_prefixes,
    state_dict_from_hf,
    state_dict_to_hf,
    unsupported,
)

MODEL_TYPE = "vit"  # a DeiT is a ViT with the distillation token


def config_values_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    architectures = hf.get("architectures") or []
    if "DeiTForImageClassification" in architectures:
        raise ValueError("DeiTForImageClassification (one head on [CLS], the distillation "
                         "token unused) is not supported; attnlab reads DeiTModel and "
                         "DeiTForImageClassificationWithTeacher")
    classify = "DeiTForImageClassificationWithTeacher" in architectures
    return config_values(hf, distillation=True, classify=classify)


__all__ = ["MODEL_TYPE", "config_to_hf", "config_values_from_hf", "optional_prefixes",
           "state_dict_from_hf", "state_dict_to_hf", "unsupported"]
