"""Load and save a model folder, in attnlab's layout or Hugging Face's, for every family.

A folder is config.json + model.safetensors (or a `weights_only` pytorch_model.bin) and, when
the model has one, tokenizer.json. attnlab's layout stores our config fields and weight names
(config.json carries `attnlab_version`); the Hugging Face layout stores the names
`transformers` uses, so its `from_pretrained` reads the folder and ours reads theirs.
Nothing is downloaded; weights are never unpickled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from safetensors.torch import save_file
from torch import nn

from attnlab.errors import ConfigError, FolderError, MissingFileError
from attnlab.io.files import (
    CONFIG_NAME,
    TOKENIZER_NAME,
    checked,
    model_dir,
    read_config,
    read_weight_shapes,
    read_weights,
    weights_file,
    write_json,
)
from attnlab.io.fit import check_weights_fit
from attnlab.io.generation_config import save_generation_config
from attnlab.io.gguf import is_gguf, load_gguf, load_gguf_tokenizer
from attnlab.io.hf import (
    ast,
    bert,
    clip,
    deit,
    gpt2,
    llama,
    mamba,
    marian,
    mixtral,
    rwkv,
    t5,
    vit,
)
from attnlab.io.limits import check_sizes
from attnlab.serialization import WEIGHTS_NAME, atomic_write, load_state_strict
from attnlab.tokenizers import Tokenizer
from attnlab.tokenizers.sentencepiece_marian import is_marian_folder, marian_tokenizer
from attnlab.version import __version__

log = logging.getLogger(__name__)

# Hugging Face model_type -> the layout module that maps it onto our family.
HF_LAYOUTS: dict[str, ModuleType] = {"gpt2": gpt2, "llama": llama, "mistral": llama,
                                     "qwen2": llama, "bert": bert, "t5": t5, "marian": marian,
                                     "vit": vit, "deit": deit,
                                     "audio-spectrogram-transformer": ast, "clip": clip,
                                     "mixtral": mixtral, "rwkv": rwkv, "mamba": mamba}
# Our model_type -> the layout a save in Hugging Face names uses. A layout with
# `unsupported(config)` (Marian for our Transformer) holds only the configs it names None for;
# one without it holds no config with mixture-of-experts layers (`moe`).
SAVE_LAYOUTS: dict[str, ModuleType] = {m.MODEL_TYPE: m
                                       for m in (gpt2, llama, bert, t5, marian, vit, ast,
                                                 clip, mixtral, rwkv, mamba)}
LAYOUTS = ("auto", "hf", "attnlab")
# Config fields older attnlab folders carry that are no longer model settings.
RETIRED_FIELDS = {"label_smoothing": "a setting of the training run (train_settings.json)"}


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config.json content of attnlab's layout."""
    return {"model_type": type(config).model_type, **dataclasses.asdict(config),
            "attnlab_version": __version__}


def config_from_dict(values: Mapping[str, Any], model_classes: Mapping[str, type],
                     where: str | Path = "config") -> Any:
    """Our config from attnlab-layout values; unknown model types and fields are named,
    retired fields are dropped (with a log line saying where they went)."""
    values = dict(values)
    model_type = values.pop("model_type", None)
    values.pop("attnlab_version", None)
    if model_type not in model_classes:
        raise FolderError(f"{where}: model_type {model_type!r} is not one of "
                          f"{sorted(model_classes)}")
    for name in sorted(set(values) & set(RETIRED_FIELDS)):
        log.info("%s: ignoring %s=%r, now %s", where, name, values.pop(name),
                 RETIRED_FIELDS[name])
    config_class = model_classes[model_type].config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise FolderError(f"{where}: unknown {model_type} config field(s) {unknown}; "
                          f"valid: {sorted(fields)}")
    return config_class(**values)


def hf_unsupported(model_type: str, config: Any) -> str | None:
    """Why the Hugging Face layout of `model_type` cannot hold `config` (None when it can)."""
    family = SAVE_LAYOUTS.get(model_type)
    if family is None:
        return f"no Hugging Face layout for model_type {model_type!r}"
    if hasattr(family, "unsupported"):
        return family.unsupported(config)
    if getattr(config, "moe", None) is not None:
        return f"transformers' {model_type} has no mixture-of-experts layers (moe)"
    return None


def save_folder(model: nn.Module, directory: str | Path, layout: str = "auto",
                tokenizer: Tokenizer | None = None,
                generation: dict[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer.json, + generation_config.json from
    `generation`: the decoding settings the folder suggests) into `directory`.

    layout "hf" writes Hugging Face names (transformers loads the folder with its own
    `from_pretrained`); "attnlab" writes ours; "auto" picks "hf" for the families
    transformers has (GPT-2, LLaMA, BERT, T5, ViT / DeiT, Mixtral, Mamba, RWKV, and a
    Transformer Marian's layout holds; GPT-2, LLaMA and T5 without `moe`) and "attnlab" for
    the others. Each file
    is written to a temporary name and renamed; config.json comes last, so a folder with a
    config.json holds weights that fit it.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be 'auto', 'hf' or 'attnlab', got {layout!r}")
    model_type = type(model.config).model_type
    if layout == "auto":
        layout = "hf" if hf_unsupported(model_type, model.config) is None else "attnlab"
    if layout == "hf" and model_type not in SAVE_LAYOUTS:
        raise ConfigError(f"no Hugging Face layout for model_type {model_type!r}; "
                          f"supported: {sorted(SAVE_LAYOUTS)}")
    if layout == "hf" and (problem := hf_unsupported(model_type, model.config)) is not None:
        raise ConfigError(f"no Hugging Face layout for model_type {model_type!r} with this "
                          f"config: {problem}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if layout == "hf":
        family = SAVE_LAYOUTS[model_type]
        config = family.config_to_hf(model.config)
        state = family.state_dict_to_hf(model)
    else:
        config = config_to_dict(model.config)
        state = model.state_dict()
    state = _stored_once(state)
    atomic_write(directory / WEIGHTS_NAME,
                 lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_NAME)
    if generation is not None:
        save_generation_config(directory, generation)
    write_json(directory / CONFIG_NAME, config)
    return directory


def _stored_once(state: Mapping[str, Any]) -> dict[str, Any]:
    """Contiguous CPU tensors with each shared (tied) tensor kept under its first name only."""
    kept: dict[str, Any] = {}
    seen: set[int] = set()
    for name, tensor in state.items():
        pointer = tensor.data_ptr()
        if pointer in seen:
            continue
        seen.add(pointer)
        kept[name] = tensor.detach().cpu().contiguous()
    return kept


def load_folder(directory: str | Path, model_classes: Mapping[str, type]) -> nn.Module:
    """The model in `directory`, in eval mode, from either layout. `model_classes` maps our
    model_type to its class (`attnlab.models.model_classes()`).

    Nothing is allocated before the config is known to be sane and to fit the weights: its
    size fields are checked against `attnlab.io.limits`, then the model is built on the meta
    device and compared tensor by tensor with the weights file (a safetensors header is read
    alone); only then is the model built and loaded (a FolderError names the field or tensor).
    A `.gguf` file in place of the folder is read by `io/gguf.py` (LLaMA family).
    """
    if is_gguf(directory):
        return load_gguf(directory, model_classes)
    directory = model_dir(directory)
    values = read_config(directory)
    where = directory / CONFIG_NAME
    if "attnlab_version" in values:
        check_sizes(values, str(where), FolderError)
        config = checked(where, config_from_dict, values, model_classes, where)
        model_class = model_classes[config.model_type]
        to_ours: Any = None
        optional: tuple[str, ...] = ()
    else:
        hf_type = values.get("model_type")
        if hf_type not in HF_LAYOUTS:
            raise FolderError(f"{where}: model_type {hf_type!r} is not supported; attnlab reads "
                              f"{sorted(HF_LAYOUTS)} and its own layout")
        family = HF_LAYOUTS[hf_type]
        ours = checked(where, family.config_values_from_hf, values)
        check_sizes(ours, str(where), FolderError)
        model_class = model_classes[family.MODEL_TYPE]
        config = checked(where, lambda v: model_class.config_class(**v), ours)
        to_ours = family.state_dict_from_hf
        optional = tuple(family.optional_prefixes(values)) \
            if hasattr(family, "optional_prefixes") else ()

    def ours_of(state: dict[str, Any]) -> dict[str, Any]:
        return state if to_ours is None else checked(directory, to_ours, state, config)

    shapes = read_weight_shapes(directory)  # meta tensors from a safetensors header
    check_weights_fit(model_class, config, ours_of(shapes), where, weights_file(directory),
                      optional=optional, file_values=values)
    real = any(t.device.type != "meta" for t in shapes.values())  # a .bin was loaded already
    model = model_class(config)
    load_state_strict(model, ours_of(shapes if real else read_weights(directory)), directory,
                      optional=optional)
    return model.eval()


def load_tokenizer(directory: str | Path, required: bool = True) -> Tokenizer | None:
    """The folder's tokenizer.json as attnlab's one Tokenizer type (None when absent and not
    `required`); without one, an OPUS-MT folder's source.spm + vocab.json converted
    (`tokenizers/sentencepiece_marian.py`); for a `.gguf` file, the tokenizer it embeds."""
    if is_gguf(directory):
        return load_gguf_tokenizer(directory, required)
    path = model_dir(directory) / TOKENIZER_NAME
    if not path.is_file() and is_marian_folder(path.parent):  # OPUS-MT: source.spm, vocab.json
        return marian_tokenizer(path.parent)
    if not path.is_file():
        if not required:
            return None
        raise MissingFileError(
            f"{path} not found: the model's tokenizer.json must sit beside its weights "
            "(attnlab's training commands write it; with transformers, "
            "`tokenizer.save_pretrained(DIR)` of a fast tokenizer does)")
    return Tokenizer.load(path)
