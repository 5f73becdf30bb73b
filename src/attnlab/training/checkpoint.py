"""Resumable training checkpoints (the fairseq / torchtitan discipline).

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding `model.safetensors` (weights,
safetensors) and `training_state.pt` (optimizer state, step, data position, RNG states: plain
tensors and numbers only, loaded with `torch.load(weights_only=True)`, never arbitrary pickles).
Each file is written to a temporary name and renamed; the folder itself is assembled under a
temporary name and renamed, and only then does the `latest` pointer move. An interrupted save
leaves the previous checkpoint intact and `latest` pointing at it.

Each checkpoint carries the id of the run that wrote it (`run_id` in the safetensors metadata
and the training state), so averaging refuses to mix two runs' steps and a resume refuses
another run's checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from attnlab.errors import FolderError
from attnlab.serialization import WEIGHTS_NAME, atomic_write, load_weights

log = logging.getLogger(__name__)

STATE_NAME = "training_state.pt"
LATEST_NAME = "latest"


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(
    root: str | Path, step: int, model: nn.Module, state: dict[str, Any], keep_last: int = 5,
    run_id: str | None = None,
) -> Path:
    """Write checkpoint `step` under `root`, move `latest` to it, prune to `keep_last`;
    `run_id` is stored with the weights and in the state."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        metadata = {"format": "pt", **({"run_id": run_id} if run_id else {})}
        save_model(model, str(staging / WEIGHTS_NAME), metadata=metadata)
        torch.save({**state, "run_id": run_id} if run_id else state, staging / STATE_NAME)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic_write(root / LATEST_NAME, lambda tmp: Path(tmp).write_text(final.name + "\n"))
    prune(root, keep_last)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if (p / WEIGHTS_NAME).is_file()
             and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (never the one `latest` names) and any
    temporary leftovers of interrupted saves."""
    for leftover in root.glob(".step_*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    latest = latest_checkpoint(root)
    for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint `latest` names, else the newest complete one, else None."""
    root = Path(root)
    pointer = root / LATEST_NAME
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / WEIGHTS_NAME).is_file() and (candidate / STATE_NAME).is_file():
            return candidate
    complete = list_checkpoints(root)
    return complete[-1] if complete else None


def load_checkpoint(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load weights into `model` and return the training state dict."""
    path = Path(path)
    load_weights(model, path / WEIGHTS_NAME)
    try:
        return torch.load(path / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file or a forbidden (pickled object) payload
        raise ValueError(f"{path / STATE_NAME}: cannot load training state ({error})") from None


def checkpoint_run_id(path: str | Path) -> str | None:
    """The id of the run that wrote the checkpoint at `path` (None: written before run ids)."""
    weights = Path(path) / WEIGHTS_NAME
    try:
        with safe_open(str(weights), framework="pt") as f:
            return (f.metadata() or {}).get("run_id")
    except (SafetensorError, OSError) as error:
        raise FolderError(f"{weights}: not a readable safetensors file ({error})") from None


def check_one_run(paths: list[Path], expected: str | None = None) -> None:
    """Refuse checkpoints written by different runs (or by a run other than `expected`),
    naming each checkpoint's run. Checkpoints that all predate run ids pass."""
    ids = {Path(p): checkpoint_run_id(p) for p in paths}
    found = set(ids.values())
    if len(found) > 1 or (expected and found != {None} and found != {expected}):
        named = ", ".join(f"{p.name} (run {i or 'unknown'})" for p, i in ids.items())
        wanted = f"; the run folder is run {expected}" if expected else ""
        raise FolderError(f"{Path(paths[0]).parent}: refusing to average checkpoints of "
                          f"different runs: {named}{wanted}; average steps of one run only")


def average_checkpoints(paths: list[Path], model: nn.Module,
                        run_id: str | None = None) -> nn.Module:
    """Load the element-wise mean of several checkpoints' weights into `model` (Vaswani et al.
    2017 averaged the last 5 or 20 checkpoints). Checkpoints of different runs (or, given
    `run_id`, of another run) are refused."""
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    check_one_run(paths, run_id)
    total: dict[str, torch.Tensor] | None = None
    for path in paths:
        load_weights(model, Path(path) / WEIGHTS_NAME)
        state = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
        total = state if total is None else {k: total[k] + state[k] for k in total}
    assert total is not None
    reference = model.state_dict()
    averaged = {k: (v / len(paths)).to(reference[k].dtype) for k, v in total.items()}
    model.load_state_dict(averaged)
    return model


def average_last(model: nn.Module, checkpoint_dir: str | Path, count: int) -> list[str]:
    """Load the mean of the newest `count` checkpoints into `model` (none when count is 0);
    the names of the checkpoints averaged."""
    if count <= 0:
        return []
    chosen = list_checkpoints(checkpoint_dir)[-count:]
    if len(chosen) < count:
        log.warning("average_last=%d but only %d checkpoint(s) exist; averaging those",
                    count, len(chosen))
    average_checkpoints(chosen, model)
    return [p.name for p in chosen]
