"""A model-agnostic training loop (in the spirit of minGPT's trainer: it knows no model family).

It owns: gradient accumulation weighted by tokens, clipping, a pure lr(step) schedule, a tqdm
bar (loss, lr, tokens/s and the task's own figures of each step, `step_metrics`, also kept in
the history), periodic evaluation and checkpoints, a step / time budget, exact resume (weights,
optimizer, step, data position, RNG), and a graceful Ctrl-C: the first one finishes the
current step, saves a resumable checkpoint and stops; a second one aborts.
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

from attnlab.errors import ConfigError, FolderError
from attnlab.serialization import WEIGHTS_NAME, load_weights
from attnlab.training.checkpoint import (
    latest_checkpoint,
    load_rng_state,
    load_sharded,
    read_training_state,
    save_checkpoint,
)
from attnlab.training.parallelize import Parallel

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device_type: str = "cpu") -> str:
    """"auto" -> "bf16" where the device computes bfloat16 natively (CPU: AMX / AVX512-BF16;
    CUDA: Ampere or newer), else "fp32". Mixed precision keeps fp32 master weights; only
    matmuls run in bfloat16 (or float16, whose loss is scaled: torch.amp.GradScaler)."""
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


HISTORY_KEYS = frozenset({"step", "loss", "lr"})  # what every history entry holds


def short_name(key: str) -> str:
    """A step metric's name on the progress bar: "aux_loss" -> "aux", "lm_loss" -> "lm"."""
    return key.removesuffix("_loss") or key


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
    # "fp32"; "bf16": autocast matmuls to bfloat16, fp32 weights; "fp16": float16 autocast
    # with a dynamically scaled loss (GradScaler), fp32 weights
    precision: str = "fp32"


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
        parallel: Parallel | None = None,
        step_metrics: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        # `parallel`: the model as prepared for many processes (training/parallelize.py);
        # without it, `model` trains in this one process.
        self.parallel = parallel or Parallel(model, model)
        self.ranks = self.parallel.ranks
        self.model = self.parallel.model
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.batches = batches
        self.loss_fn = loss_fn
        self.config = config
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.evaluate = evaluate  # run on rank 0 with the whole model; the others get its result
        self.on_step = on_step  # called after every optimizer step (e.g. to time the first few)
        self.run_id = run_id  # stored in each checkpoint; resume refuses another run's
        # Evaluate after this step too (beside eval_every): e.g. evenly over a planned run.
        self.evaluation_due = evaluation_due
        self.stop_reason: str | None = None  # set by request_stop (e.g. early stopping)
        # Called after every optimizer step: the task's figures of that step (e.g. an MoE
        # model's aux loss), kept in the step's history entry and shown on the progress bar.
        # Each rank reports its own micro-batches (no collective); rank 0's are the ones kept.
        self.step_metrics = step_metrics
        self.device_type = next(self.model.parameters()).device.type
        # fp16: the loss back-propagated is a token-weighted sum (~2^12 tokens a micro-batch),
        # not a mean, so the scale starts at torch's 2^16 for a mean loss / 2^12 (it adapts).
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=2.0**4,
                                           enabled=config.precision == "fp16")
        self.step = 0
        self.train_seconds = 0.0  # the mean over ranks, so every rank plans the same steps
        self.train_tokens = 0  # over all ranks
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self._interrupted = False

    @property
    def micro_batches_per_step(self) -> int:
        """Micro-batches of the global data stream one optimizer step consumes."""
        return self.config.grad_accum * self.ranks.world_size

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What rank 0 writes beside the sharded model / optimizer state and each rank's RNG."""
        return {
            "step": self.step,
            "batches": self.batches.state_dict(),
            "micro_batches_per_step": self.micro_batches_per_step,
            "world_size": self.ranks.world_size,
            "scaler": self.scaler.state_dict(),
            "train_seconds": self.train_seconds,
            "train_tokens": self.train_tokens,
            "history": self.history,
            "evaluations": self.evaluations,
        }

    def save(self) -> Path:
        """A checkpoint of this step; every rank calls it (training/checkpoint.py)."""
        if self.checkpoint_dir is None:
            raise ValueError("this Trainer has no checkpoint_dir")
        sharded = self.parallel.state_dicts(self.optimizer)
        with self.parallel.full_model() as full:
            return save_checkpoint(self.checkpoint_dir, self.step, full, self.state_dict(),
                                   keep_last=self.config.keep_last, run_id=self.run_id,
                                   sharded=sharded, ranks=self.ranks)

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore the newest checkpoint (or `path`); False when there is none. A checkpoint
        written by another number of processes resumes as long as the micro-batches per step
        (processes x grad_accum) are the same: the run then continues on the same data."""
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("resume needs a path or a checkpoint_dir")
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                return False
        path = Path(path)
        state = read_training_state(path)
        found = state.get("run_id")
        if self.run_id and found and found != self.run_id:
            raise FolderError(f"{path}: this checkpoint belongs to run {found}, not to the run "
                              f"being resumed ({self.run_id})")
        saved_micro = int(state.get("micro_batches_per_step", self.micro_batches_per_step))
        if saved_micro != self.micro_batches_per_step:
            raise ConfigError(
                f"{path}: written with {saved_micro} micro-batches per step (processes x "
                f"grad_accum), this run takes {self.ranks.world_size} x "
                f"{self.config.grad_accum} = {self.micro_batches_per_step}; resume with a "
                f"number of processes that divides {saved_micro}")
        sharded = self.parallel.state_dicts(self.optimizer)
        if load_sharded(path, sharded):
            self.parallel.load_state_dicts(self.optimizer, sharded)
            if not load_rng_state(path, self.ranks.rank):
                torch.manual_seed(int(state["step"]) * 1_000_003 + self.ranks.rank)
        else:  # a checkpoint of attnlab < 0.5: one process, optimizer in the training state
            load_weights(self.model, path / WEIGHTS_NAME)
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
        self.batches.load_state_dict(state["batches"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
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
        """One optimizer step over `grad_accum` micro-batches per rank, weighted by their token
        counts.

        Each micro-batch's mean loss is back-propagated times its token count (one graph alive
        at a time); the summed gradients are then divided by the total token count of the step
        over all ranks, which is exactly the gradient of the mean loss over all its tokens.
        DDP and FSDP average gradients over the ranks (a sum / world size), hence the factor
        world_size / tokens. Gradients are synchronised on the last micro-batch only.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, local_tokens = 0.0, 0
        accum = self.config.grad_accum
        dtype = AUTOCAST.get(self.config.precision)
        for micro in range(accum):
            batch = self.batches.next()
            with self.parallel.micro_step(last=micro == accum - 1):
                with torch.autocast(self.device_type, dtype=dtype or torch.bfloat16,
                                    enabled=dtype is not None):
                    loss, tokens = self.loss_fn(self.parallel.train_model, batch)
                self.scaler.scale(loss * tokens).backward()
            loss_sum += loss.item() * tokens
            local_tokens += tokens
        loss_sum, total_tokens = self.ranks.sum([loss_sum, local_tokens], what="loss all-reduce")
        total_tokens = int(total_tokens)
        self.scaler.unscale_(self.optimizer)
        scale = self.ranks.world_size / max(total_tokens, 1)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        lr = self.lr_schedule(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return loss_sum / max(total_tokens, 1), total_tokens

    def run_evaluation(self) -> None:
        """Rank 0 evaluates the whole model; every rank records its metrics and any stop it
        asked for, so all ranks take the same decisions."""
        if self.evaluate is None:
            return
        metrics = None
        with self.parallel.full_model() as full:
            if full is not None:
                full.eval()
                with torch.no_grad():
                    metrics = {"step": self.step, **self.evaluate(full, self.step)}
                log.info("step %d: %s", self.step, metrics)
        metrics, self.stop_reason = self.ranks.broadcast((metrics, self.stop_reason),
                                                         "evaluation result")
        self.evaluations.append(metrics)

    def request_stop(self, reason: str) -> None:
        """End the run after the current step, as a finished run (unlike an interrupt): the
        final checkpoint, evaluation and model are written. E.g. reason="plateau"."""
        self.stop_reason = reason

    def task_step_metrics(self) -> dict[str, float]:
        """The `step_metrics` callback's figures of the step just taken ({} without one);
        names the history already uses are refused."""
        if self.step_metrics is None:
            return {}
        extra = {k: float(v) for k, v in self.step_metrics().items()}
        clash = sorted(set(extra) & HISTORY_KEYS)
        if clash:
            raise ValueError(f"step_metrics returned {clash}, names the history already uses "
                             f"({sorted(HISTORY_KEYS)}); rename them")
        return extra

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
        # misleading ETA. Refresh at most once a second so logs stay readable. Rank 0 only.
        bar = tqdm(total=c.max_steps if c.time_budget is None else None, initial=self.step,
                   desc="train", unit="step", disable=not (c.progress and self.ranks.is_main),
                   dynamic_ncols=True, mininterval=1.0)
        try:
            while self.step < c.max_steps:
                start = time.perf_counter()
                loss, tokens = self.train_step()
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite training loss {loss} at step {self.step}; "
                        "no checkpoint was written for this step (lower the lr?)"
                    )
                # One small collective: the step time (the mean, so every rank's time budget
                # and step plan agree) and whether any rank was interrupted.
                seconds, interrupted = self.ranks.sum(
                    [time.perf_counter() - start, float(self._interrupted)], what="step end")
                self.train_seconds += seconds / self.ranks.world_size
                self._interrupted = interrupted > 0
                self.train_tokens += tokens
                lr = self.optimizer.param_groups[0]["lr"]
                extra = self.task_step_metrics()
                if self.step % c.log_every == 0:
                    self.history.append({"step": self.step, "loss": loss, "lr": lr, **extra})
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self)
                postfix = {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}",
                           "tok_s": f"{self.train_tokens / self.train_seconds:,.0f}"}
                for key, value in extra.items():
                    postfix.setdefault(short_name(key), f"{value:.3g}")
                bar.set_postfix(postfix)
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
