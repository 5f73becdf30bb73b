"""Files on disk: atomic writes and the one strict check of a state dict against a model.

Every file is written to a temporary name in its folder and renamed, so an interrupted write
never leaves a half-written file under the final name. Weights are safetensors (or, read only,
a `weights_only` torch file); nothing unpickles arbitrary objects.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from attnlab.errors import FolderError

WEIGHTS_NAME = "model.safetensors"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` then rename the temporary file onto `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; an unreadable file is a FolderError naming it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise FolderError(f"{path}: not a readable safetensors file ({error})") from None


def load_state_strict(model: nn.Module, state: Mapping[str, Tensor], where: str | Path, *,
                      optional: Iterable[str] = (), ignore_unexpected: bool = False) -> None:
    """Load `state` into `model`, refusing (FolderError) any missing, unexpected or mis-shaped
    tensor and naming each. The one weight check of attnlab: checkpoints, both folder layouts
    and fine-tuning starts all go through it.

    A tied parameter stored once under either of its names counts as present. `optional`
    names prefixes of model weights a file may lack (they keep their initial values: a BERT
    masked-LM folder has no pooler). `ignore_unexpected` lets a caller keep part of a file
    (a classifier started from an encoder drops the old head).
    """
    expected = model.state_dict()
    shared = {name for name, t in expected.items() if name not in state and any(
        other in state and t.data_ptr() == expected[other].data_ptr()
        for other in expected if other != name)}
    prefixes = tuple(optional)
    missing = sorted(name for name in set(expected) - set(state) - shared
                     if not (prefixes and name.startswith(prefixes)))
    unexpected = [] if ignore_unexpected else sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{name}: file {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(state) & set(expected) if state[name].shape != expected[name].shape
    )
    if missing or unexpected or mismatched:
        raise FolderError(
            f"{where}: the weights do not fit the model's config: missing={missing[:10]}, "
            f"unexpected={unexpected[:10]}, mis-shaped={mismatched[:10]}"
            + (" (first 10 of each)" if max(map(len, (missing, unexpected, mismatched))) > 10
               else "")
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into `model` strictly (see `load_state_strict`)."""
    load_state_strict(model, read_safetensors(path), path)
