"""Moved to `attnlab.io` (old names kept for one release; see CHANGELOG.md):
`from_pretrained` is `attnlab.from_pretrained`, `save_hf(model, dir)` is
`model.save_pretrained(dir, layout="hf")`, `read_weights` is `attnlab.io.read_weights`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from attnlab.io import HF_LAYOUTS as FAMILIES
from attnlab.io import read_weights, save_folder
from attnlab.models.auto import from_pretrained

__all__ = ["FAMILIES", "from_pretrained", "read_weights", "save_hf"]


def save_hf(model: nn.Module, directory: str | Path) -> Path:
    """`model` in Hugging Face layout (now `model.save_pretrained(directory, layout="hf")`)."""
    return save_folder(model, directory, layout="hf")
