"""`attnlab compare --family lm`: what may replace attention, measured against it. A LLaMA-style
Transformer (Touvron et al. 2023) against Mamba (Gu & Dao 2023), RWKV-4 (Peng et al. 2023),
RetNet (Sun et al. 2023) and an LSTM language model (Hochreiter & Schmidhuber 1997; Merity et
al. 2018), at equal non-embedding parameters (each architecture's width searched to match the
Transformer's; one tokenizer and vocabulary for all) and equal wall-clock time, on one harness.

Four parts, results.json rewritten (atomically) after every finished run or measurement, so an
interrupted study keeps what finished and the same command again skips it:
- train: each architecture trained on `builtin:web` (the World English Bible split by book)
  for the same seconds of training through the one run routine (`attnlab train lm`'s task with
  --time-budget: the same tokenizer, block size, batch and schedule; a peak learning rate per
  architecture from ARCHS, each with its reason), validation and test loss / perplexity per
  seed (the kept weights are the best validation's);
- cost: training tokens/s (forward + backward) and peak memory against sequence length
  (throughput.py's measurement, decoder-only);
- decode: per-token latency and the cache's bytes against context length
  (`studies/compare/decoding.py`'s `measure_decoding`), and the context where each recurrent
  model's decoding becomes faster than the KV-cached Transformer's;
- probes: associative recall, copying at a distance and selective copying (lm_probes.py),
  each trained per architecture for the same time at a smaller matched size, scored by accuracy.
The architectures and their matching: lm_archs.py. lm_report.py turns results.json into
results.md (with the papers' claims against the measurement), lm_plots.py into plots.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnlab.data.web_corpus import WEB
from attnlab.errors import ConfigError
from attnlab.evaluation.machine import machine_info
from attnlab.models import PRESETS, build_model
from attnlab.studies.compare import decoding, lm_probes, throughput
from attnlab.studies.compare.lm_archs import ARCHS, DEFAULT_ARCHS, REFERENCE, matched_models
from attnlab.studies.compare.vision import read_results, spread, write_results
from attnlab.studies.scaling.sweep import as_saved, read_json, run_state
from attnlab.studies.scaling.sweep import train_run as sweep_train_run
from attnlab.tasks.language_model import LMSettings
from attnlab.training.settings import check_positive_ints, check_positive_numbers
from attnlab.version import __version__

PARTS = ("train", "cost", "decode", "probes")
@dataclass
class LMCompareSettings:
    """The study. Defaults are the full mode; `quick()` fits 15 minutes on 2 CPU cores
    (`expected_minutes`)."""

    out: str = "runs/compare-lm"
    text: str = WEB  # builtin:web, or a UTF-8 text file (the LM task's --text)
    architectures: list[str] = field(default_factory=lambda: list(DEFAULT_ARCHS))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    seeds: int = 3
    # the Transformer every architecture is matched to (non-embedding parameters)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    tolerance: float = 0.03  # largest relative parameter gap accepted
    lrs: dict[str, float] = field(default_factory=dict)  # overrides of ARCHS[arch].lr
    # train
    seconds: float = 300.0  # training seconds per architecture and seed
    max_steps: int | None = None  # instead of `seconds`: a step limit (tests; exact, not timed)
    tokenizer: str = "bpe"
    vocab_size: int = 2000
    block_size: int = 128
    batch_size: int = 16
    warmup_steps: int = 50
    evaluations: int = 8
    valid_windows: int = 256
    device: str = "cpu"
    # cost
    lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    tokens_per_batch: int = 4096
    cost_repeats: int = 3
    # decode
    contexts: list[int] = field(default_factory=lambda: [256, 1024, 4096, 16384])
    new_tokens: int = 16
    # probes, at a smaller matched size
    probes: list[str] = field(default_factory=lambda: list(lm_probes.PROBES))
    probe_seconds: float = 60.0
    probe_steps: int | None = None  # instead of `probe_seconds` (tests)
    probe_d_model: int = 64
    probe_n_layers: int = 2
    probe_n_heads: int = 4
    probe_lr: float = 3e-3
    probe_batch: int = 32
    probe_examples: int = 256
    mqar_pairs: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    copy_distances: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    selective_lengths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    selective_tokens: int = 8
    symbols: int = 64

    @classmethod
    def quick(cls, **overrides: Any) -> LMCompareSettings:
        """Within 15 minutes on 2 CPU cores (`expected_minutes`: about 14 for the five): one
        seed, 70-second LM runs validated 4 times on 64 windows, 10-second probes, three
        lengths and contexts."""
        values: dict[str, Any] = dict(
            seeds=1, seconds=70.0, evaluations=4, warmup_steps=30,
            valid_windows=64, lengths=[64, 256, 1024], contexts=[256, 1024, 4096],
            cost_repeats=2, probe_seconds=10.0, probe_examples=128, mqar_pairs=[4, 8, 16],
            copy_distances=[8, 32, 64], selective_lengths=[16, 32, 64])
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        archs = self.architectures
        unknown = [a for a in archs if a not in ARCHS]
        if not archs or unknown or len(set(archs)) != len(archs):
            raise ConfigError(f"architectures must be distinct names among {list(ARCHS)}, at "
                              f"least one, got {archs!r}")
        if REFERENCE not in archs:
            raise ConfigError(f"architectures must include {REFERENCE!r} (every other one is "
                              f"matched and compared to it), got {archs!r}")
        bad = [p for p in self.parts if p not in PARTS]
        if not self.parts or bad:
            raise ConfigError(f"parts must be among {list(PARTS)}, at least one, got "
                              f"{self.parts!r}")
        bad = [p for p in self.probes if p not in lm_probes.PROBES]
        if bad:
            raise ConfigError(f"probes must be among {list(lm_probes.PROBES)}, got "
                              f"{self.probes!r}")
        check_positive_ints(self, (
            "seeds", "d_model", "n_layers", "n_heads", "vocab_size", "block_size", "batch_size",
            "warmup_steps", "evaluations", "valid_windows", "tokens_per_batch", "cost_repeats",
            "new_tokens", "probe_d_model", "probe_n_layers", "probe_n_heads", "probe_batch",
            "probe_examples", "selective_tokens", "symbols"))
        check_positive_ints(self, [name for name in ("max_steps", "probe_steps")
                                   if getattr(self, name) is not None])
        check_positive_numbers(self, ("seconds", "probe_seconds", "probe_lr"))
        if not 0 < self.tolerance < 0.5:
            raise ConfigError(f"tolerance must be in (0, 0.5), got {self.tolerance!r}")
        for name in ("lengths", "contexts", "mqar_pairs", "copy_distances",
                     "selective_lengths"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                 for v in values):
                raise ConfigError(f"{name} must be positive integers, at least one, got "
                                  f"{values!r}")
            setattr(self, name, sorted(set(values)))
        if not isinstance(self.lrs, dict) or any(
                a not in ARCHS or isinstance(v, bool) or not isinstance(v, int | float) or v <= 0
                for a, v in self.lrs.items()):
            raise ConfigError(f"lrs must map architecture names to positive learning rates, "
                              f"got {self.lrs!r}")
        spec = self.probe_spec()  # ValueError -> ConfigError below
        for probe, sizes in self.probe_sizes().items():
            for size in sizes:
                try:
                    lm_probes.check_size(probe, size, spec)
                except ValueError as error:
                    raise ConfigError(str(error)) from None
        for name, heads in (("d_model", self.n_heads), ("probe_d_model", self.probe_n_heads)):
            if getattr(self, name) % (2 * heads):
                raise ConfigError(f"{name} ({getattr(self, name)}) must be a multiple of twice "
                                  f"the heads ({heads}): even rotary head dimensions")

    def probe_spec(self) -> lm_probes.ProbeSpec:
        try:
            return lm_probes.ProbeSpec(self.symbols, self.selective_tokens)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def probe_sizes(self) -> dict[str, list[int]]:
        return {"mqar": self.mqar_pairs, "copy": self.copy_distances,
                "selective": self.selective_lengths}

    def lr(self, arch: str) -> float:
        return float(self.lrs.get(arch, ARCHS[arch].lr))


# -- part 1: train ---------------------------------------------------------------------------------

def lm_settings(s: LMCompareSettings, arch: str, values: dict[str, Any], seed: int,
                out: Path) -> LMSettings:
    return LMSettings(
        text=s.text, out=str(out), preset=ARCHS[arch].preset, tokenizer=s.tokenizer,
        vocab_size=s.vocab_size, block_size=s.block_size, batch_size=s.batch_size,
        max_steps=s.max_steps or 10**9, time_budget=None if s.max_steps else s.seconds,
        lr=s.lr(arch), warmup_steps=s.warmup_steps, evaluations=s.evaluations,
        valid_windows=s.valid_windows, keep="best", save_every=0, keep_last=1, seed=seed,
        device=s.device, precision="fp32", model_overrides=values)


def train_run(settings: LMSettings, state: str) -> None:
    """One LM run through the run routine (studies/scaling's runner: new, resumed or replacing
    a run of other settings), without progress bars."""
    sweep_train_run(settings, state, False)


def run_record(arch: str, seed: int, settings: LMSettings, wall: float) -> dict[str, Any]:
    metrics = read_json(Path(settings.out) / "metrics.json")
    record = {"arch": arch, "seed": seed, "preset": settings.preset, "lr": settings.lr,
              "wall_seconds": round(wall, 1), "folder": settings.out}
    for key in ("valid_loss", "valid_perplexity", "test_loss", "test_perplexity", "steps",
                "stopped_by", "train_seconds", "train_tokens", "train_tokens_per_second",
                "params", "vocab_size", "train_stream_tokens"):
        if key in metrics:
            record[key] = metrics[key]
    record["epochs"] = round(record["train_tokens"] / record["train_stream_tokens"], 3)
    return record


def summarise_runs(results: dict[str, Any]) -> None:
    """results["perplexity"][arch][metric] = spread over the finished seeds."""
    by_arch: dict[str, dict[str, list[float]]] = {}
    for run in results["runs"].values():
        for key in ("valid_loss", "valid_perplexity", "test_loss", "test_perplexity",
                    "train_tokens_per_second", "steps"):
            if key in run:
                by_arch.setdefault(run["arch"], {}).setdefault(key, []).append(run[key])
    results["perplexity"] = {arch: {k: spread(v) for k, v in metrics.items()}
                             for arch, metrics in by_arch.items()}


def run_train(s: LMCompareSettings, results: dict[str, Any], earlier: dict[str, Any],
              out: Path, save: Callable[[], None], runner: Callable[[LMSettings, str], None],
              *, train: bool = True) -> None:
    """Each (architecture, seed) run: kept from `earlier` when finished with these settings,
    else trained (`train`; without it, left out)."""
    models = results["models"]
    cells = [(arch, seed) for seed in range(1, s.seeds + 1) for arch in s.architectures]
    for i, (arch, seed) in enumerate(cells, 1):
        key = f"{arch}-s{seed}"
        settings = lm_settings(s, arch, models[arch]["values"], seed, out / "runs" / key)
        identity = as_saved(settings)
        head = f"[train {i}/{len(cells)}] {ARCHS[arch].label}, seed {seed}"
        old = earlier.get(key)
        if old is not None and old.get("identity") == identity:
            results["runs"][key] = old
            if train:
                print(f"{head}: finished earlier, valid loss {old['valid_loss']:.3f} "
                      "(skipped)", flush=True)
            continue
        if not train:
            continue
        state = run_state(Path(settings.out), settings)
        budget = f"{s.max_steps} steps" if s.max_steps else f"{s.seconds:g} s"
        print(f"{head}: " + ("finished in its folder earlier (reused)" if state == "done" else
                             f"training for {budget} ({state}) ..."), flush=True)
        start = time.perf_counter()
        if state != "done":
            runner(settings, state)
        record = run_record(arch, seed, settings, time.perf_counter() - start)
        results["runs"][key] = {**record, "identity": identity}
        test = f", test {record['test_loss']:.3f}" if "test_loss" in record else ""
        print(f"{head}: valid loss {record['valid_loss']:.3f}{test} after {record['steps']:,} "
              f"steps ({record['train_tokens_per_second']:,} tokens/s)", flush=True)
        summarise_runs(results)
        save()
    summarise_runs(results)


# -- part 2: cost ----------------------------------------------------------------------------------

def build(arch: str, values: dict[str, Any], vocab_size: int, max_seq_len: int) -> Any:
    """A fresh model of the study's shape (random weights: speed and memory do not depend on
    them), its positions bounded by `max_seq_len`."""
    torch.manual_seed(0)
    return build_model(ARCHS[arch].preset, vocab_size=vocab_size, max_seq_len=max_seq_len,
                       bos_token_id=0, eos_token_id=0, **values)


def run_cost(s: LMCompareSettings, models: dict[str, Any]) -> list[dict[str, Any]]:
    built = {arch: build(arch, m["values"], s.vocab_size, max(s.lengths) + 1)
             for arch, m in models.items()}
    return throughput.measure(built, s.vocab_size, s.lengths,
                              tokens_per_batch=s.tokens_per_batch, repeats=s.cost_repeats,
                              decoder_only=True)


# -- part 3: decode --------------------------------------------------------------------------------

def run_decode(s: LMCompareSettings, models: dict[str, Any], decode: dict[str, Any],
               save: Callable[[], None]) -> None:
    rows = decode.setdefault("rows", {})
    for arch, m in models.items():
        if arch in rows:
            continue
        print(f"[decode] {ARCHS[arch].label}: contexts {s.contexts} ...", flush=True)
        model = build(arch, m["values"], s.vocab_size, max(s.contexts) + s.new_tokens + 8)
        with torch.no_grad():
            rows[arch] = decoding.measure_decoding(model.eval(), s.contexts,
                                                   new_tokens=s.new_tokens, batch=1, seed=0)
        save()
    decode["crossover"] = {arch: decoding.crossover(rows[REFERENCE], rows[arch])
                           for arch in models if recurrent(arch) and REFERENCE in rows}


def recurrent(arch: str) -> bool:
    """Whether the architecture decodes with a fixed-size state (CausalLM.recurrent)."""
    return bool(getattr(PRESETS[ARCHS[arch].preset].model_class, "recurrent", False))


# -- part 4: probes --------------------------------------------------------------------------------

def run_probes(s: LMCompareSettings, results: dict[str, Any], earlier: dict[str, Any],
               save: Callable[[], None], *, train: bool = True) -> None:
    """Each (probe, architecture, seed) run: kept from `earlier` when finished with these
    settings, else trained and scored (`train`; without it, left out)."""
    spec = s.probe_spec()
    sizes = s.probe_sizes()
    longest = max(lm_probes.sequence_length(p, max(sizes[p]), spec) for p in s.probes)
    models = results["probe_models"]
    identity = {"spec": asdict(spec), "sizes": sizes, "models": models,
                "budget": {"steps": s.probe_steps} if s.probe_steps else
                {"seconds": s.probe_seconds}, "lr": s.probe_lr, "batch": s.probe_batch,
                "examples": s.probe_examples}
    identity = json.loads(json.dumps(identity))
    runs = results["probes"]["runs"]
    cells = [(p, arch, seed) for seed in range(1, s.seeds + 1) for p in s.probes
             for arch in s.architectures]
    for i, (probe, arch, seed) in enumerate(cells, 1):
        key = f"{probe}-{arch}-s{seed}"
        old = earlier.get(key)
        if old is not None and old.get("identity") == identity:
            runs[key] = old
            continue
        if not train:
            continue
        print(f"[probe {i}/{len(cells)}] {probe}, {ARCHS[arch].label}, seed {seed} ...",
              flush=True)

        def make(vocab_size: int, arch: str = arch) -> Any:
            return build_model(ARCHS[arch].preset, vocab_size=vocab_size, max_seq_len=longest,
                               bos_token_id=lm_probes.SEPARATOR,
                               eos_token_id=lm_probes.SEPARATOR, **models[arch]["values"])

        run = lm_probes.run_probe(make, probe, sizes[probe], seconds=None if s.probe_steps
                                  else s.probe_seconds, max_steps=s.probe_steps, seed=seed,
                                  spec=spec, lr=s.probe_lr, batch_size=s.probe_batch,
                                  examples=s.probe_examples)
        runs[key] = {**run, "arch": arch, "identity": identity}
        summarise_probes(results)
        save()
    summarise_probes(results)


def summarise_probes(results: dict[str, Any]) -> None:
    """results["probes"]["accuracy"][probe][arch][size] = spread over seeds."""
    accuracy: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in results["probes"]["runs"].values():
        for size, scores in run["by_size"].items():
            accuracy.setdefault(run["probe"], {}).setdefault(run["arch"], {}).setdefault(
                size, []).append(scores["accuracy"])
    results["probes"]["accuracy"] = {
        p: {a: {size: spread(v) for size, v in sorted(by.items(), key=lambda kv: int(kv[0]))}
            for a, by in archs.items()} for p, archs in accuracy.items()}


# -- the study -------------------------------------------------------------------------------------

def run_lm_compare(s: LMCompareSettings, *,
                   runner: Callable[[LMSettings, str], None] = train_run) -> dict[str, Any]:
    """Every part in `s.parts`, skipping what an earlier run of the same settings finished;
    results.json and the report rewritten after each run. `runner` trains one LM run (tests
    may replace it)."""
    from attnlab.studies.compare.lm_plots import write_plots
    from attnlab.studies.compare.lm_report import write_report

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    before = read_results(out)
    models = matched_models(s.architectures, s.tolerance, d_model=s.d_model,
                            n_layers=s.n_layers, n_heads=s.n_heads, vocab_size=s.vocab_size)
    for arch, m in models.items():
        m.update(preset=ARCHS[arch].preset, label=ARCHS[arch].label, source=ARCHS[arch].source,
                 lr=s.lr(arch), lr_reason=ARCHS[arch].lr_reason)
    results: dict[str, Any] = {
        "study": "compare-lm", "command": " ".join(["attnlab", *sys.argv[1:]]),
        "settings": asdict(s), "machine": machine_info(),
        "versions": {"attnlab": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "models": models, "runs": {}, "probes": {"runs": {}},
        "probe_models": matched_models(
            s.architectures, s.tolerance, d_model=s.probe_d_model,
            n_layers=s.probe_n_layers, n_heads=s.probe_n_heads,
            vocab_size=s.probe_spec().vocab_size),
    }

    def save(plots: bool = False) -> None:  # after each run; the plots at the end
        write_results(out, results)
        write_report(results, out)
        if plots:
            write_plots(results, out)

    measured = {"models": {a: m["values"] for a, m in models.items()}, "vocab": s.vocab_size}
    # every part: what an earlier run of these settings finished is kept, whether the part is
    # chosen this time or not; a chosen part does the rest
    for part in PARTS:
        chosen = part in s.parts
        if part == "train":
            run_train(s, results, before.get("runs", {}), out, save, runner, train=chosen)
        elif part == "cost":
            identity = json.loads(json.dumps({**measured, "lengths": s.lengths,
                                              "tokens": s.tokens_per_batch,
                                              "repeats": s.cost_repeats}))
            old = before.get("cost") or {}
            if old.get("identity") == identity:
                results["cost"] = old
            elif chosen:
                print(f"[cost] training tokens/s and peak memory at lengths {s.lengths} ...",
                      flush=True)
                results["cost"] = {"identity": identity, "records": run_cost(s, models)}
        elif part == "decode":
            identity = json.loads(json.dumps(
                {**measured, "contexts": s.contexts, "new_tokens": s.new_tokens}))
            old = before.get("decode") or {}
            if old.get("identity") == identity:
                results["decode"] = dict(old, rows=dict(old.get("rows", {})))
            if chosen:
                results.setdefault("decode", {"identity": identity})
                run_decode(s, models, results["decode"], save)
        elif part == "probes":
            run_probes(s, results, before.get("probes", {}).get("runs", {}), save,
                       train=chosen)
        save()
    save(plots=True)
    return results


def expected_minutes(s: LMCompareSettings) -> float:
    """A rough duration on 2 CPU cores (measured per architecture at the default shape on a
    shared 2-core Xeon): each LM run's budget plus ~25 s (corpus, tokenizer, validations, the
    test books' loss: 5-18 s of forwards), each probe run's budget plus ~3 s of scoring, ~6 s
    per architecture and length of cost, ~2 s per architecture and context of decoding
    (more for contexts over 4k)."""
    archs, seeds = len(s.architectures), s.seeds
    seconds = 0.0
    if "train" in s.parts:
        seconds += archs * seeds * ((s.max_steps or 0) * 0.3 if s.max_steps else s.seconds + 25)
    if "probes" in s.parts:
        per = s.probe_steps * 0.05 if s.probe_steps else s.probe_seconds
        seconds += len(s.probes) * archs * seeds * (per + 3)
    if "cost" in s.parts:
        seconds += 6 * archs * len(s.lengths)
    if "decode" in s.parts:
        seconds += 2 * archs * len(s.contexts) * (1 + max(s.contexts) / 4096)
    return seconds / 60
