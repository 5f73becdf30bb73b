"""Saving and loading attnlab models: `config.json` + `model.safetensors` in one folder.

Weights are safetensors only (no pickles); every file is written to a temporary name in the
same folder and renamed, so an interrupted save never leaves a half-written file under the
final name. Loading is strict: missing, unexpected or mis-shaped tensors raise an error that
names them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch import nn

from attnlab import __version__
from attnlab.serialization import WEIGHTS_NAME, atomic_write, load_weights

CONFIG_NAME = "config.json"


def config_to_dict(config: Any) -> dict[str, Any]:
    return {"model_type": type(config).model_type, **dataclasses.asdict(config),
            "attnlab_version": __version__}


def model_types() -> dict[str, type[nn.Module]]:
    """model_type string -> model class, for every family with presets."""
    from attnlab.models import PRESETS  # late import: models/__init__ imports this module

    return {p.model_class.config_class.model_type: p.model_class for p in PRESETS.values()}


def config_from_dict(values: dict[str, Any]) -> Any:
    values = dict(values)
    model_type = values.pop("model_type", None)
    values.pop("attnlab_version", None)
    classes = model_types()
    if model_type not in classes:
        raise ValueError(
            f"config model_type {model_type!r} is not one of {sorted(classes)}"
        )
    config_class = classes[model_type].config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {model_type} config field(s): {unknown}")
    return config_class(**values)


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` (tied weights stored once) into `directory`."""
    directory = Path(directory)
    config_text = json.dumps(config_to_dict(model.config), indent=2) + "\n"
    atomic_write(directory / WEIGHTS_NAME,
                 lambda tmp: save_model(model, tmp, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(config_text))
    return directory


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by `save_pretrained`, in eval mode."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {directory} a saved attnlab model?")
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: invalid JSON ({error})") from None
    config = config_from_dict(values)
    model = model_types()[config.model_type](config)
    load_weights(model, directory / WEIGHTS_NAME)
    return model.to(map_location).eval()
