"""`attnlab compare`: the Transformer against RNN and convolutional encoder-decoders, measured
on this machine (the case of Vaswani et al., 2017, sec. 4 and Table 1, checked rather than
quoted).

Four parts, each written to results.json as it finishes:
- cost: training tokens/s and peak memory vs sequence length (throughput.py);
- table1: sequential operations per layer and maximum path length (complexity.py);
- bleu: every architecture trained on the built-in corpus for the same wall-clock budget at
  (nearly) the same parameter count (the "-mini" presets are sized to match), BLEU overall
  and by source length, over several seeds;
- probes: copy / reverse / key-value recall accuracy against distance (probes.py).
report.py turns the file into a Markdown table and plots.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from attnlab.errors import ConfigError
from attnlab.evaluation.machine import machine_info
from attnlab.models import build_model, get_config, list_models
from attnlab.serialization import atomic_write
from attnlab.studies.compare import complexity, probes, throughput

log = logging.getLogger(__name__)

# architecture -> (preset prefix, layer kind of Table 1)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "transformer": ("transformer", "self_attention"),
    "rnn-sutskever": ("rnn-sutskever", "recurrent"),
    "rnn-bahdanau": ("rnn-bahdanau", "recurrent"),
    "rnn-luong": ("rnn-luong", "recurrent"),
    "convs2s": ("convs2s", "convolution"),
}
PARTS = ("cost", "table1", "bleu", "probes")
# Peak learning rate per architecture on the corpus (Adam with the translation task's
# inverse-sqrt warmup; lr_scale is derived so every schedule peaks here). The Transformer's is
# the `make demo` recipe (about 0.01); the baselines use the 0.005 their first runs trained
# stably with. Not tuned further per architecture: say so when quoting the numbers.
PEAK_LR: dict[str, float] = {"transformer": 0.01, "rnn-sutskever": 0.005, "rnn-bahdanau": 0.005,
                             "rnn-luong": 0.005, "convs2s": 0.005}


def lr_scale_for(peak_lr: float, d_model: int, warmup_steps: int) -> float:
    """Scale of the schedule d^-0.5 * min(s^-0.5, s * w^-1.5) whose peak (at s = w) is
    `peak_lr`."""
    return peak_lr * (d_model * warmup_steps) ** 0.5


@dataclass
class CompareSettings:
    out: str = "runs/compare"
    size: str = "mini"  # preset size: "tiny" (tests), "mini", "small"
    architectures: list[str] = field(default_factory=lambda: list(ARCHITECTURES))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    seeds: int = 3
    lengths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512])
    tokens_per_batch: int = 2048
    table1_lengths: list[int] = field(default_factory=lambda: [8, 16, 32, 64])
    bleu_seconds: float = 150.0
    train_size: int = 60_000
    test_size: int = 500
    vocab_size: int = 4000
    beam_size: int = 4
    warmup_steps: int = 300
    max_tokens: int = 3000
    probe_seconds: float = 30.0
    probe_distances: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    probe_size: str = "tiny"

    @classmethod
    def quick(cls, **overrides: Any) -> CompareSettings:
        """Within 10 minutes on 2 CPU cores: one seed, one-minute budgets (short warmup, small
        batches, greedy test decoding), fewer lengths."""
        values: dict[str, Any] = dict(
            seeds=1, lengths=[16, 64, 256], bleu_seconds=60.0, train_size=20_000,
            test_size=200, beam_size=1, warmup_steps=100, max_tokens=1500, probe_seconds=8.0,
            probe_distances=[4, 8, 16, 32],
        )
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.architectures) - set(ARCHITECTURES))
        if unknown or not self.architectures:
            raise ConfigError(f"architectures must be a non-empty subset of "
                             f"{list(ARCHITECTURES)}, got {self.architectures}")
        bad_parts = sorted(set(self.parts) - set(PARTS))
        if bad_parts:
            raise ConfigError(f"parts must be a subset of {list(PARTS)}, got {bad_parts}")
        for arch in self.architectures:
            for size in {self.size, self.probe_size}:
                preset = f"{ARCHITECTURES[arch][0]}-{size}"
                if preset not in list_models():
                    raise ConfigError(f"no preset {preset!r} for architecture {arch!r} at size "
                                     f"{size!r}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        for name in ("bleu_seconds", "probe_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.table1_lengths, default=2) < 2 or min(self.lengths, default=1) < 1:
            raise ConfigError("lengths must be positive and table1_lengths >= 2")

    def preset(self, arch: str, size: str | None = None) -> str:
        return f"{ARCHITECTURES[arch][0]}-{size or self.size}"


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one seed), min and max."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def run_cost(s: CompareSettings, bar: tqdm) -> list[dict[str, Any]]:
    longest = max(s.lengths)
    models = {arch: build_model(s.preset(arch), vocab_size=s.vocab_size, dropout=0.0,
                                max_seq_len=max(longest + 8, 256))
              for arch in s.architectures}
    params = {arch: sum(p.numel() for p in m.parameters()) for arch, m in models.items()}
    records = throughput.measure(models, s.vocab_size, s.lengths,
                                 tokens_per_batch=s.tokens_per_batch,
                                 progress=lambda m: bar.set_postfix_str(f"cost {m}"))
    for r in records:
        r["params"] = params[r["model"]]
    return records


def run_bleu(s: CompareSettings, out: Path, bar: tqdm) -> dict[str, Any]:
    from attnlab.tasks.translation import TranslationSettings, train_translation

    runs: dict[str, Any] = {}
    for arch in s.architectures:
        seeds = []
        for seed in range(1, s.seeds + 1):
            bar.set_postfix_str(f"bleu {arch} seed {seed}")
            d_model = get_config(s.preset(arch), vocab_size=s.vocab_size).d_model
            recipe = {"warmup_steps": s.warmup_steps, "lr_scale": lr_scale_for(
                PEAK_LR[arch], d_model, s.warmup_steps)}
            settings = TranslationSettings(
                out=str(out / "bleu" / f"{arch}-seed{seed}"), preset=s.preset(arch),
                builtin_train_size=s.train_size, builtin_valid_size=200,
                builtin_test_size=s.test_size, vocab_size=s.vocab_size, max_tokens=s.max_tokens,
                time_budget=s.bleu_seconds, label_smoothing=0.1, eval_every=0, save_every=0,
                keep_last=1, seed=seed, beam_size=s.beam_size, precision="fp32", device="cpu",
                eval_sentences=50, **recipe,
            )
            # the study owns its per-seed folders: a re-run of the study replaces them
            metrics = train_translation(settings, overwrite=True)
            seeds.append({k: metrics[k] for k in ("bleu", "chrf", "buckets", "steps",
                                                  "train_seconds", "train_tokens_per_second",
                                                  "params") if k in metrics})
        buckets = sorted({b for r in seeds for b in r["buckets"]})
        runs[arch] = {
            "preset": s.preset(arch), "peak_lr": PEAK_LR[arch], "seeds": seeds,
            "bleu": spread([r["bleu"] for r in seeds]),
            "buckets": {b: spread([r["buckets"][b]["bleu"] for r in seeds if b in r["buckets"]])
                        for b in buckets},
            "params": seeds[0]["params"],
        }
    return runs


def run_probes(s: CompareSettings, bar: tqdm) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for arch in s.architectures:
        result[arch] = {}
        for task in probes.TASKS:
            bar.set_postfix_str(f"probe {arch} {task}")
            longest = 2 * max(s.probe_distances) + 8

            def build(vocab_size: int, arch: str = arch, longest: int = longest):
                return build_model(s.preset(arch, s.probe_size), vocab_size=vocab_size,
                                   dropout=0.0, max_seq_len=max(longest, 64))

            seeds = [probes.run_probe(build, task, s.probe_distances, seconds=s.probe_seconds,
                                      seed=seed) for seed in range(s.seeds)]
            metric = "exact" if task == "recall" else "token_accuracy"
            distances = sorted(seeds[0]["by_distance"])
            result[arch][task] = {
                "metric": metric, "seeds": seeds,
                "by_distance": {d: spread([r["by_distance"][d][metric] for r in seeds])
                                for d in distances},
            }
    return result


def write(out: Path, results: dict[str, Any]) -> None:
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out / "results.json", lambda t: Path(t).write_text(text))


def run_compare(s: CompareSettings) -> dict[str, Any]:
    """Run the chosen parts, writing results.json after each, then the report."""
    from attnlab.studies.compare.report import write_report

    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": " ".join(["attnlab", *sys.argv[1:]]),
                               "settings": asdict(s), "machine": machine_info()}
    with tqdm(total=len(s.parts), desc="compare", unit="part") as bar:
        for part in s.parts:
            if part == "cost":
                results["cost"] = run_cost(s, bar)
            elif part == "table1":
                table = complexity.table1(s.table1_lengths,
                                          progress=lambda m: bar.set_postfix_str(f"table1 {m}"))
                results["table1"] = {"kinds": table, "architectures": {
                    arch: ARCHITECTURES[arch][1] for arch in s.architectures}}
            elif part == "bleu":
                results["bleu"] = run_bleu(s, out, bar)
            elif part == "probes":
                results["probes"] = run_probes(s, bar)
            write(out, results)
            bar.update()
    write_report(results, out)
    return results
