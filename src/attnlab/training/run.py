"""The one training-run routine every task uses (translate, lm, mlm, classify).

A task is its settings (a `RunSettings` subclass), its data and its loss / metrics: it
subclasses `Task`. `run_task` owns everything else, the same way for every task: resolving the
device and precision, capping CPU threads, creating the run folder (`train_settings.json`,
tokenizer, initial weights) or resuming it (the saved settings, only max_steps / time_budget /
device may change), seeding, the Trainer (checkpoints, exact resume, Ctrl-C, time budget),
the expected training time measured on the first steps, the final model folder
(`model.save_pretrained`), metrics.json and loss_curve.png.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from attnlab.errors import MissingFileError
from attnlab.io import load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.serialization import atomic_write
from attnlab.tokenizers import Tokenizer
from attnlab.training.device import cap_torch_threads, resolve_device
from attnlab.training.settings import (
    SETTINGS_NAME,
    RunSettings,
    load_run_settings,
    resumed_settings,
)
from attnlab.training.trainer import (
    BatchSource,
    Trainer,
    TrainerConfig,
    TrainResult,
    resolve_precision,
)

log = logging.getLogger(__name__)

TIMED_FROM, TIMED_STEPS = 2, 10  # skip the first steps (allocator warm-up), then time ten


class Task:
    """What a training task supplies; `run_task` calls these in this order."""

    name = "task"  # the `attnlab train NAME` sub-command
    tokenizer: Tokenizer | None = None  # set by new_model / restore; saved with the model

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings

    def load_data(self) -> None:
        """Read and check the data (before any folder is written)."""

    def new_model(self, out: Path) -> nn.Module:
        """Build the tokenizer (`self.tokenizer`) and model of a new run; save any other file
        the task needs in `out`. The routine saves the settings, the tokenizer and the initial
        weights."""
        raise NotImplementedError

    def restore(self, out: Path) -> nn.Module:
        """The tokenizer and model of the run in `out` (for --resume), through the folder
        owner; a task with more files extends it."""
        self.tokenizer = load_tokenizer(out)
        return from_pretrained(out)

    def batches(self, model: nn.Module) -> BatchSource:
        """The training batches (the model is built or restored by now)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """(mean loss over the batch's tokens, token count); the batch is on the model's
        device."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        raise NotImplementedError

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def lr(self, step: int) -> float:
        raise NotImplementedError

    def generation_settings(self) -> dict[str, Any] | None:
        """Decoding settings the model folder suggests (its generation_config.json), e.g. the
        beam the run was tested with; None writes none."""
        return None

    def before_save(self, model: nn.Module, out: Path) -> None:
        """Last change to the weights before the final folder is written (e.g. averaging)."""

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class RunOutcome:
    """What a run leaves in memory, so a caller (the demo) prints it without reloading."""

    metrics: dict[str, Any]
    result: TrainResult
    model: nn.Module
    task: Task

    @property
    def interrupted(self) -> bool:
        return self.result.stopped_by == "interrupt"


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
                for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, Tensor) else batch


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2) + "\n"
    atomic_write(path, lambda t: Path(t).write_text(text))


def expected_time_note(max_steps: int, time_budget: float | None) -> Any:
    """An on_step callback that, once TIMED_STEPS steps past the warm-up are timed, prints
    how long the rest of the run should take at the measured rate."""
    marks: dict[str, float] = {}

    def on_step(trainer: Trainer) -> None:
        if "first" not in marks:
            marks["first"] = trainer.step
        done = trainer.step - marks["first"]
        if done == TIMED_FROM:
            marks["start"] = trainer.train_seconds
        elif done == TIMED_FROM + TIMED_STEPS:
            rate = TIMED_STEPS / max(trainer.train_seconds - marks["start"], 1e-9)
            seconds = (max_steps - trainer.step) / rate
            if time_budget is not None:
                seconds = min(seconds, max(time_budget - trainer.train_seconds, 0.0))
            tqdm.write(f"expected training time: ~{seconds / 60:.1f} min more for "
                       f"{max_steps - trainer.step:,} steps at the measured {rate:.2f} steps/s",
                       file=sys.stderr)  # beside the progress bar, not in the results

    return on_step


def run_task(task: Task, resume: bool = False, *, progress: bool = True) -> RunOutcome:
    """Train `task` in `task.settings.out` (a new run, or the run there with `resume`)."""
    s = task.settings
    out = Path(s.out)
    device = resolve_device(s.device)
    precision = resolve_precision(s.precision, device.type)
    cap_torch_threads()
    if resume:
        if not (out / SETTINGS_NAME).is_file():
            raise MissingFileError(f"--resume: {out} holds no run to resume (no {SETTINGS_NAME})")
        task.settings = s = resumed_settings(load_run_settings(type(s), out), s)
    task.load_data()
    torch.manual_seed(s.seed)
    if resume:
        model = task.restore(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        model = task.new_model(out)
        write_json(out / SETTINGS_NAME, dataclasses.asdict(s))
        model.save_pretrained(out, tokenizer=task.tokenizer,
                              generation=task.generation_settings())
    model.to(device)
    log.info("training on %s in %s", device, precision)
    optimizer = task.optimizer(model)
    batches = task.batches(model)
    trainer = Trainer(
        model, optimizer, task.lr, batches,
        lambda m, batch: task.loss(m, to_device(batch, device)),
        TrainerConfig(max_steps=s.max_steps, time_budget=s.time_budget,
                      grad_accum=s.grad_accum, clip_norm=s.clip_norm, eval_every=s.eval_every,
                      save_every=s.save_every, keep_last=s.keep_last, precision=precision,
                      progress=progress),
        checkpoint_dir=out / "checkpoints", evaluate=task.evaluate,
        on_step=expected_time_note(s.max_steps, s.time_budget) if progress else None,
    )
    if resume and not trainer.resume():
        log.warning("no checkpoint in %s: starting from step 0", out / "checkpoints")
    start = time.perf_counter()
    result = trainer.fit()
    log.debug("fit took %.1fs", time.perf_counter() - start)
    if result.stopped_by == "interrupt":
        model.save_pretrained(out, generation=task.generation_settings())
        return RunOutcome({"stopped_by": "interrupt", "step": result.step}, result, model, task)
    task.before_save(model, out)
    model.save_pretrained(out, generation=task.generation_settings())
    metrics = task.metrics(model, result, precision)
    write_json(out / "metrics.json", metrics)
    from attnlab.viz.curves import plot_training_curves  # matplotlib: only at the end

    plot_training_curves(result.history, result.evaluations, out / "loss_curve.png")
    return RunOutcome(metrics, result, model, task)


def run_summary(result: TrainResult) -> dict[str, Any]:
    """The figures of a finished fit that every task's metrics.json reports."""
    return {"steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_tokens": result.train_tokens,
            "train_tokens_per_second": round(result.tokens_per_second)}
