"""What the model-family training tasks (lm, mlm, classify) share on top of the run routine
(`attnlab.training.run`): reading a text file, AdamW with linear warmup and
cosine decay (`FamilyTask`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.data.parallel import read_lines
from attnlab.errors import DataError
from attnlab.training.optim import adam
from attnlab.training.run import Task
from attnlab.training.schedule import cosine_warmup
from attnlab.training.settings import (
    RunSettings,
    check_positive_ints,
    check_positive_numbers,
    check_range,
    load_config,  # noqa: F401  (re-exported)
    setting,
)


def read_text(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file; a missing file, bad bytes (with the line) or a file with
    no text raise DataError."""
    lines = read_lines(Path(path))
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file holds no text")
    return lines


class FamilyTask(Task):
    """AdamW (no weight decay on biases and norms), linear warmup to `settings.lr`, then cosine
    decay to lr / `final_lr_divisor` at the run's end, `self.plan.total`: `max_steps`, or with
    --time-budget the steps the plan expects the budget to allow (training/plan.py) (the lm,
    mlm and classify recipes)."""

    betas: tuple[float, float] = (0.9, 0.999)
    final_lr_divisor: float = 10  # the cosine ends at lr / this
    # False: learned tokens and position tables (parameters with a leading 1: [CLS], CLIP's
    # class embedding, ViT positions) are not decayed either, the ViT / DeiT / CLIP recipe
    decay_token_tables: bool = True

    def decays(self, p: nn.Parameter) -> bool:
        return p.dim() >= 2 and (self.decay_token_tables or p.size(0) != 1)

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        decay = [p for p in model.parameters() if self.decays(p)]
        no_decay = [p for p in model.parameters() if not self.decays(p)]
        return adam([{"params": decay, "weight_decay": s.weight_decay},
                     {"params": no_decay, "weight_decay": 0.0}], lr=0.0, betas=self.betas)

    def lr(self, step: int) -> float:
        s = self.settings
        total = max(self.plan.total, s.warmup_steps + 1)
        return cosine_warmup(step, peak_lr=s.lr, warmup_steps=s.warmup_steps,
                             total_steps=total, min_lr=s.lr / self.final_lr_divisor)


class PlannedTask(FamilyTask):
    """FamilyTask with the planned settings, its cosine ending at lr/20 (the image, audio,
    CLIP, VQ-VAE and text-to-image recipes)."""

    final_lr_divisor = 20


@dataclass
class PlannedSettings(RunSettings):
    """The batch, optimiser, schedule and checkpoint settings every PlannedTask takes (image,
    audio, CLIP, VQ-VAE, text-to-image); a task changes a default with `planned(...)`."""

    batch_size: int = setting(128, "examples per batch")
    eval_batch_size: int = setting(512, "examples per batch when measuring")
    lr: float = setting(1e-3, "peak AdamW learning rate")
    warmup_steps: int = setting(100, "linear warmup steps, then cosine decay to lr/20 at the "
                                     "planned end of the run")
    weight_decay: float = setting(0.05, "AdamW weight decay (not on biases and norms)")
    keep_last: int = setting(2, "checkpoints kept")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("batch_size", "eval_batch_size", "warmup_steps"))
        check_positive_numbers(self, ("lr",))
        check_range(self, "weight_decay", 0.0, 1.0, high_open=False)


def planned(name: str, default: Any, help: str = "") -> Any:
    """A PlannedSettings field with a task's own default (and help, where it says more)."""
    field = {f.name: f for f in dataclasses.fields(PlannedSettings)}[name]
    return setting(default, help or field.metadata["help"])
