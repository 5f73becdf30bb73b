"""Moved to `attnlab.io.hf.llama` (old names kept for one release; see CHANGELOG.md)."""

from __future__ import annotations

from typing import Any

from attnlab.io.hf.llama import *  # noqa: F403
from attnlab.io.hf.llama import config_values_from_hf
from attnlab.models.llama import LlamaConfig


def config_from_hf(hf: dict[str, Any]) -> LlamaConfig:
    """Our config object from an HF config dict (now `LlamaConfig(**config_values_from_hf(hf))`)."""
    return LlamaConfig(**config_values_from_hf(hf))
