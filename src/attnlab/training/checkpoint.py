"""Resumable training checkpoints (the fairseq / torchtitan discipline).

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding `model.safetensors` (the whole
model's weights, safetensors: what averaging, `attnlab evaluate` and people read),
`state/` (model and optimizer state written by `torch.distributed.checkpoint`: one shard per
process, loadable by any number of processes), `rng/rank_R.pt` (each process's random state)
and `training_state.pt` (step, data position, history: plain tensors and numbers only, loaded
with `torch.load(weights_only=True)`, never arbitrary pickles).
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
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from attnlab.errors import FolderError
from attnlab.serialization import WEIGHTS_NAME, atomic_write, load_weights
from attnlab.training.distributed import Ranks

log = logging.getLogger(__name__)

STATE_NAME = "training_state.pt"
LATEST_NAME = "latest"
SHARDED_NAME = "state"  # torch.distributed.checkpoint: model + optimizer, one file per rank
RNG_DIR = "rng"


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(
    root: str | Path, step: int, model: nn.Module | None, state: dict[str, Any],
    keep_last: int = 5, run_id: str | None = None, *, sharded: dict[str, Any] | None = None,
    ranks: Ranks | None = None,
) -> Path:
    """Write checkpoint `step` under `root`, move `latest` to it, prune to `keep_last`;
    `run_id` is stored with the weights and in the state.

    `model` is the whole model (rank 0; None on the other ranks); `sharded` the model and
    optimizer state dicts that `torch.distributed.checkpoint` writes, each rank its shard, under
    `state/` (loadable on any number of processes); each rank's RNG goes to `rng/rank_R.pt`.
    Every rank calls this. The folder is assembled under a temporary name that rank 0 chose
    and renamed only when every rank has written its part, so a failure on any rank leaves
    no checkpoint of this step and `latest` where it was."""
    ranks = ranks or Ranks()
    root = Path(root)
    final = root / step_dir_name(step)
    staging = None
    if ranks.is_main:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    staging = Path(ranks.broadcast(str(staging) if staging else None, "checkpoint: folder"))
    try:
        if sharded is not None:
            import torch.distributed.checkpoint as dcp

            with warnings.catch_warnings():  # one process: "assuming ... a single process"
                warnings.simplefilter("ignore", UserWarning)
                dcp.save(sharded, checkpoint_id=str(staging / SHARDED_NAME))
        (staging / RNG_DIR).mkdir(exist_ok=True)
        torch.save(rng_state(), staging / RNG_DIR / f"rank_{ranks.rank}.pt")
        ranks.barrier("checkpoint: every rank's shard written")
        if ranks.is_main:
            assert model is not None, "rank 0 saves the whole model"
            metadata = {"format": "pt", **({"run_id": run_id} if run_id else {})}
            save_model(model, str(staging / WEIGHTS_NAME), metadata=metadata)
            torch.save({**state, "run_id": run_id} if run_id else state, staging / STATE_NAME)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
    except BaseException:
        if ranks.is_main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if ranks.is_main:
        atomic_write(root / LATEST_NAME, lambda tmp: Path(tmp).write_text(final.name + "\n"))
        prune(root, keep_last)
    ranks.barrier("checkpoint: renamed")
    return final


def rng_state() -> dict[str, Any]:
    """This process's random state (CPU, and the current GPU's where there is one)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def load_rng_state(path: Path, rank: int) -> bool:
    """Restore rank `rank`'s random state saved at `path`; False when the checkpoint has none
    for this rank (it was written by fewer processes)."""
    file = Path(path) / RNG_DIR / f"rank_{rank}.pt"
    if not file.is_file():
        return False
    state = torch.load(file, map_location="cpu", weights_only=True)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    return True


def load_sharded(path: Path, sharded: dict[str, Any]) -> bool:
    """Fill `sharded` (the model and optimizer state dicts of this run, as
    `Parallel.state_dicts` makes them) from the checkpoint at `path`, each rank its shard,
    whatever the number of processes that wrote it. False for a checkpoint without them
    (written by attnlab < 0.5: weights and optimizer in its two files)."""
    folder = Path(path) / SHARDED_NAME
    if not folder.is_dir():
        return False
    import torch.distributed.checkpoint as dcp

    # Optimizer state exists only for parameters that ever had a gradient (an unused pooler
    # has none), while the state to fill has every parameter's: those may be missing; model
    # weights may not.
    saved = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    missing = [name for name in sharded["model"] if f"model.{name}" not in saved]
    if missing:
        raise FolderError(f"{folder}: the checkpoint lacks weights of this model: "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(sharded, checkpoint_id=str(folder),
                 planner=dcp.DefaultLoadPlanner(allow_partial_load=True))
    return True


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


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The training state (step, data position, history, ...) of the checkpoint at `path`."""
    path = Path(path)
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
