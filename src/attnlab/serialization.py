"""Files on disk: atomic writes and strict safetensors weight loading.

Every file is written to a temporary name in its folder and renamed, so an interrupted write
never leaves a half-written file under the final name. Weights are safetensors only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

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


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into `model` strictly, naming what does not fit."""
    path = Path(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    expected = model.state_dict()
    # Tied parameters are stored once; accept either name of a shared tensor.
    shared = {name for name, t in expected.items() if name not in state and any(
        other in state and t.data_ptr() == expected[other].data_ptr()
        for other in expected if other != name)}
    missing = sorted(set(expected) - set(state) - shared)
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{name}: file {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(state) & set(expected) if state[name].shape != expected[name].shape
    )
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not match the model: missing={missing}, unexpected={unexpected}, "
            f"mismatched shapes={mismatched}"
        )
    model.load_state_dict(state, strict=False)
