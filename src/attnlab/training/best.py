"""Keep the best weights by a validation metric, and stop when it stops improving.

The model a run writes at its end should be the best one it saw, not merely the last: on a
small corpus the last steps can overfit, and a run fitted to a time budget may end on a noisy
step. After every evaluation the keeper compares the task's metric (e.g. validation BLEU,
higher is better; validation loss, lower) with the best so far; a better value writes the
weights to `checkpoints/best/model.safetensors` (atomic) and `best.json` (step, metric,
value), so a resumed run knows its best too. With `patience` N > 0, N evaluations in a row
without improvement end the run early ("plateau"), as a finished run: final evaluation, then
the best weights are written. Early stopping on a validation metric is the classic recipe
(Prechelt 1998, "Early stopping - but when?").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from torch import nn

from attnlab.serialization import WEIGHTS_NAME, atomic_write, load_weights

log = logging.getLogger(__name__)

BEST = "best"
RECORD = "best.json"
MODES = ("max", "min")


class BestKeeper:
    """The best evaluation of a run so far and its weights under `folder` (checkpoints/best)."""

    def __init__(self, folder: str | Path, metric: str, mode: str = "max",
                 patience: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.folder = Path(folder)
        self.metric, self.mode, self.patience = metric, mode, patience
        self.best: dict[str, Any] | None = None  # {"step", "metric", "value"}
        self.since_best = 0  # evaluations without improvement
        record = self.folder / RECORD
        if record.is_file() and (self.folder / WEIGHTS_NAME).is_file():
            saved = json.loads(record.read_text())
            if saved.get("metric") == metric:
                self.best = saved

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.mode == "max" else value < self.best["value"]

    def after_evaluation(self, model: nn.Module, metrics: dict[str, Any], trainer: Any) -> None:
        """Save the weights if `metrics` holds a new best; ask `trainer` to stop on a plateau."""
        value = metrics.get(self.metric)
        if value is None:
            return
        step = int(metrics.get("step", trainer.step))
        if self.better(float(value)):
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.folder / WEIGHTS_NAME,
                         lambda tmp: save_model(model, tmp, metadata={"format": "pt"}))
            self.best = {"step": step, "metric": self.metric, "value": float(value)}
            text = json.dumps(self.best, indent=2) + "\n"
            atomic_write(self.folder / RECORD, lambda tmp: Path(tmp).write_text(text))
            self.since_best = 0
            return
        self.since_best += 1
        if self.patience and self.since_best >= self.patience:
            log.warning("%s has not improved on %.4g (step %d) in %d evaluations: stopping "
                        "early", self.metric, self.best["value"], self.best["step"],
                        self.since_best)
            trainer.request_stop("plateau")

    def restore(self, model: nn.Module, step: int) -> dict[str, Any] | None:
        """Load the best weights into `model` (a run at `step` whose best was earlier); the
        record of what was chosen, or None when the current weights are the best or nothing
        was evaluated."""
        if self.best is None:
            return None
        if self.best["step"] != step:
            load_weights(model, self.folder / WEIGHTS_NAME)
            log.info("the final model is the best by %s: step %d (%.4g)", self.metric,
                     self.best["step"], self.best["value"])
        return dict(self.best)
