"""Learning-rate schedules as pure functions of the step (no hidden state to checkpoint)."""

from __future__ import annotations

import math


def inverse_sqrt_warmup(step: int, *, d_model: int, warmup_steps: int, scale: float = 1.0) -> float:
    """Vaswani et al. 2017, sec. 5.3: lr = scale * d^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Linear warmup for `warmup_steps`, then decay with the inverse square root of the step.
    Steps count from 1.
    """
    if warmup_steps <= 0:
        raise ValueError(f"warmup_steps must be positive, got {warmup_steps}")
    step = max(step, 1)
    return scale * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def cosine_warmup(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int,
                  min_lr: float = 0.0) -> float:
    """Linear warmup to `peak_lr`, then cosine decay to `min_lr` at `total_steps`."""
    step = max(step, 1)
    if step <= warmup_steps:
        return peak_lr * step / max(warmup_steps, 1)
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_linear_decay(step: int, *, peak_lr: float, total_steps: int,
                        warmup_fraction: float = 0.1, floor: float = 0.01) -> float:
    """Linear warmup over `warmup_fraction` of the run, then linear decay to `floor * peak_lr`
    at `total_steps` (and that floor after it). For runs fitted to a budget (training/plan.py):
    Li, Yumer and Ramanan 2020 ("Budgeted training") find linear decay to the end of the
    budget the best schedule across tasks; the warmup, as a share of the run rather than a
    fixed 4,000 steps, is still there after a few hundred steps of a short CPU run."""
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    step, total = max(step, 1), max(total_steps, 1)
    warmup = max(1, round(warmup_fraction * total))
    if step <= warmup:
        return peak_lr * step / warmup
    remaining = max(0.0, (total - step) / max(total - warmup, 1))
    return peak_lr * (floor + (1.0 - floor) * remaining)
