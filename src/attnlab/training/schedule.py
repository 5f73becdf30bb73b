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
