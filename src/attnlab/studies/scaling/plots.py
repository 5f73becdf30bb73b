"""The scaling study's figures (matplotlib, Agg), in the manner of Kaplan et al. 2020 (fig. 1-2:
loss against compute with its frontier, against N, against D) and Hoffmann et al. 2022
(fig. 2-4: the compute-optimal frontier and the fitted L(N, D)).

- loss_vs_compute.png: every run's validation curve against C = 6 N D (dense coloured by N,
  MoE dashed at its active N), the measured frontier (least loss at each C) and the loss of
  the fitted law's compute-optimal allocation.
- loss_vs_n.png: each size's final loss with the L(N) fit and its 95% bootstrap band, the fit
  without the largest size and its prediction for it, and the MoE runs at their active N.
- loss_vs_d.png: each size's loss against tokens, with the L(N, D) fit at that N.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attnlab.studies.scaling.fit import Law  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402

PLOTS = ("loss_vs_compute.png", "loss_vs_n.png", "loss_vs_d.png")


def _colours(ns: list[float]) -> dict[float, Any]:
    cmap = plt.get_cmap("viridis")
    order = sorted(set(ns))
    return {n: cmap(i / max(1, len(order) - 1) * 0.9) for i, n in enumerate(order)}


def _label(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _chinchilla(report: dict[str, Any]) -> Law | None:
    law = report.get("chinchilla", {}).get("law")
    if not law:
        return None
    return Law(("N", "D"), law["E"], (law["A"], law["B"]), (law["alpha"], law["beta"]))


def plot_compute(results: dict[str, Any], report: dict[str, Any], path: Path) -> Path:
    runs = list(results.get("runs", {}).values())
    colours = _colours([r["N"] for r in runs if r["kind"] == "dense"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in sorted(runs, key=lambda r: (r["kind"], r["N"], r["D"])):
        c = [6 * r["N"] * p["tokens"] for p in r["curve"]]
        loss = [p["valid_loss"] for p in r["curve"]]
        if r["kind"] == "dense":
            ax.plot(c, loss, color=colours[r["N"]], alpha=0.8, lw=1.2, marker=".", ms=3)
        else:
            ax.plot(c, loss, ls="--", lw=1.4, marker="x", ms=4,
                    label=f"{r['kind']} ({_label(r['N'])} active)")
    frontier = report.get("frontier", {})
    if "measured" in frontier:
        m = frontier["measured"]
        ax.plot(m["compute"], m["loss"], color="black", ls=":", lw=2,
                label="measured frontier (least loss with <= C)")
    if "fitted" in frontier:
        f = frontier["fitted"]
        ax.plot(f["compute"], f["loss"], color="crimson", lw=1.5,
                label="fitted L(N_opt(C), D_opt(C))")
    for n, colour in colours.items():
        ax.plot([], [], color=colour, label=f"dense N = {_label(n)}")
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6 N D (FLOPs, N non-embedding / active)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title("Loss against compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2)
    return save_png(fig, path)


def plot_size(results: dict[str, Any], report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    section = report.get("size_law", {})
    points = section.get("points", [])
    if points:
        ns = np.array([p["N"] for p in points], dtype=float)
        ax.scatter(ns, [p["loss"] for p in points], color="navy", zorder=3,
                   label="dense, final loss at the largest D")
        grid = np.logspace(np.log10(ns.min()) - 0.2, np.log10(ns.max()) + 0.3, 100)
        law = section.get("law")
        if law:
            fitted = Law(("N",), law["E"], (law["A"],), (law["alpha"],))
            ax.plot(grid, fitted.predict(N=grid), color="navy",
                    label=f"E + A/N^alpha, alpha = {law['alpha']:.3f}")
            draws = section.get("draws", {})
            if draws.get("alpha"):
                inside = grid[(grid >= ns.min()) & (grid <= ns.max() * 2)]  # the data's range
                curves = np.array([e + a / inside ** s for e, a, s in
                                   zip(draws["E"], draws["A"], draws["alpha"], strict=True)])
                ax.fill_between(inside, np.percentile(curves, 2.5, axis=0),
                                np.percentile(curves, 97.5, axis=0), color="navy", alpha=0.15,
                                label="95% bootstrap band")
        holdout = report.get("holdout", {})
        if "size_law" in holdout:
            p, t = holdout["size_law"], holdout["held_out"]
            rest = Law(("N",), p["law"]["E"], (p["law"]["A"],), (p["law"]["alpha"],))
            ax.plot(grid, rest.predict(N=grid), color="darkorange", ls="--",
                    label="fit without the largest size")
            ax.errorbar([t["N"]], [p["predicted"]],
                        yerr=[[max(0.0, p["predicted"] - p["low"])],  # a percentile
                              [max(0.0, p["high"] - p["predicted"])]],  # interval may miss it
                        color="darkorange", marker="s", capsize=4, label="its prediction (95%)")
    for row in report.get("moe", []):
        ax.scatter([row["active_params"]], [row["valid_loss"]], marker="x", s=50,
                   label=f"{row['kind']} at active N")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N (MoE: active)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title("Loss against model size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return save_png(fig, path)


def plot_tokens(results: dict[str, Any], report: dict[str, Any], path: Path) -> Path:
    runs = [r for r in results.get("runs", {}).values() if r["kind"] == "dense"]
    colours = _colours([r["N"] for r in runs])
    law = _chinchilla(report)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    labelled: set[float] = set()
    first = report.get("warmup_factor", 0)
    for r in sorted(runs, key=lambda r: (r["N"], r["D"])):
        fitted = [p for p in r["curve"] if p["step"] >= first * (r.get("warmup_steps") or 0)]
        early = [p for p in r["curve"] if p not in fitted]
        ax.scatter([p["tokens"] for p in fitted], [p["valid_loss"] for p in fitted],
                   color=colours[r["N"]], s=10,
                   label=None if r["N"] in labelled else f"N = {_label(r['N'])}")
        ax.scatter([p["tokens"] for p in early], [p["valid_loss"] for p in early], s=12,
                   facecolors="none", edgecolors=colours[r["N"]], lw=0.8)
        labelled.add(r["N"])
    if law is not None and runs:
        ds = [p["tokens"] for r in runs for p in r["curve"]]
        grid = np.logspace(np.log10(min(ds)), np.log10(max(ds)), 100)
        for n, colour in colours.items():
            ax.plot(grid, law.predict(N=n, D=grid), color=colour, lw=1)
        ax.plot([], [], color="grey",
                label=f"L(N, D) fit: alpha {law.exponents[0]:.2f}, beta {law.exponents[1]:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title("Loss against data (evaluations along each run; hollow: not fitted, "
                 f"before {first} x warmup)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2)
    return save_png(fig, path)


def write_plots(results: dict[str, Any], report: dict[str, Any], out: Path) -> list[Path]:
    return [plot_compute(results, report, out / PLOTS[0]),
            plot_size(results, report, out / PLOTS[1]),
            plot_tokens(results, report, out / PLOTS[2])]
