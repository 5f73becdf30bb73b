"""The plots of `attnlab compare --family lm` from its results.json (lm_report.py reads the
numbers): perplexity per architecture (seeds as dots), training tokens/s and peak memory against
sequence length, decoding ms per token and cache bytes against context, probe accuracy against
each probe's size. Every plot is left out when its numbers are not there yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.studies.compare.lm_report import (  # noqa: E402
    MIB,
    archs,
    cost_rows,
    decode_rows,
    equal_budget,
    held_out,
    label,
)
from attnlab.viz.figures import save_png  # noqa: E402

COLOURS = {"transformer": "tab:blue", "mamba": "tab:orange", "rwkv": "tab:green",
           "retnet": "tab:red", "lstm-lm": "tab:purple", "gpt2": "tab:cyan"}


def plot_perplexity(results: dict[str, Any], path: Path) -> Path | None:
    measured = [a for a in archs(results) if held_out(results, a)]
    if not measured:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, arch in enumerate(measured):
        split, stats = held_out(results, arch)
        ax.bar(i, math.exp(stats["mean"]), color=COLOURS.get(arch, "tab:gray"))
        seeds = [r[f"{split}_loss"] for r in results.get("runs", {}).values()
                 if r["arch"] == arch and f"{split}_loss" in r]
        ax.scatter([i] * len(seeds), [math.exp(v) for v in seeds], color="black", s=10,
                   zorder=3)
    ax.set_xticks(range(len(measured)), [label(results, a) for a in measured], rotation=15)
    ax.set_ylabel(f"{held_out(results, measured[0])[0]} perplexity")
    ax.set_title(f"Equal parameters, {equal_budget(results)} (dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


def plot_two_panels(results: dict[str, Any], path: Path,
                    rows: Callable[[dict[str, Any], str], list[dict[str, Any]]], x: str,
                    xlabel: str, panels: tuple[tuple[Callable[[dict[str, Any]], float], str],
                                                ...]) -> Path | None:
    """Lines per architecture against `x` (log-log), one panel per (value, label); None when
    nothing is measured yet."""
    measured = [a for a in archs(results) if rows(results, a)]
    if not measured:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(10, 3.8))
    for arch in measured:
        points = rows(results, arch)
        style = dict(marker="o", color=COLOURS.get(arch), label=label(results, arch))
        for ax, (value, _) in zip(axes, panels, strict=True):
            ax.plot([r[x] for r in points], [value(r) for r in points], **style)
    for ax, (_, name) in zip(axes, panels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_png(fig, path)


def plot_cost(results: dict[str, Any], path: Path) -> Path | None:
    return plot_two_panels(results, path, cost_rows, "length", "sequence length", (
        (lambda r: r["tokens_per_second"], "training tokens / s"),
        (lambda r: r["peak_mib"], "peak MiB of a step")))


def plot_decode(results: dict[str, Any], path: Path) -> Path | None:
    return plot_two_panels(results, path, decode_rows, "context", "context (tokens)", (
        (lambda r: r["ms_per_token"], "ms per generated token"),
        (lambda r: r["cache_bytes"] / MIB, "cache MiB")))


def plot_probes(results: dict[str, Any], path: Path) -> Path | None:
    from attnlab.studies.compare.lm_probes import SIZE_NAMES

    accuracy = results.get("probes", {}).get("accuracy", {})
    if not accuracy:
        return None
    fig, axes = plt.subplots(1, len(accuracy), figsize=(4.2 * len(accuracy), 3.6),
                             squeeze=False)
    for ax, (probe, by_arch) in zip(axes[0], accuracy.items(), strict=True):
        for arch in archs(results):
            if arch not in by_arch:
                continue
            sizes = sorted(by_arch[arch], key=int)
            ax.plot([int(n) for n in sizes], [100 * by_arch[arch][n]["mean"] for n in sizes],
                    marker="o", color=COLOURS.get(arch), label=label(results, arch))
        ax.set_xscale("log", base=2)
        ax.set_ylim(-2, 102)
        ax.set_xlabel(SIZE_NAMES.get(probe, "size"))
        ax.set_ylabel("answer accuracy (%)")
        ax.set_title(probe)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_png(fig, path)


PLOTS = {"perplexity.png": plot_perplexity, "cost.png": plot_cost, "decode.png": plot_decode,
         "probes.png": plot_probes}


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Every plot whose numbers are in `results`, into `out`."""
    written = [plot(results, out / name) for name, plot in PLOTS.items()]
    return [path for path in written if path is not None]
