"""Moved to `attnlab.io.hf.gpt2` (old names kept for one release; see CHANGELOG.md)."""

from __future__ import annotations

from typing import Any

from attnlab.io.hf.gpt2 import *  # noqa: F403
from attnlab.io.hf.gpt2 import config_values_from_hf
from attnlab.models.gpt import GPTConfig


def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """Our config object from an HF config dict (now `GPTConfig(**config_values_from_hf(hf))`)."""
    return GPTConfig(**config_values_from_hf(hf))
