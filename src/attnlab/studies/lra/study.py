"""`attnlab bench lra`: every attention variant trained on the same Long-Range-Arena-style tasks
(Tay et al., 2021) with the same model size, optimiser, steps, batches and seeds, scored by test
accuracy; beside them the recurrent sequence mixers (nn/mixers: Mamba, Gu & Dao 2023; RWKV,
Peng et al. 2023; RetNet's retention, Sun et al. 2023), which are not attention: they read
left to right, so their classifier pools the last real token (`mixer_pooling`).

For each task (generated once, seeded), each seed and each variant: build a SequenceClassifier
with that variant in every layer, train it with AdamW and linear warmup + cosine decay (the
Trainer of attnlab.training), and record test accuracy, training time and parameter count.
results.json is rewritten atomically after every run, so an interrupted study keeps what
finished (and `resume` continues it); report.py turns it into results.md and results.png.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attnlab.data.batching import ShuffledRows
from attnlab.errors import ConfigError
from attnlab.evaluation.machine import machine_info
from attnlab.models.sequence_classifier import SequenceClassifier, is_mixer
from attnlab.nn.attention import ATTENTION
from attnlab.nn.mixers import MIXER
from attnlab.serialization import atomic_write
from attnlab.studies.lra.data import Split, TaskData
from attnlab.studies.lra.listops import make_listops
from attnlab.studies.lra.pixels import make_pixels
from attnlab.studies.lra.retrieval import make_retrieval
from attnlab.training.optim import adam
from attnlab.training.schedule import cosine_warmup
from attnlab.training.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)

TASKS = ("listops", "retrieval", "pixels")
MODEL_FIELDS = ("d_model", "n_heads", "n_layers", "d_ff", "dropout")  # what task_model may set
RNN_ERA = ("additive", "multiplicative")  # attention of RNN encoder-decoders, not for encoders
RNN_MIXERS = ("lstm",)  # the classic recurrent baseline: runnable by name, not by default
MIXER_POOLINGS = ("last", "mean")  # how a causal mixer's classifier pools (never "first")


def default_names(mixers: bool = True) -> list[str]:
    """multi_head (exact attention, fused kernel) first, then every other registered mechanism
    except the RNN-era ones, then (with `mixers`) the registered sequence mixers except the
    LSTM."""
    attention = ["multi_head",
                 *(n for n in ATTENTION.names() if n not in ("multi_head", *RNN_ERA))]
    if not mixers:
        return attention
    return [*attention, *(n for n in MIXER.names() if n not in RNN_MIXERS and n not in ATTENTION)]


def runnable_names() -> list[str]:
    """Every name --names accepts: the registered attention mechanisms and sequence mixers."""
    return [*ATTENTION.names(), *(n for n in MIXER.names() if n not in ATTENTION)]


@dataclass
class Budget:
    """Training of one run on one task; identical for every variant."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int


@dataclass
class LRASettings:
    """Everything a study depends on; saved in results.json. The defaults are the full mode:
    a 2-layer, 2-head d_model 64 encoder, ListOps of 100-500 tokens, retrieval over 192 tokens,
    pixels at 256 grey levels, 400-2,000 steps per run; about 10 hours for 12 variants x 3 tasks
    x 3 seeds on 2 CPU cores (an estimate from exact attention's measured step times, scaled by
    each variant's relative cost in the quick run, made when retrieval ran 128 tokens; not run
    end to end); the three mixers add roughly 5 hours more, 4 of them Mamba's step-by-step scan
    (extrapolated from their quick-size step times by tokens x width x layers). `quick()` is
    the short mode."""

    out: str = "runs/lra"
    mode: str = "full"  # "full" or "quick": which preset the numbers came from
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    names: list[str] = field(default_factory=default_names)
    seeds: int = 3
    device: str = "cpu"
    # the classifier (same for every variant; for every task unless task_model says otherwise)
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    position: str = "learned"
    # per-task changes to those sizes (MODEL_FIELDS), e.g. {"retrieval": {"n_heads": 2}}; LRA
    # too sizes its model per task. Within a task every variant still gets the same classifier
    task_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    # per-variant constructor keywords, e.g. {"sliding_window": {"window": 32}}; a variant not
    # named here runs at its registry defaults (recorded per run as its budget knob's value)
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # how a sequence mixer's classifier pools, on every task: "last" (the last real token, the
    # one position of a causal model that has read the whole row) or "mean" over its causal
    # outputs (most of which have not read the tokens that decide the answer)
    mixer_pooling: str = "last"
    weight_decay: float = 0.01
    eval_batch_size: int = 64
    # ListOps
    listops_min_length: int = 100
    listops_max_length: int = 500
    listops_max_depth: int = 10
    listops_max_args: int = 10
    listops_train: int = 10_000
    listops_test: int = 1000
    # one-hop key-value retrieval (retrieval.py). min_distance = 1 + n_layers * 64 puts every
    # pair beyond what a window of 64 (the windowed variants' default) carries to the query
    # token through n_layers layers; global tokens and full attention reach it in one
    retrieval_length: int = 192
    retrieval_pairs: int = 8
    retrieval_keys: int = 8
    retrieval_values: int = 4
    retrieval_min_distance: int = 129
    retrieval_train: int = 20_000
    retrieval_test: int = 1000
    # pixels
    pixel_levels: int = 256
    budgets: dict[str, Budget] = field(default_factory=lambda: {
        "listops": Budget(steps=600, batch_size=32, lr=1e-3, warmup_steps=60),
        "retrieval": Budget(steps=2000, batch_size=32, lr=1e-3, warmup_steps=100),
        "pixels": Budget(steps=400, batch_size=16, lr=1e-3, warmup_steps=40),
    })

    @classmethod
    def quick(cls, **overrides: Any) -> LRASettings:
        """About 15 minutes on 2 shared CPU cores for 12 attention variants x 3 tasks x 3 seeds:
        the quick mode runs the attention variants only, to stay within its 15 minutes; the
        three mixers take about 10 more (Mamba's scan 7 of them; estimated from their measured
        step times, not run end to end) when named (`--names multi_head mamba rwkv retention`).
        A one-layer, one-head d_model 32 encoder (the size of LRA's own Image configuration; two
        heads on retrieval), ListOps of 64-256 tokens, retrieval over 128 tokens (4 pairs, all
        >= 65 positions from the query), pixels at 8 grey levels, 120-200 steps per run.

        Exact attention learns all three well above chance in that budget. Retrieval gets two
        heads because with one, some query keys never learn to find their pair within 300
        steps: their query row settles on the fillers (a constant, safe answer) and that key
        stays at chance for the rest of the run; a second head gives each key another start.
        200 steps rather than 150: at 150, exact attention's accuracy still varies a lot with
        the seed (67-100% over 10 seeds; 60-100% at 200, 9 of 10 seeds >= 95%). Eight keys
        instead of four need about twice the steps, even with two heads."""
        values: dict[str, Any] = dict(
            mode="quick", names=default_names(mixers=False), d_model=32, n_heads=1, n_layers=1,
            d_ff=64, dropout=0.0,
            task_model={"retrieval": {"n_heads": 2}},
            listops_min_length=64, listops_max_length=256, listops_train=2000, listops_test=500,
            retrieval_length=128, retrieval_pairs=4, retrieval_keys=4, retrieval_values=4,
            retrieval_min_distance=65, retrieval_train=4000, retrieval_test=500,
            pixel_levels=8,
            budgets={
                "listops": Budget(steps=150, batch_size=32, lr=3e-3, warmup_steps=15),
                "retrieval": Budget(steps=200, batch_size=32, lr=3e-3, warmup_steps=20),
                "pixels": Budget(steps=120, batch_size=8, lr=3e-3, warmup_steps=12),
            },
        )
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        self.budgets = {k: Budget(**v) if isinstance(v, dict) else v
                        for k, v in self.budgets.items()}
        if self.mode not in ("full", "quick"):
            raise ConfigError(f"mode must be 'full' or 'quick', got {self.mode!r}")
        bad = sorted(set(self.tasks) - set(TASKS))
        if bad or not self.tasks:
            raise ConfigError(f"tasks must be a non-empty subset of {list(TASKS)}, got "
                             f"{self.tasks}")
        unknown = [n for n in [*self.names, *self.knobs] if n not in runnable_names()]
        if unknown or not self.names:
            raise ConfigError(f"names must be registered attention mechanisms or sequence "
                             f"mixers, one or more of {runnable_names()}, got unknown "
                             f"{unknown or self.names}")
        if self.mixer_pooling not in MIXER_POOLINGS:
            raise ConfigError(f"mixer_pooling must be one of {MIXER_POOLINGS}, got "
                             f"{self.mixer_pooling!r}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        for task, sizes in self.task_model.items():
            unknown = sorted(set(sizes) - set(MODEL_FIELDS))
            if task not in TASKS or unknown:
                raise ConfigError(f"task_model maps tasks of {list(TASKS)} to sizes among "
                                 f"{list(MODEL_FIELDS)}, got {task!r}: {sizes}")
        missing = sorted(set(self.tasks) - set(self.budgets))
        if missing:
            raise ConfigError(f"budgets must cover every task, missing {missing}")
        for task, b in self.budgets.items():
            if min(b.steps, b.batch_size) < 1 or b.lr <= 0 or b.warmup_steps < 0:
                raise ConfigError(f"budget for {task} needs steps, batch_size >= 1, lr > 0, "
                                 f"warmup_steps >= 0, got {b}")
        torch.device(self.device)  # a bad device string fails here, before any run

    def model_for(self, task: str) -> dict[str, Any]:
        """The classifier sizes (MODEL_FIELDS) used on `task`."""
        return {**{f: getattr(self, f) for f in MODEL_FIELDS}, **self.task_model.get(task, {})}

    def with_steps(self, steps: int) -> LRASettings:
        """The same settings with every task trained for `steps` (warmup scaled along)."""
        budgets = {t: Budget(steps, b.batch_size, b.lr, max(1, b.warmup_steps * steps // b.steps))
                   for t, b in self.budgets.items()}
        return LRASettings(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                              "budgets": budgets})


def make_task(task: str, s: LRASettings) -> TaskData:
    if task == "listops":
        return make_listops(train_size=s.listops_train, test_size=s.listops_test,
                            min_length=s.listops_min_length, max_length=s.listops_max_length,
                            max_depth=s.listops_max_depth, max_args=s.listops_max_args)
    if task == "retrieval":
        return make_retrieval(train_size=s.retrieval_train, test_size=s.retrieval_test,
                              length=s.retrieval_length, n_pairs=s.retrieval_pairs,
                              n_keys=s.retrieval_keys,
                              n_values=s.retrieval_values,
                              min_distance=s.retrieval_min_distance)
    if task == "pixels":
        return make_pixels(levels=s.pixel_levels)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


class SplitBatches(ShuffledRows):
    """Epoch-wise shuffled batches of a Split (the epoch-e permutation is seeded with
    seed * 100_003 + e, so neighbouring run seeds never share an epoch's order)."""

    def __init__(self, split: Split, batch_size: int, seed: int, device: torch.device) -> None:
        super().__init__(len(split), batch_size, seed * 100_003)
        self.split, self.device = split, device

    def next(self) -> dict[str, Tensor]:
        rows = self.next_rows()
        return {"input_ids": self.split.input_ids[rows].to(self.device),
                "attention_mask": self.split.attention_mask[rows].to(self.device),
                "labels": self.split.labels[rows].to(self.device)}


def _loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    return model(**batch).loss, int(batch["labels"].numel())


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int, device: torch.device) -> float:
    model.eval()
    right = 0
    for start in range(0, len(split), batch_size):
        end = start + batch_size
        logits = model(split.input_ids[start:end].to(device),
                       split.attention_mask[start:end].to(device)).logits  # (b, C)
        right += int((logits.argmax(-1).cpu() == split.labels[start:end]).sum())
    return right / len(split)


def pooling_for(name: str, data: TaskData, s: LRASettings) -> str:
    """The task's pooling for an attention variant; `mixer_pooling` for a sequence mixer."""
    return s.mixer_pooling if is_mixer(name) else data.pooling


def build_classifier(name: str, data: TaskData, s: LRASettings) -> SequenceClassifier:
    return SequenceClassifier(name, vocab_size=data.vocab_size, n_classes=data.n_classes,
                              max_length=data.seq_len, **s.model_for(data.name),
                              position=s.position, pooling=pooling_for(name, data, s),
                              knobs=s.knobs.get(name))


def budget_knob(name: str, s: LRASettings) -> dict[str, Any] | None:
    """The variant's cost/accuracy knob and the value this study ran it at."""
    cls = MIXER.get(name) if is_mixer(name) else ATTENTION.get(name)
    knob = getattr(cls, "budget_knob", None)
    if knob is None:
        return None
    if knob in s.knobs.get(name, {}):
        return {knob: s.knobs[name][knob]}
    default = inspect.signature(cls).parameters.get(knob)
    return {knob: None if default is None else default.default}


def train_one(data: TaskData, name: str, seed: int, s: LRASettings) -> dict[str, Any]:
    """Train variant `name` on `data` with `seed`; the record of the run."""
    budget, device = s.budgets[data.name], torch.device(s.device)
    torch.manual_seed(seed)
    model = build_classifier(name, data, s).to(device)
    optimizer = adam(model.parameters(), lr=budget.lr, weight_decay=s.weight_decay)
    schedule = partial(cosine_warmup, peak_lr=budget.lr, warmup_steps=budget.warmup_steps,
                       total_steps=budget.steps)
    trainer = Trainer(model, optimizer, schedule,
                      SplitBatches(data.train, budget.batch_size, seed, device), _loss,
                      TrainerConfig(max_steps=budget.steps, clip_norm=1.0, progress=False,
                                    log_every=max(1, budget.steps // 20)))
    result = trainer.fit()
    if result.stopped_by == "interrupt":  # Ctrl-C: stop the study, not just this run
        raise KeyboardInterrupt(f"{name} on {data.name} interrupted at step {result.step}")
    start = time.perf_counter()
    test_accuracy = accuracy(model, data.test, s.eval_batch_size, device)
    tail = result.history[-max(1, len(result.history) // 5):]
    return {
        "task": data.name, "variant": name, "seed": seed, "accuracy": test_accuracy,
        "params": sum(p.numel() for p in model.parameters()), "steps": result.step,
        "train_seconds": result.train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "final_loss": sum(h["loss"] for h in tail) / len(tail),
        "masked": model.takes_mask, "knob": budget_knob(name, s),
        "kind": "mixer" if model.causal else "attention", "pooling": model.pooling,
    }


def write(out: Path, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _previous_runs(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Finished runs of an earlier study in `out` with the same settings (for resume)."""
    path = out / "results.json"
    if not path.is_file():
        return []
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("settings") != settings:
        raise ConfigError(f"{path} was written with other settings: resume only continues the "
                         "same study (use another --out)")
    return [r for r in old.get("runs", []) if "error" not in r]


def run_lra(s: LRASettings, *, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Every task x seed x variant; results.json after each run, then the report."""
    from attnlab.studies.lra.report import write_report

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(asdict(s)))
    done = _previous_runs(out, settings) if resume else []
    finished = {(r["task"], r["variant"], r["seed"]) for r in done}
    results: dict[str, Any] = {
        "command": command or " ".join(["attnlab", *sys.argv[1:]]), "settings": settings,
        "machine": machine_info(), "tasks": {}, "runs": list(done),
    }
    wall = time.perf_counter()
    total = len(s.tasks) * s.seeds * len(s.names)
    try:
        with tqdm(total=total, desc="lra", unit="run") as bar:
            for task in s.tasks:
                bar.set_postfix_str(f"{task}: generating data")
                start = time.perf_counter()
                data = make_task(task, s)
                results["tasks"][task] = {**data.describe(),
                                          "generate_seconds": time.perf_counter() - start}
                for seed in range(s.seeds):
                    for name in s.names:
                        if (task, name, seed) not in finished:
                            bar.set_postfix_str(f"{task} {name} seed {seed}")
                            results["runs"].append(_guarded_run(data, name, seed, s))
                            results["wall_seconds"] = time.perf_counter() - wall
                            write(out, results)
                        bar.update()
    except KeyboardInterrupt:
        # the report of what finished; the unfinished run is not recorded (resume redoes it)
        results["interrupted"] = True
        write(out, results)
        write_report(results, out)
        raise
    results["wall_seconds"] = time.perf_counter() - wall
    write(out, results)
    write_report(results, out)
    return results


def _guarded_run(data: TaskData, name: str, seed: int, s: LRASettings) -> dict[str, Any]:
    """One run; a variant that raises (unsupported length, non-finite loss) is recorded with its
    error instead of stopping the study."""
    try:
        return train_one(data, name, seed, s)
    except (ValueError, RuntimeError, TypeError, NotImplementedError, FloatingPointError) as e:
        log.warning("%s on %s (seed %d) failed:\n%s", name, data.name, seed,
                    traceback.format_exc())
        return {"task": data.name, "variant": name, "seed": seed,
                "kind": "mixer" if is_mixer(name) else "attention",
                "error": f"{type(e).__name__}: {e}"}
