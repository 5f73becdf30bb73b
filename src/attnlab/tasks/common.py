"""What the model-family training tasks (lm, mlm, classify) share on top of the run routine
(`attnlab.training.run`): reading a text file, AdamW with linear warmup and
cosine decay (`FamilyTask`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attnlab.data.parallel import read_lines
from attnlab.errors import DataError
from attnlab.training.optim import adam
from attnlab.training.run import Task
from attnlab.training.schedule import cosine_warmup
from attnlab.training.settings import load_config  # noqa: F401  (re-exported)


def read_text(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file; a missing file, bad bytes (with the line) or a file with
    no text raise DataError."""
    lines = read_lines(Path(path))
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file holds no text")
    return lines


class FamilyTask(Task):
    """AdamW (no weight decay on biases and norms), linear warmup to `settings.lr`, then cosine
    decay to a tenth of it at `max_steps` (the lm, mlm and classify recipes)."""

    betas: tuple[float, float] = (0.9, 0.999)
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
        return cosine_warmup(step, peak_lr=s.lr, warmup_steps=s.warmup_steps,
                             total_steps=s.max_steps, min_lr=s.lr / 10)


class PlannedTask(FamilyTask):
    """FamilyTask whose schedule ends with the run: linear warmup, then cosine decay to lr/20
    at `self.plan.total`, the steps --max-steps or --time-budget will give (the image, audio,
    CLIP, VQ-VAE and text-to-image recipes)."""

    def lr(self, step: int) -> float:
        s = self.settings
        total = max(self.plan.total, s.warmup_steps + 1)
        return cosine_warmup(step, peak_lr=s.lr, warmup_steps=s.warmup_steps,
                             total_steps=total, min_lr=s.lr / 20)
