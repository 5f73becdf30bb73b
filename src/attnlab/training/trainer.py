"""A model-agnostic training loop (in the spirit of minGPT's trainer: it knows no model family).

It owns: gradient accumulation weighted by tokens, clipping, a pure lr(step) schedule, a tqdm
bar (loss, lr, tokens/s), periodic evaluation and checkpoints, a step / time budget, exact
resume (weights, optimizer, step, data position, RNG), and a graceful Ctrl-C: the first one
finishes the current step, saves a resumable checkpoint and stops; a second one aborts.
The task supplies `loss_fn(model, batch) -> (mean loss over tokens, token count)` and a
resumable batch source (`next()`, `state_dict()`, `load_state_dict()`). With a `run_id`, every
checkpoint carries it and `resume` refuses a checkpoint of another run.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from attnlab.errors import FolderError
from attnlab.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """"auto" -> "bf16" where the device computes bfloat16 natively (CPU: AMX / AVX512-BF16;
    CUDA: Ampere or newer), else "fp32". Mixed precision keeps fp32 master weights; only
    matmuls run in bfloat16."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be auto or one of {PRECISIONS}, got {precision!r}")
        return precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = getattr(torch.backends.mkldnn, "is_available", lambda: False)() and bool(
        getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
    )
    return "bf16" if native else "fp32"


class BatchSource(Protocol):
    def next(self) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    time_budget: float | None = None  # seconds of training; stops at the first step past it
    grad_accum: int = 1
    clip_norm: float | None = 1.0
    eval_every: int = 0  # steps; 0 = only at the end
    save_every: int = 0  # steps; 0 = only at the end / on interrupt
    keep_last: int = 5
    log_every: int = 1  # history resolution in steps
    progress: bool = True
    precision: str = "fp32"  # "fp32", or "bf16": autocast matmuls to bfloat16, fp32 weights


    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.grad_accum <= 0:
            raise ValueError(f"grad_accum must be positive, got {self.grad_accum}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget}")


@dataclass
class TrainResult:
    step: int
    stopped_by: str  # "max_steps", "time_budget", "interrupt", or a request_stop reason
    train_seconds: float
    train_tokens: int
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / max(self.train_seconds, 1e-9)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_schedule: Callable[[int], float],
        batches: BatchSource,
        loss_fn: Callable[[nn.Module, Any], tuple[Tensor, int]],
        config: TrainerConfig,
        checkpoint_dir: str | Path | None = None,
        evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        run_id: str | None = None,
        evaluation_due: Callable[[int], bool] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.batches = batches
        self.loss_fn = loss_fn
        self.config = config
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.evaluate = evaluate
        self.on_step = on_step  # called after every optimizer step (e.g. to time the first few)
        self.run_id = run_id  # stored in each checkpoint; resume refuses another run's
        # Evaluate after this step too (beside eval_every): e.g. evenly over a planned run.
        self.evaluation_due = evaluation_due
        self.stop_reason: str | None = None  # set by request_stop (e.g. early stopping)
        self.step = 0
        self.train_seconds = 0.0
        self.train_tokens = 0
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self._interrupted = False

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "batches": self.batches.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds,
            "train_tokens": self.train_tokens,
            "history": self.history,
            "evaluations": self.evaluations,
        }

    def save(self) -> Path:
        if self.checkpoint_dir is None:
            raise ValueError("this Trainer has no checkpoint_dir")
        return save_checkpoint(self.checkpoint_dir, self.step, self.model, self.state_dict(),
                               keep_last=self.config.keep_last, run_id=self.run_id)

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore the newest checkpoint (or `path`); False when there is none."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("resume needs a path or a checkpoint_dir")
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                return False
        state = load_checkpoint(path, self.model)
        found = state.get("run_id")
        if self.run_id and found and found != self.run_id:
            raise FolderError(f"{path}: this checkpoint belongs to run {found}, not to the run "
                              f"being resumed ({self.run_id})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.train_tokens = int(state["train_tokens"])
        self.history = list(state["history"])
        self.evaluations = list(state["evaluations"])
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # -- loop ---------------------------------------------------------------------------------

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupted:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self._interrupted = True
        log.warning("interrupt: finishing this step, saving a checkpoint (Ctrl-C again to abort)")

    def train_step(self) -> tuple[float, int]:
        """One optimizer step over `grad_accum` micro-batches, weighted by their token counts.

        Each micro-batch's mean loss is back-propagated times its token count (one graph alive
        at a time); the summed gradients are then divided by the total token count, which is
        exactly the gradient of the mean loss over all tokens of the step.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, total_tokens = 0.0, 0
        device = next(self.model.parameters()).device.type
        for _ in range(self.config.grad_accum):
            batch = self.batches.next()
            with torch.autocast(device, dtype=torch.bfloat16,
                                enabled=self.config.precision == "bf16"):
                loss, tokens = self.loss_fn(self.model, batch)
            (loss * tokens).backward()
            loss_sum += loss.item() * tokens
            total_tokens += tokens
        scale = 1.0 / max(total_tokens, 1)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        lr = self.lr_schedule(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step += 1
        return loss_sum * scale, total_tokens

    def run_evaluation(self) -> None:
        if self.evaluate is None:
            return
        self.model.eval()
        with torch.no_grad():
            metrics = {"step": self.step, **self.evaluate(self.model, self.step)}
        self.evaluations.append(metrics)
        log.info("step %d: %s", self.step, metrics)

    def request_stop(self, reason: str) -> None:
        """End the run after the current step, as a finished run (unlike an interrupt): the
        final checkpoint, evaluation and model are written. E.g. reason="plateau"."""
        self.stop_reason = reason

    def evaluation_now(self) -> bool:
        c = self.config
        due = bool(c.eval_every) and self.step % c.eval_every == 0
        if self.evaluation_due is not None and self.evaluation_due(self.step):
            due = True
        return due and self.step < c.max_steps

    def fit(self) -> TrainResult:
        c = self.config
        previous_handler = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: no graceful interrupt
            previous_handler = None
        stopped_by = "max_steps"
        # Under a time budget the step total is only a ceiling: show the count and rate, not a
        # misleading ETA. Refresh at most once a second so logs stay readable.
        bar = tqdm(total=c.max_steps if c.time_budget is None else None, initial=self.step,
                   desc="train", unit="step", disable=not c.progress, dynamic_ncols=True,
                   mininterval=1.0)
        try:
            while self.step < c.max_steps:
                start = time.perf_counter()
                loss, tokens = self.train_step()
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite training loss {loss} at step {self.step}; "
                        "no checkpoint was written for this step (lower the lr?)"
                    )
                self.train_seconds += time.perf_counter() - start
                self.train_tokens += tokens
                lr = self.optimizer.param_groups[0]["lr"]
                if self.step % c.log_every == 0:
                    self.history.append({"step": self.step, "loss": loss, "lr": lr})
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                                tok_s=f"{self.train_tokens / self.train_seconds:,.0f}")
                if self.evaluation_now():
                    self.run_evaluation()
                if self._interrupted:
                    stopped_by = "interrupt"
                    break
                if self.stop_reason is not None:
                    stopped_by = self.stop_reason
                    break
                if c.time_budget is not None and self.train_seconds >= c.time_budget:
                    stopped_by = "time_budget"
                    break
                if (c.save_every and self.step % c.save_every == 0
                        and self.checkpoint_dir is not None):
                    self.save()
        finally:
            bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        if self.checkpoint_dir is not None:
            self.save()
        evaluated_here = bool(self.evaluations) and self.evaluations[-1]["step"] == self.step
        if stopped_by != "interrupt" and not evaluated_here:
            self.run_evaluation()
        return TrainResult(self.step, stopped_by, self.train_seconds, self.train_tokens,
                           self.history, self.evaluations)
