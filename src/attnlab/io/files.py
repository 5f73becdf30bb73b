"""The files of a model folder, read and written one way: config.json, the weights
(model.safetensors, or a `weights_only` pytorch_model.bin), any JSON settings file.

Errors name the file and what was expected (MissingFileError, FolderError); writes are atomic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from attnlab.errors import FolderError, MissingFileError
from attnlab.serialization import WEIGHTS_NAME, atomic_write, read_safetensors

CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
BIN_WEIGHTS_NAME = "pytorch_model.bin"


def model_dir(directory: str | Path) -> Path:
    """`directory` as a Path, refusing a path that is not a folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"{directory} is not a folder; expected a model folder "
                               f"(config.json, {WEIGHTS_NAME}, {TOKENIZER_NAME})")
    return directory


def read_json(path: Path, what: str = "JSON object") -> dict[str, Any]:
    """A JSON object from `path`; bad JSON or another type is a FolderError naming the file."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FolderError(f"{path}: invalid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise FolderError(f"{path}: not UTF-8 text ({error})") from None
    if not isinstance(values, dict):
        raise FolderError(f"{path}: expected a {what}, got {type(values).__name__}")
    return values


def read_config(directory: str | Path) -> dict[str, Any]:
    """The parsed config.json of a model folder."""
    directory = model_dir(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        why = unfinished_run(directory) or f"{directory} is not a model folder"
        raise MissingFileError(f"{path} not found: {why}")
    return read_json(path, "JSON config")


def unfinished_run(directory: Path) -> str | None:
    """What to say of a training run folder without its final model (interrupted or failed:
    its checkpoints are kept), or None when `directory` holds no run."""
    if not (directory / "train_settings.json").is_file():
        return None
    try:
        task = json.loads((directory / "run.json").read_text(encoding="utf-8"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        task = "TASK"
    return (f"{directory} holds a training run that has not finished (interrupted or failed; "
            f"its checkpoints are kept): continue it with `attnlab train {task} --out "
            f"{directory} --resume`, or average its checkpoints into a model with "
            f"`attnlab average --model {directory} --last N --out DIR`")


def write_json(path: str | Path, values: Any) -> Path:
    """`values` as indented JSON, written atomically."""
    text = json.dumps(values, indent=2) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def weights_file(directory: str | Path) -> Path:
    """The folder's weights file: model.safetensors, else pytorch_model.bin."""
    directory = Path(directory)
    for path in (directory / WEIGHTS_NAME, directory / BIN_WEIGHTS_NAME):
        if path.is_file():
            return path
    raise MissingFileError(f"{directory} holds neither {WEIGHTS_NAME} nor {BIN_WEIGHTS_NAME}")


def read_weight_shapes(directory: str | Path) -> dict[str, Tensor]:
    """The folder's tensors with their shapes but, where the format allows, without their data:
    a safetensors file's header gives "meta" tensors (nothing is read or allocated beyond the
    header); a pytorch_model.bin can only be seen by loading it (`weights_only`), so its real
    tensors come back."""
    path = weights_file(directory)
    if path.name != WEIGHTS_NAME:
        return read_weights(directory)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: torch.empty(f.get_slice(name).get_shape(), device="meta")
                    for name in f.keys()}
    except (SafetensorError, OSError) as error:
        raise FolderError(f"{path}: not a readable safetensors file ({error})") from None


def read_weights(directory: str | Path) -> dict[str, Tensor]:
    """The folder's tensors: model.safetensors, else pytorch_model.bin read with
    `weights_only=True` (a pickle of arbitrary objects is refused, never run)."""
    directory = Path(directory)
    safetensors_path, bin_path = directory / WEIGHTS_NAME, directory / BIN_WEIGHTS_NAME
    if safetensors_path.is_file():
        return read_safetensors(safetensors_path)
    if bin_path.is_file():
        try:
            return torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as error:  # an object pickle is refused by weights_only
            raise FolderError(f"{bin_path}: cannot load as plain tensors ({error})") from None
    raise MissingFileError(f"{directory} holds neither {WEIGHTS_NAME} nor {BIN_WEIGHTS_NAME}")


def checked(where: str | Path, function: Any, *args: Any) -> Any:
    """`function(*args)`, with a ValueError (a config value or weight name a layout or config
    refuses) raised as a FolderError naming the file or folder `where`."""
    try:
        return function(*args)
    except FolderError:
        raise
    except ValueError as error:
        raise FolderError(f"{where}: {error}") from None

