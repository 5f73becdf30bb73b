"""Moved to `attnlab.io` (old names kept for one release; see CHANGELOG.md):
`save_pretrained(model, dir)` is `model.save_pretrained(dir, layout="attnlab")`,
`from_pretrained(dir)` is `attnlab.from_pretrained(dir)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.io import CONFIG_NAME, config_to_dict, save_folder
from attnlab.io import config_from_dict as _config_from_dict
from attnlab.models.auto import model_classes as model_types

__all__ = ["CONFIG_NAME", "config_from_dict", "config_to_dict", "from_pretrained",
           "model_types", "save_pretrained"]


def config_from_dict(values: dict[str, Any]) -> Any:
    return _config_from_dict(values, model_types())


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    return save_folder(model, directory, layout="attnlab")


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    from attnlab.models.auto import from_pretrained as load

    return load(directory).to(map_location)
