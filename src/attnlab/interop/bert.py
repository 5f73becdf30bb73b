"""Moved to `attnlab.io.hf.bert` (old names kept for one release; see CHANGELOG.md)."""

from __future__ import annotations

from typing import Any

from attnlab.io.hf.bert import *  # noqa: F403
from attnlab.io.hf.bert import config_values_from_hf
from attnlab.models.bert import BertConfig


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    """Our config object from an HF config dict (now `BertConfig(**config_values_from_hf(hf))`)."""
    return BertConfig(**config_values_from_hf(hf))
