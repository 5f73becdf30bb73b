"""Does a folder's config fit its weights? Checked before the model is built, so a config that
asks for a huge model (a typo'd `vocab_size`) is a one-line error naming the field instead of an
allocation traceback.

The model is built on PyTorch's "meta" device, which records every parameter's shape and
allocates nothing; its state dict is compared with the weights file's tensors (read as shapes
only where the format allows: a safetensors header). The comparison is the one
`serialization.load_state_strict` makes after the real build (missing, unexpected and
mis-shaped tensors, a tied tensor stored once under either name counting as present), plus the
config field that explains a mis-shaped tensor when one does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import FolderError


def meta_model(model_class: type[nn.Module], config: Any) -> nn.Module:
    """`model_class(config)` with every tensor on the meta device: shapes, no memory."""
    with torch.device("meta"):
        return model_class(config)


def tied_names(model: nn.Module) -> dict[str, set[str]]:
    """Each state dict name -> the other names of the same tensor (tied weights)."""
    by_tensor: dict[int, list[str]] = {}
    named = [*model.named_parameters(remove_duplicate=False),
             *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        by_tensor.setdefault(id(tensor), []).append(name)
    return {name: set(names) - {name} for names in by_tensor.values() for name in names}


def explaining_field(config: Any, expected: tuple[int, ...], found: tuple[int, ...],
                     file_values: Mapping[str, Any]) -> str | None:
    """The config field (`name=value`) whose value is a dimension the config implies and the
    file does not hold, e.g. `vocab_size=2000` for (2000, 64) vs (1000, 64); None if none."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    sizes = {name: value for name, value in values.items()
             if isinstance(value, int) and not isinstance(value, bool)}
    for want, have in zip(expected, found, strict=False):
        if want == have:
            continue
        names = [name for name, value in sizes.items() if value == want]
        if names:
            return ", ".join(_label(name, want, file_values) for name in names)
    return None


def _label(name: str, value: int, file_values: Mapping[str, Any]) -> str:
    """`name=value`, with the file's own key when its layout names the field differently."""
    if name in file_values:
        return f"{name}={value}"
    keys = [key for key, v in file_values.items() if v == value and not isinstance(v, bool)]
    return f"{name}={value} (the file's {keys[0]})" if len(keys) == 1 else f"{name}={value}"


def check_weights_fit(model_class: type[nn.Module], config: Any, state: Mapping[str, Tensor],
                      where: str | Path, weights: str | Path, *, optional: Iterable[str] = (),
                      file_values: Mapping[str, Any] | None = None) -> None:
    """Raise a FolderError (naming `where`, the config file, and the field or the tensors)
    unless `state` (our names; meta or real tensors) holds exactly the tensors, with exactly
    the shapes, of `model_class(config)`. Nothing is allocated."""
    skeleton = meta_model(model_class, config)
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    ties = tied_names(skeleton)
    prefixes = tuple(optional)
    missing = sorted(name for name in expected if name not in state
                     and not ties.get(name, set()) & set(state)
                     and not (prefixes and name.startswith(prefixes)))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted((name, expected[name], tuple(state[name].shape))
                        for name in set(state) & set(expected)
                        if tuple(state[name].shape) != expected[name])
    if not (missing or unexpected or mismatched):
        return
    shown = [f"{name}: file {have} vs model {want}" for name, want, have in mismatched]
    head, listed = f"{where}: the config does not fit the weights in {weights}", {
        "missing": missing, "unexpected": unexpected, "mis-shaped": shown}
    joint = ": "
    if mismatched:
        name, want, have = mismatched[0]
        field = explaining_field(config, want, have, file_values or {})
        if field is not None:  # name the field; list the rest of what differs
            head = (f"{where}: {field} does not match the weights ({name} is {have} in "
                    f"{weights}, the config implies {want})")
            listed = {"missing": missing, "unexpected": unexpected, "mis-shaped": shown[1:]}
            listed = {key: names for key, names in listed.items() if names}
            joint = "; also "
    details = ", ".join(f"{key}={names[:10]}" for key, names in listed.items())
    truncated = any(len(names) > 10 for names in listed.values())
    raise FolderError(head + (joint + details if details else "")
                      + (" (first 10 of each)" if truncated else ""))
