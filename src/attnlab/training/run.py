"""The one training-run routine every task uses (translate, lm, mlm, classify).

A task is its settings (a `RunSettings` subclass), its data and its loss / metrics: it
subclasses `Task`. `run_task` owns everything else, the same way for every task: resolving the
device and precision, capping CPU threads, the run folder (`training/run_folder.py`: a folder
holding a run is never replaced without `--overwrite`; a new run writes its settings, run.json
with its id and data fingerprint, the tokenizer and the step-0 model under checkpoints/initial;
`--resume` takes the saved settings and refuses, in one line, any change of settings or data
but max_steps / time_budget / device), seeding, the Trainer (checkpoints carrying the run id,
exact resume, Ctrl-C, time budget), the step plan (`training/plan.py`: the steps a time
budget allows, measured on the first steps, which the task's schedule and the evenly spread
evaluations follow), the best weights by the task's validation metric and early stopping
(`training/best.py`, `--keep best`, `--patience`), and, only at a successful end, the final
model: metrics.json, loss_curve.png, then `model.save_pretrained` (config.json last). A run
that fails, is interrupted or killed leaves checkpoints to resume from, never a loadable final
model of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.rank_share import RankShare
from attnlab.errors import MissingFileError
from attnlab.io import load_tokenizer
from attnlab.models.auto import from_pretrained
from attnlab.serialization import atomic_write
from attnlab.tokenizers import Tokenizer
from attnlab.training.best import BEST, BestKeeper
from attnlab.training.checkpoint import latest_checkpoint, read_training_state
from attnlab.training.device import cap_torch_threads, resolve_device
from attnlab.training.distributed import Ranks, place_device, process_group
from attnlab.training.parallelize import parallelize
from attnlab.training.plan import StepPlan
from attnlab.training.run_folder import (
    CHECKPOINTS,
    INITIAL,
    check_target,
    fingerprint,
    fingerprint_differences,
    foreign_names,
    new_record,
    note_task_files,
    read_record,
    remove_path,
    remove_run,
    task_files,
    write_record,
)
from attnlab.training.settings import (
    SETTINGS_NAME,
    RunSettings,
    SettingError,
    load_run_settings,
    resume_refusal,
    resumed_settings,
    settings_differences,
)
from attnlab.training.trainer import (
    BatchSource,
    Trainer,
    TrainerConfig,
    TrainResult,
    resolve_precision,
)

log = logging.getLogger(__name__)

class Task:
    """What a training task supplies; `run_task` calls these in this order."""

    name = "task"  # the `attnlab train NAME` sub-command
    # The validation metric that picks the best weights (--keep best) and ends a plateau
    # (--patience): (key of evaluate()'s dict, "max" or "min"); None: the task has none.
    best_metric: tuple[str, str] | None = None
    plan: StepPlan  # set by run_task before the model is built: the steps the run will get
    tokenizer: Tokenizer | None = None  # set by new_model / restore; saved with the model
    progress = False  # run_task's choice: long steps of the task (test decoding) show a bar

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings

    def load_data(self) -> None:
        """Read and check the data (before any folder is written)."""

    def prepare_new_run(self) -> None:
        """Checks of a new run that need more than the raw data (a tokenizer, the length
        filter, the held-out stream); writes nothing, so the routine calls it before it
        creates or clears the run folder. `new_model` reuses what it prepared."""

    def new_model(self, out: Path) -> nn.Module:
        """Build the tokenizer (`self.tokenizer`) and model of a new run; save any other file
        the task needs in `out` (run.json records its name). The routine saves the settings,
        the tokenizer and the initial model; if this fails, the folder is left as it was."""
        raise NotImplementedError

    def restore(self, out: Path) -> nn.Module:
        """The tokenizer and model of the run in `out` (for --resume), through the folder
        owner; a task with more files extends it."""
        self.tokenizer = load_tokenizer(out)
        return from_pretrained(run_model_folder(out))

    def batches(self, model: nn.Module) -> BatchSource:
        """The training batches (the model is built or restored by now)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """(mean loss over the batch's tokens, token count); the batch is on the model's
        device."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        raise NotImplementedError

    def step_metrics(self) -> dict[str, float]:
        """The task's own figures of the optimizer step just taken (e.g. an MoE model's aux
        loss, gathered by `loss`), called once after each step: they go into the step's
        history entry and onto the progress bar. Default: none."""
        return {}

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def lr(self, step: int) -> float:
        """The learning rate of optimizer step `step` (from 1); `self.plan.total` is the
        number of steps the run is expected to get."""
        raise NotImplementedError

    def generation_settings(self) -> dict[str, Any] | None:
        """Decoding settings the model folder suggests (its generation_config.json), e.g. the
        beam the run was tested with; None writes none."""
        return None

    def before_save(self, model: nn.Module, out: Path) -> None:
        """Last change to the weights before the final folder is written (e.g. averaging)."""

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        raise NotImplementedError

    def kept_evaluation(self, result: TrainResult) -> dict[str, Any]:
        """The validation record of the weights the run writes: the best one's under --keep
        best, else the last."""
        step = getattr(self, "kept_step", result.step)
        return next((e for e in reversed(result.evaluations) if e["step"] == step),
                    result.evaluations[-1])


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


def run_model_folder(out: str | Path) -> Path:
    """The folder a run's architecture is rebuilt from: checkpoints/initial (written at the
    start of every run), else the run folder itself (runs of attnlab < 0.3)."""
    initial = Path(out) / CHECKPOINTS / INITIAL
    return initial if (initial / "config.json").is_file() else Path(out)


def write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2) + "\n"
    atomic_write(path, lambda t: Path(t).write_text(text))


def run_task(task: Task, resume: bool = False, *, overwrite: bool = False,
             progress: bool = True) -> RunOutcome:
    """Train `task` in `task.settings.out`: a new run (refused where a run is, unless
    `overwrite`: then that run is deleted once the data is read), or the run there with
    `resume`. Under torchrun every process calls this; they join one process group
    (training/distributed.py) and rank 0 alone writes files, logs and progress."""
    s = task.settings
    device = place_device(resolve_device(s.device))
    with process_group(device, s.collective_timeout) as ranks, quiet_unless_main(ranks):
        return run_in_group(task, ranks, device, resume=resume, overwrite=overwrite,
                            progress=progress and ranks.is_main)


def run_in_group(task: Task, ranks: Ranks, device: torch.device, *, resume: bool,
                 overwrite: bool, progress: bool) -> RunOutcome:
    s = task.settings
    out = Path(s.out)
    check_target(out, resume=resume, overwrite=overwrite)
    check_selection(task, s)
    task.progress = progress
    task.plan = plan = StepPlan(s.max_steps, s.time_budget, evaluations=s.evaluations,
                                announce=progress)
    precision = resolve_precision(s.precision, device.type)
    check_precision(precision, s.strategy, ranks)
    cap_torch_threads()
    record = None
    if resume:
        if not (out / SETTINGS_NAME).is_file():
            raise MissingFileError(f"--resume: {out} holds no run to resume (no {SETTINGS_NAME})")
        saved = load_run_settings(type(s), out)
        record = read_record(out)
        differences = settings_differences(saved, s)
        if record is not None:
            differences += fingerprint_differences(record["data"], fingerprint(saved))
        if differences:
            raise resume_refusal(differences)
        task.settings = s = resumed_settings(saved, s)
        task.settings = s = with_grad_accum_for(s, out, ranks)
    task.load_data()
    torch.manual_seed(s.seed)
    ranks.barrier("every rank read the data")  # before rank 0 changes the folder
    if resume:
        if record is None and ranks.is_main:  # a run of attnlab < 0.3: record it from here on
            log.warning("%s has no %s (an older run): recording its data as it is now", out,
                        "run.json")
            write_record(out, new_record(task.name, s))
        ranks.barrier("run record")
        record = read_record(out)
        foreign = set(foreign_names(out, record))
        model = task.restore(out)
    elif ranks.is_main:
        task.prepare_new_run()  # every check passes before an old run is deleted
        if overwrite:
            remove_run(out)
        foreign, record = set(foreign_names(out, None)), new_record(task.name, s)
        model = start_run(task, out, record)
        ranks.barrier("rank 0 started the run folder")
    else:  # the other ranks take the tokenizer and step-0 model rank 0 wrote
        ranks.barrier("rank 0 started the run folder")
        record, foreign = read_record(out), set()
        model = task.restore(out)
    model.to(device)
    log.info("training on %s in %s%s", device, precision,
             f" with {ranks.world_size} processes ({s.strategy})" if ranks.distributed else "")
    parallel = parallelize(model, ranks, device, strategy=s.strategy, precision=precision,
                           activation_checkpointing=s.activation_checkpointing,
                           compile=s.compile)
    optimizer = task.optimizer(parallel.model)
    batches = task.batches(model)
    if ranks.distributed:  # each rank its share of the one global stream (data/rank_share.py)
        batches = RankShare(batches, ranks.rank, ranks.world_size, s.grad_accum)
    keeper = None
    if task.best_metric is not None and (s.keep == "best" or s.patience):
        keeper = BestKeeper(out / CHECKPOINTS / BEST, *task.best_metric, patience=s.patience)

    def evaluate(m: nn.Module, step: int) -> dict[str, float]:
        metrics = task.evaluate(m, step)
        if keeper is not None:
            keeper.after_evaluation(m, {"step": step, **metrics}, trainer)
        return metrics

    trainer = Trainer(
        model, optimizer, task.lr, batches,
        lambda m, batch: task.loss(m, to_device(batch, device)),
        TrainerConfig(max_steps=s.max_steps, time_budget=s.time_budget,
                      grad_accum=s.grad_accum, clip_norm=s.clip_norm, eval_every=s.eval_every,
                      save_every=s.save_every, keep_last=s.keep_last, precision=precision,
                      progress=progress),
        checkpoint_dir=out / CHECKPOINTS, evaluate=evaluate, on_step=plan.on_step,
        run_id=record["run_id"], evaluation_due=plan.evaluation_due, parallel=parallel,
        step_metrics=task.step_metrics,
    )
    if resume and not trainer.resume():
        log.warning("no checkpoint in %s: starting from step 0", out / CHECKPOINTS)
    plan.resumed_at(trainer.step)
    start = time.perf_counter()
    result = trainer.fit()
    log.debug("fit took %.1fs", time.perf_counter() - start)
    if result.stopped_by == "interrupt":  # the checkpoint is saved; no final model
        return RunOutcome({"stopped_by": "interrupt", "step": result.step,
                           **({"rank": ranks.rank} if not ranks.is_main else {})},
                          result, model, task)
    with parallel.full_model() as full:
        if full is None:  # not rank 0: rank 0 alone tests and writes the final model
            return RunOutcome({"stopped_by": result.stopped_by, "step": result.step,
                               "rank": ranks.rank}, result, model, task)
        metrics = finish_run(task, full, out, result, keeper, precision, record, foreign)
        metrics.update(parallel_summary(ranks, s))
    return RunOutcome(metrics, result, full, task)


def finish_run(task: Task, model: nn.Module, out: Path, result: TrainResult,
               keeper: BestKeeper | None, precision: str, record: dict[str, Any],
               foreign: set[str]) -> dict[str, Any]:
    """Rank 0, at a successful end: the kept weights, the task's metrics, the final folder."""
    s = task.settings
    kept = keeper.restore(model, result.step) if keeper and s.keep == "best" else None
    task.kept_step = kept["step"] if kept else result.step
    task.before_save(model, out)
    metrics = task.metrics(model, result, precision)
    metrics["planned_steps"] = task.plan.total
    metrics["kept"] = ({"weights": "best", **kept} if kept else
                       {"weights": "last", "step": result.step})
    write_final(task, model, out, metrics, result)
    note_task_files(out, record, foreign)
    return metrics


def parallel_summary(ranks: Ranks, s: RunSettings) -> dict[str, Any]:
    """How the run was spread: what metrics.json says of processes and the global batch."""
    if not ranks.distributed:
        return {}
    return {"processes": ranks.world_size, "strategy": s.strategy,
            "micro_batches_per_step": ranks.world_size * s.grad_accum}


def check_precision(precision: str, strategy: str, ranks: Ranks) -> None:
    if precision == "fp16" and strategy == "fsdp" and ranks.distributed:
        raise SettingError("precision", "precision fp16 with strategy fsdp: FSDP2 shards "
                                        "gradients, which torch's GradScaler does not unscale; "
                                        "use --precision bf16 (FSDP2's mixed-precision policy)")


def with_grad_accum_for(s: RunSettings, out: Path, ranks: Ranks) -> RunSettings:
    """A run resumed on another number of processes keeps its global batch: grad_accum
    becomes the checkpoint's micro-batches per step / processes (refused when they do not
    divide), so the run goes on with the same data and the same steps."""
    path = latest_checkpoint(out / CHECKPOINTS)
    if path is None:
        return s
    state = read_training_state(path)
    wanted = int(state.get("micro_batches_per_step", s.grad_accum))
    if wanted == s.grad_accum * ranks.world_size:
        return s
    if wanted % ranks.world_size:
        raise SettingError("grad_accum", f"--resume: {path.name} was written with {wanted} "
                                         f"micro-batches per step (processes x grad_accum); "
                                         f"{ranks.world_size} processes cannot share them: "
                                         f"use a number of processes that divides {wanted}")
    accum = wanted // ranks.world_size
    log.info("resuming on %d process(es): grad_accum %d -> %d keeps %d micro-batches per step",
             ranks.world_size, s.grad_accum, accum, wanted)
    return dataclasses.replace(s, grad_accum=accum)


@contextlib.contextmanager
def quiet_unless_main(ranks: Ranks) -> Iterator[None]:
    """Only rank 0 logs below ERROR: N processes must not print every line N times."""
    if ranks.is_main:
        yield
        return
    logger = logging.getLogger("attnlab")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def check_selection(task: Task, s: RunSettings) -> None:
    """--keep best and --patience need a task with a validation metric, and evaluations."""
    for name, wanted in (("keep", s.keep == "best"), ("patience", s.patience > 0)):
        if not wanted:
            continue
        if task.best_metric is None:
            raise SettingError(name, f"{name}={getattr(s, name)!r} needs a validation metric, "
                                     f"and `attnlab train {task.name}` has none to select by")
        if not s.eval_every and s.evaluations < 2:
            raise SettingError(name, f"{name}={getattr(s, name)!r} needs validations during "
                                     f"the run to choose by: give --evaluations N (N >= 2) or "
                                     f"--eval-every STEPS, got evaluations={s.evaluations}, "
                                     f"eval_every={s.eval_every}")


def start_run(task: Task, out: Path, record: dict[str, Any]) -> nn.Module:
    """The new run's model, with what a resume needs written in `out`: the task's files, the
    tokenizer, checkpoints/initial (the step-0 model), train_settings.json, run.json last. A
    failure (or Ctrl-C) on the way removes what this wrote, so the folder is as it was."""
    existed = out.is_dir()
    before = {p.name for p in out.iterdir()} if existed else set()
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = task.new_model(out)
        if task.tokenizer is not None:
            task.tokenizer.save(out / "tokenizer.json")
        model.save_pretrained(out / CHECKPOINTS / INITIAL,
                              generation=task.generation_settings())
        write_json(out / SETTINGS_NAME, dataclasses.asdict(task.settings))
        record["files"] = sorted(task_files(out, before))
        write_record(out, record)
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in out.iterdir():
                if path.name not in before:
                    remove_path(path)
        raise
    return model


def write_final(task: Task, model: nn.Module, out: Path, metrics: dict[str, Any],
                result: TrainResult) -> None:
    """The final model of a run that ended well. config.json (of an earlier finished stretch
    of the run) goes first and comes back last, so a kill half-way never leaves a config.json
    beside weights or metrics it does not describe."""
    (out / "config.json").unlink(missing_ok=True)
    write_json(out / "metrics.json", metrics)
    from attnlab.viz.curves import plot_training_curves  # matplotlib: only at the end

    plot_training_curves(result.history, result.evaluations, out / "loss_curve.png")
    model.save_pretrained(out, tokenizer=task.tokenizer, generation=task.generation_settings())


def run_summary(result: TrainResult) -> dict[str, Any]:
    """The figures of a finished fit that every task's metrics.json reports."""
    return {"steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_tokens": result.train_tokens,
            "train_tokens_per_second": round(result.tokens_per_second)}
