"""Read and write Hugging Face model folders (local only; nothing is downloaded).

`from_pretrained(dir)` accepts a folder written by `transformers` (`config.json` with its
`model_type`, and `model.safetensors` or `pytorch_model.bin`) or by attnlab itself, and returns
our model in eval mode. `save_hf(model, dir)` writes a folder `transformers` loads with its own
`from_pretrained`. Weights are never unpickled: `.bin` files go through
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from attnlab.interop import bert, gpt2, llama, t5
from attnlab.serialization import atomic_write

# HF model_type -> module with config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf
# (and optionally optional_prefixes(config values): our weight names a folder may lack)
FAMILIES: dict[str, ModuleType] = {"gpt2": gpt2, "llama": llama, "mistral": llama,
                                   "qwen2": llama, "bert": bert, "t5": t5}


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a model folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None


def read_weights(directory: Path) -> dict[str, Tensor]:
    safetensors_path, bin_path = directory / "model.safetensors", directory / "pytorch_model.bin"
    if safetensors_path.is_file():
        try:
            return load_file(str(safetensors_path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{safetensors_path}: not a readable safetensors file "
                             f"({error})") from None
    if bin_path.is_file():
        try:
            return torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as error:  # a pickle of arbitrary objects is refused here
            raise ValueError(f"{bin_path}: cannot load as plain tensors ({error})") from None
    raise FileNotFoundError(f"{directory} holds neither model.safetensors nor pytorch_model.bin")


def from_pretrained(directory: str | Path) -> nn.Module:
    """Our model from a local Hugging Face or attnlab folder."""
    directory = Path(directory)
    values = _read_config(directory)
    if "attnlab_version" in values:
        from attnlab.models.io import from_pretrained as native

        return native(directory)
    model_type = values.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"{directory}/config.json: model_type {model_type!r} is not supported; "
                         f"attnlab reads {sorted(FAMILIES)}")
    family = FAMILIES[model_type]
    config = family.config_from_hf(values)
    from attnlab.models.io import model_types

    model = model_types()[type(config).model_type](config)
    state = family.state_dict_from_hf(read_weights(directory), config)
    expected = model.state_dict()
    head = getattr(model, "lm_head", None)
    tied = {"lm_head.weight"} if head is not None and head.weight is model.embed_tokens.weight \
        else set()
    # Weights a family's checkpoints may lack keep their initial values.
    prefixes = family.optional_prefixes(values) if hasattr(family, "optional_prefixes") else ()
    optional = {k for k in expected if k.startswith(prefixes)}
    missing = sorted(set(expected) - set(state) - tied - optional)
    mismatched = sorted(f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                        for k, v in state.items() if k in expected and v.shape != expected[k].shape)
    if missing or mismatched:
        raise ValueError(f"{directory}: weights do not fit the config: missing={missing[:10]}, "
                         f"mis-shaped={mismatched[:10]}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def save_hf(model: nn.Module, directory: str | Path) -> Path:
    """Write `config.json` + `model.safetensors` in Hugging Face's names and layout."""
    model_type = type(model.config).model_type
    if model_type not in FAMILIES:
        raise ValueError(f"no Hugging Face layout for model_type {model_type!r}; "
                         f"supported: {sorted(FAMILIES)}")
    family = FAMILIES[model_type]
    directory = Path(directory)
    config_text = json.dumps(family.config_to_hf(model.config), indent=2) + "\n"
    state = {k: v.detach().cpu().contiguous() for k, v in family.state_dict_to_hf(model).items()}
    atomic_write(directory / "model.safetensors",
                 lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(directory / "config.json", lambda tmp: Path(tmp).write_text(config_text))
    return directory
