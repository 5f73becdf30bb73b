"""The runs of `attnlab scaling`: LLaMA-style decoders (Touvron et al. 2023) from ~13k to ~4.7M
non-embedding parameters trained on one corpus with one recipe, dense and mixture-of-experts
(Switch, Fedus et al. 2022: top-1; Mixtral, Jiang et al. 2024: top-2) at equal active
parameters, each run's validation loss kept at several token counts.

Every run goes through the one run routine (`tasks.language_model.LMSettings`, the LM task,
`training.run.run_task`) on preset "llama-tiny" with the shape in `model_overrides`, in its own
folder `--out/runs/<name>`. N counts every parameter but the token embedding and the LM head
(Kaplan et al. 2020, sec. 2.1: non-embedding parameters); an MoE model's active N counts
top_k / experts of its expert weights. D = steps x batch x block tokens; C = 6 N D.

Validation scores the same `valid_windows` windows of the held-out text, evenly spaced, at
every evaluation and for every model (the LM task's --valid-windows: the whole held-out stream
at each of ~10 evaluations would cost more than the training of the larger quick runs), by the
next-token loss alone (an MoE model's auxiliary losses are left out, so dense and MoE compare
fairly).

A run folder holding a finished run (metrics.json, config.json) whose settings match is
reused; one with matching settings and no final model is resumed; one with other settings
is replaced. So an interrupted sweep, run again, goes on where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from attnlab.data.web_corpus import WEB
from attnlab.errors import ConfigError, DataError, MissingFileError
from attnlab.evaluation.machine import machine_info
from attnlab.models import PRESETS, build_model
from attnlab.serialization import atomic_write
from attnlab.tasks.language_model import LanguageModelTask, LMSettings
from attnlab.training.run import run_task
from attnlab.training.settings import SETTINGS_NAME
from attnlab.version import __version__

log = logging.getLogger(__name__)

PRESET = "llama-tiny"
RESULTS = "results.json"
RUNS = "runs"


@dataclass(frozen=True)
class Size:
    """One model shape; its name is its non-embedding parameter count."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int

    def overrides(self) -> dict[str, int]:
        return {"d_model": self.d_model, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "n_kv_heads": self.n_heads, "d_ff": self.d_ff}


# Head size 16 up to d = 128, then 32; d_ff ~ 8/3 d (LLaMA's SwiGLU ratio) and a multiple of 8,
# so a top-2 expert's d_ff / 2 rows are 16-byte multiples (torch's grouped matmul needs it);
# depth grows with width (Kaplan et al. 2020, sec. 3.1: the shape matters little at fixed N).
# Each ~2-3x the last.
SIZES = (
    Size("13k", 32, 1, 2, 96),
    Size("56k", 48, 2, 3, 128),
    Size("151k", 64, 3, 4, 176),
    Size("443k", 96, 4, 6, 256),
    Size("990k", 128, 5, 8, 344),
    Size("2.7M", 192, 6, 6, 512),
    Size("4.7M", 256, 6, 8, 688),
)
SIZE_NAMES = tuple(s.name for s in SIZES)


def size_named(name: str) -> Size:
    for size in SIZES:
        if size.name == name:
            return size
    raise ConfigError(f"sizes: unknown size {name!r}; expected some of {list(SIZE_NAMES)}")


def kaplan_lr(n: float) -> float:
    """Kaplan et al. 2020, appendix D.1 (eq. D.1): LR(N) ~ 0.003239 - 0.0001395 log N."""
    return 0.003239 - 0.0001395 * math.log(n)


@dataclass(frozen=True)
class RunSpec:
    """One run: a size, its steps, and dense (top_k None) or MoE with `experts` experts. A
    top-k MoE keeps the dense model's active FFN width: each expert is d_ff / top_k wide."""

    size: Size
    steps: int
    top_k: int | None = None
    experts: int = 8

    @property
    def kind(self) -> str:
        return "dense" if self.top_k is None else f"moe-top{self.top_k}"

    @property
    def name(self) -> str:
        kind = "dense" if self.top_k is None else f"moe{self.experts}-top{self.top_k}"
        return f"{kind}-{self.size.name}-{self.steps}"

    def model_overrides(self) -> dict[str, Any]:
        values: dict[str, Any] = self.size.overrides()
        if self.top_k is not None:
            values["d_ff"] = max(1, self.size.d_ff // self.top_k)
            values["moe"] = {"experts": self.experts, "top_k": self.top_k}
        return values


def moe_supported(preset: str = PRESET) -> bool:
    """Whether this attnlab's config of the preset has the `moe` field (nn/moe.py plumbed)."""
    config_class = PRESETS[preset].model_class.config_class
    return "moe" in {f.name for f in dataclasses.fields(config_class)}


def count_parameters(model_overrides: dict[str, Any], vocab_size: int = 256) -> dict[str, int]:
    """total, non-embedding (all but the token embedding and the LM head) and active
    (non-embedding with top_k / experts of each MoE layer's expert weights) parameters, on the
    meta device (nothing allocated)."""
    with torch.device("meta"):
        model = build_model(PRESET, vocab_size=vocab_size, **model_overrides)
    return parameter_counts(model, model_overrides.get("moe"))


def parameter_counts(model: nn.Module, moe: dict[str, Any] | None) -> dict[str, int]:
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                 for p in m.parameters()}
    head = getattr(model, "lm_head", None)
    if head is not None:
        embedding |= {id(p) for p in head.parameters()}
    total = non_embedding = experts = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if id(p) in embedding:
            continue
        non_embedding += p.numel()
        if ".experts." in f".{name}":
            experts += p.numel()
    active = non_embedding
    if moe and experts:
        active = non_embedding - round(experts * (1 - moe["top_k"] / moe["experts"]))
    return {"total": total, "non_embedding": non_embedding, "active": active}


@dataclass
class ScalingSettings:
    """The sweep. Defaults are the full study; `quick()` fits in 20 minutes on 2 CPU cores
    (`expected_seconds`)."""

    out: str = "runs/scaling"
    text: str = WEB  # the World English Bible split by book (data/web_corpus.py)
    sizes: list[str] = field(default_factory=lambda: list(SIZE_NAMES))
    steps: list[int] = field(default_factory=lambda: [1000, 3000])  # a run per size per budget
    batch_size: int = 16
    block_size: int = 128
    lr: float | None = None  # None: Kaplan et al.'s LR(N) for each size
    warmup_fraction: float = 0.1
    evaluations: int = 10  # per run, evenly spread; each is a (N, D) point
    valid_windows: int = 512  # validation windows of block_size + 1 tokens
    tokenizer: str = "chars"
    vocab_size: int = 256
    moe: bool = True
    moe_sizes: list[str] = field(default_factory=lambda: ["443k", "990k"])
    moe_top_k: list[int] = field(default_factory=lambda: [1, 2])
    experts: int = 8
    seed: int = 1
    device: str = "auto"
    bootstrap: int = 200  # resamples for the confidence intervals

    @classmethod
    def quick(cls, **overrides: Any) -> ScalingSettings:
        """Two budgets per size (250 and 500 steps of 1,024-token batches: each size's D
        varies between annealed runs, not only along one schedule), MoE top-1 and top-2 at one
        size, 128 validation windows: about 20 minutes on one thread of this machine's Xeon
        (`expected_seconds`), ~10 on 2 idle cores."""
        values = dict(steps=[250, 500], batch_size=16, block_size=64, evaluations=8,
                      valid_windows=128, moe_sizes=["443k"], out="runs/scaling-quick")
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        for name in ("batch_size", "block_size", "evaluations", "valid_windows", "vocab_size",
                     "experts", "bootstrap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.sizes:
            raise ConfigError("sizes: give at least one size, got none")
        self.sizes = [size_named(s).name for s in dict.fromkeys(self.sizes)]
        self.moe_sizes = [size_named(s).name for s in dict.fromkeys(self.moe_sizes)]
        if not self.steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 2
                                 for s in self.steps):
            raise ConfigError(f"steps must be integers >= 2, at least one, got {self.steps!r}")
        self.steps = sorted(set(self.steps))
        if any(k not in (1, 2) for k in self.moe_top_k) or not self.moe_top_k:
            raise ConfigError(f"moe_top_k must be 1 and/or 2, got {self.moe_top_k!r}")
        if max(self.moe_top_k) > self.experts:
            raise ConfigError(f"moe_top_k {self.moe_top_k} exceeds experts {self.experts}")
        if self.lr is not None and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number or None, got {self.lr!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def specs(self) -> list[RunSpec]:
        """Every run, small to large: dense sizes x budgets, then the MoE points (at the
        largest budget)."""
        dense = [RunSpec(size_named(s), steps) for s in self.sizes for steps in self.steps]
        moe = [RunSpec(size_named(s), self.steps[-1], k, self.experts)
               for s in self.moe_sizes for k in self.moe_top_k] if self.moe else []
        return dense + moe

    def run_settings(self, spec: RunSpec) -> LMSettings:
        n = count_parameters(spec.model_overrides(), self.vocab_size)["active"]
        return LMSettings(
            text=self.text, out=str(Path(self.out) / RUNS / spec.name), preset=PRESET,
            tokenizer=self.tokenizer, vocab_size=self.vocab_size, block_size=self.block_size,
            batch_size=self.batch_size, max_steps=spec.steps,
            lr=round(self.lr if self.lr is not None else kaplan_lr(n), 6),
            warmup_steps=max(1, round(self.warmup_fraction * spec.steps)),
            evaluations=self.evaluations, valid_windows=self.valid_windows, save_every=0,
            keep_last=1, seed=self.seed,
            device=self.device, precision="fp32", model_overrides=spec.model_overrides())


# -- one run, reused when finished -----------------------------------------------------------------

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); remove it to redo that "
                        "part") from None


def as_saved(settings: LMSettings) -> dict[str, Any]:
    """The settings as train_settings.json holds them, without the folder (it may move)."""
    values = json.loads(json.dumps(dataclasses.asdict(settings)))
    values.pop("out")
    return values


def run_state(folder: Path, settings: LMSettings) -> str:
    """done (finished with these settings), resume (started with them), new, or replace."""
    saved_path = folder / SETTINGS_NAME
    if not saved_path.is_file():
        return "new"
    saved = read_json(saved_path)
    saved.pop("out", None)
    if saved != as_saved(settings):
        return "replace"
    finished = (folder / "metrics.json").is_file() and (folder / "config.json").is_file()
    return "done" if finished else "resume"


def train_run(settings: LMSettings, state: str, progress: bool) -> None:
    outcome = run_task(LanguageModelTask(settings), resume=state == "resume",
                       overwrite=state == "replace", progress=progress)
    if outcome.interrupted:
        raise KeyboardInterrupt


Runner = Callable[[LMSettings, str, bool], None]


def run_sweep(s: ScalingSettings, *, progress: bool = True,
              runner: Runner = train_run) -> dict[str, Any]:
    """Train every run not finished before (results.json rewritten after each), then return
    the collected results. `runner` trains one run (tests replace it)."""
    if s.moe and not moe_supported():
        raise ConfigError(f"moe: this attnlab's {PRESET} config has no `moe` field yet (the "
                          f"MoE layer is not plumbed into the model); use --moe off")
    out = Path(s.out)
    specs = s.specs()
    bar = tqdm(specs, desc="scaling runs", unit="run", disable=not progress, position=0)
    for spec in bar:
        settings = s.run_settings(spec)
        folder = Path(settings.out)
        state = run_state(folder, settings)
        bar.set_postfix_str(f"{spec.name} ({state})")
        if state != "done":
            start = time.perf_counter()
            runner(settings, state, progress)
            log.debug("%s took %.1fs", spec.name, time.perf_counter() - start)
        results = collect(s, specs)
        write_results(out, results)
    bar.close()
    results = collect(s, specs)
    write_results(out, results)
    return results


# -- how long it takes ----------------------------------------------------------------------------

# Calibration (one torch thread, the 2-core Xeon this study was developed on, char tokens):
# seconds per training token = overhead + per FLOP x 6 (N + layers x block x d + 100 d);
# an MoE step costs MOE_COST x its dense twin's; a run adds RUN_SECONDS of data and saving.
SECONDS_PER_TOKEN = 5e-6
SECONDS_PER_FLOP = 1.9e-11
MOE_COST = 1.35
RUN_SECONDS = 6.0
HELD_OUT_TOKENS = 240_000  # builtin:web's test books, in characters


def expected_seconds(s: ScalingSettings) -> float:
    """Rough wall time of the sweep's runs on one thread (two threads: ~0.6-0.7x)."""
    total = 0.0
    for spec in s.specs():
        n = count_parameters(spec.model_overrides(), s.vocab_size)["active"]
        size = spec.size
        flops = 6 * (n + size.n_layers * s.block_size * size.d_model + 100 * size.d_model)
        per_token = (SECONDS_PER_TOKEN + SECONDS_PER_FLOP * flops) * (
            MOE_COST if spec.top_k else 1.0)
        evaluated = s.evaluations * s.valid_windows * (s.block_size + 1) + (
            HELD_OUT_TOKENS if s.text == WEB else 0)  # builtin:web: the test books at the end
        total += per_token * (spec.steps * s.tokens_per_step + evaluated / 3) + RUN_SECONDS
    return total


# -- what the runs left ----------------------------------------------------------------------------

def run_record(folder: Path) -> dict[str, Any] | None:
    """One finished run folder as the report reads it; None when it holds no finished run."""
    if not ((folder / "metrics.json").is_file() and (folder / SETTINGS_NAME).is_file()):
        return None
    settings, metrics = read_json(folder / SETTINGS_NAME), read_json(folder / "metrics.json")
    overrides = settings.get("model_overrides") or {}
    moe = overrides.get("moe")
    tokens_per_step = (settings["batch_size"] * settings["block_size"]
                       * settings.get("grad_accum", 1))
    params = count_parameters(overrides, settings.get("vocab_size", 256))
    curve = [{"step": e["step"], "tokens": e["step"] * tokens_per_step,
              "valid_loss": e["valid_loss"]}
             for e in metrics.get("evaluations", []) if "valid_loss" in e]
    if not curve:
        return None
    record = {
        "name": folder.name, "folder": str(folder), "size": size_of(overrides),
        "kind": "dense" if not moe else f"moe-top{moe['top_k']}",
        "experts": moe["experts"] if moe else None, "top_k": moe["top_k"] if moe else None,
        "shape": {k: overrides.get(k) for k in ("d_model", "n_layers", "n_heads", "d_ff")},
        "params": params, "N": params["active"],
        "steps": metrics.get("steps"), "tokens_per_step": tokens_per_step,
        "D": curve[-1]["tokens"], "lr": settings.get("lr"),
        "warmup_steps": settings.get("warmup_steps"), "valid_loss": curve[-1]["valid_loss"],
        "curve": curve, "train_seconds": metrics.get("train_seconds"),
        "tokens_per_second": metrics.get("train_tokens_per_second"),
        "seed": settings.get("seed"), "text": settings.get("text"),
        "vocab_size": metrics.get("vocab_size"),
    }
    train_tokens = metrics.get("train_stream_tokens")
    record["epochs"] = round(record["D"] / train_tokens, 3) if train_tokens else None
    for key in ("test_loss", "test_perplexity", "expert_load", "moe"):
        if key in metrics:
            record[key] = metrics[key]
    record["valid_windows"] = settings.get("valid_windows")
    return record


def size_of(overrides: dict[str, Any]) -> str | None:
    """The SIZES name of a run's shape (a top-k MoE run's experts are d_ff / k wide), None
    if none."""
    top_k = (overrides.get("moe") or {}).get("top_k", 1)
    for size in SIZES:
        if all(overrides.get(k) == getattr(size, k) for k in ("d_model", "n_layers", "n_heads")
               ) and overrides.get("d_ff") == max(1, size.d_ff // top_k):
            return size.name
    return None


def collect(s: ScalingSettings, specs: Sequence[RunSpec] | None = None) -> dict[str, Any]:
    """results.json: the settings, the machine and each finished run's record."""
    folders = ([Path(s.out) / RUNS / spec.name for spec in specs] if specs is not None
               else sorted(p for p in (Path(s.out) / RUNS).glob("*") if p.is_dir()))
    runs = {}
    for folder in folders:
        record = run_record(folder)
        if record is not None:
            runs[record["name"]] = record
    return {"study": "scaling", "attnlab": __version__, "settings": dataclasses.asdict(s),
            "machine": machine_info(), "runs": runs}


def read_results(out: Path) -> dict[str, Any]:
    path = out / RESULTS
    if not path.is_file():
        return {}
    results = read_json(path)
    return results if isinstance(results, dict) else {}


def write_results(out: Path, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out / RESULTS, lambda t: Path(t).write_text(text, encoding="utf-8"))


# -- the study -------------------------------------------------------------------------------------

def run_study(s: ScalingSettings, *, progress: bool = True,
              runner: Runner = train_run) -> dict[str, Any]:
    """The sweep, then report.json, report.md and the plots in `s.out`; returns the report."""
    from attnlab.studies.scaling.report import write_report

    results = run_sweep(s, progress=progress, runner=runner)
    return write_report(results, Path(s.out), samples=s.bootstrap, seed=s.seed)


def report_from(folder: str | Path, bootstrap: int | None = None) -> dict[str, Any]:
    """Re-collect the finished runs under `folder`/runs (results.json rewritten) and refit and
    redraw the report without training."""
    from attnlab.studies.scaling.report import write_report

    out = Path(folder)
    if not (out / RUNS).is_dir():
        raise MissingFileError(f"--from {out}: no {RUNS}/ folder of scaling runs in it")
    saved = read_results(out).get("settings") or {}
    # the sizes are the runs found (names of an older attnlab's sizes are kept as they were)
    listed = {k: saved[k] for k in ("sizes", "moe_sizes") if k in saved}
    known = {f.name for f in dataclasses.fields(ScalingSettings)} - set(listed)
    s = ScalingSettings(**{**{k: v for k, v in saved.items() if k in known}, "out": str(out),
                           **({"bootstrap": bootstrap} if bootstrap else {})})
    results = collect(s)
    results["settings"].update(listed)
    if not results["runs"]:
        raise DataError(f"--from {out}: no finished run under {out / RUNS} (a run is finished "
                        "when its metrics.json is written)")
    write_results(out, results)
    return write_report(results, out, samples=s.bootstrap, seed=s.seed)
