"""Moved to `attnlab.io.hf.t5` (old names kept for one release; see CHANGELOG.md)."""

from __future__ import annotations

from typing import Any

from attnlab.io.hf.t5 import *  # noqa: F403
from attnlab.io.hf.t5 import config_values_from_hf
from attnlab.models.t5 import T5Config


def config_from_hf(hf: dict[str, Any]) -> T5Config:
    """Our config object from an HF config dict (now `T5Config(**config_values_from_hf(hf))`)."""
    return T5Config(**config_values_from_hf(hf))
