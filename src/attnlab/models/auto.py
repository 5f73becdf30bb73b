"""Any model folder to its family: the model_type -> class table handed to the folder owner.

    model = attnlab.from_pretrained("runs/x")   # attnlab or Hugging Face layout
    model = attnlab.from_pretrained("m.gguf")   # a llama.cpp file (io/gguf.py)
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from attnlab.io import load_folder


def model_classes() -> dict[str, type[nn.Module]]:
    """Our model_type -> model class, for every family with presets."""
    from attnlab.models import PRESETS  # the presets module imports every family file

    return {p.model_class.config_class.model_type: p.model_class for p in PRESETS.values()}


def from_pretrained(directory: str | Path) -> nn.Module:
    """The model in a local folder written by attnlab or `transformers`, or in a llama.cpp
    `.gguf` file (LLaMA family; Q4_0 / Q4_1 kept 4-bit, the rest float32), in eval mode."""
    return load_folder(directory, model_classes())
