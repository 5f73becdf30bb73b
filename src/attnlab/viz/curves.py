"""Training curves: loss and learning rate per step, validation metrics per evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.viz.figures import save_png  # noqa: E402


def plot_training_curves(
    history: Sequence[dict[str, float]], evaluations: Sequence[dict[str, float]],
    path: str | Path,
) -> Path:
    """Save a PNG: training loss (and validation loss) on the left, lr on the right, validation
    BLEU on a second axis when present."""
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in history]
    ax_loss.plot(steps, [h["loss"] for h in history], lw=0.8, alpha=0.6, label="train loss")
    if len(history) >= 20:  # a moving average makes the trend readable
        window = max(len(history) // 50, 5)
        losses = [h["loss"] for h in history]
        smooth = [sum(losses[max(0, i - window):i + 1]) / len(losses[max(0, i - window):i + 1])
                  for i in range(len(losses))]
        ax_loss.plot(steps, smooth, lw=1.6, label=f"train loss (mean of {window})")
    if evaluations and "valid_loss" in evaluations[0]:
        ax_loss.plot([e["step"] for e in evaluations], [e["valid_loss"] for e in evaluations],
                     "o-", label="valid loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (label-smoothed cross-entropy)")
    ax_loss.legend()
    bleu_key = next((k for k in ("valid_bleu_greedy", "valid_bleu") if evaluations
                     and k in evaluations[0]), None)
    if bleu_key:
        ax_bleu = ax_loss.twinx()
        ax_bleu.plot([e["step"] for e in evaluations], [e[bleu_key] for e in evaluations],
                     "s--", color="tab:green", label=bleu_key)
        ax_bleu.set_ylabel("BLEU")
        ax_bleu.legend(loc="center right")
    ax_lr.plot(steps, [h["lr"] for h in history])
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("schedule")
    return save_png(fig, path)
