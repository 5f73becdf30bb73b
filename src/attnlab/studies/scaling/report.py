"""What the scaling runs say: the laws fitted to them (fit.py), the held-out prediction, the
compute frontier and MoE against dense, compared with Kaplan et al. 2020 ("Scaling Laws for
Neural Language Models") and Hoffmann et al. 2022 ("Training Compute-Optimal Large Language
Models"); written as report.json, report.md and the plots of plots.py.

- L(N) at the largest D per size: each size's final validation loss of its longest run, fitted
  as E + A / N^alpha and as Kaplan's pure power law (N_c / N)^alpha_N, bootstrap over sizes.
- L(N, D) (Chinchilla form) over every dense evaluation after `2 x warmup` steps, bootstrap
  over whole runs; when the runs have several budgets, also over the final points alone (each
  at the end of its own cosine schedule, as Hoffmann et al. fit).
- The prediction check: both laws refitted without the largest size, its measured final loss
  against the prediction and the prediction's 95% interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.serialization import atomic_write
from attnlab.studies.scaling.fit import (
    Bootstrap,
    Law,
    allocation_exponents,
    bootstrap,
    bootstrap_pure,
    fit_chinchilla,
    fit_pure_power_law,
    fit_size_law,
    measured_frontier,
    optimal_allocation,
    size_for_loss,
)

# What the papers report, for the comparison table.
KAPLAN = {"alpha_N": 0.076, "alpha_D": 0.095, "n_opt_exponent": 0.73,
          "source": "Kaplan et al. 2020, eq. 1.1-1.2 and 1.7 (non-embedding N, BPE tokens of "
                    "WebText2, 768 to 1.5e9 parameters)"}
HOFFMANN = {"alpha": 0.34, "beta": 0.28, "E": 1.69, "A": 406.4, "B": 410.7,
            "n_opt_exponent": 0.46, "d_opt_exponent": 0.54,
            "source": "Hoffmann et al. 2022, eq. 10 and Table 2 approach 3 (MassiveText "
                      "tokens, 7e7 to 1.6e10 parameters)"}
WARMUP_FACTOR = 2  # evaluations before 2 x warmup steps are not points of the D fit


def dense(results: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((r for r in results.get("runs", {}).values() if r["kind"] == "dense"),
                  key=lambda r: (r["N"], r["D"]))


def final_points(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size (N), the run with the largest D: its final loss."""
    best: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run["N"] not in best or run["D"] > best[run["N"]]["D"]:
            best[run["N"]] = run
    return [best[n] for n in sorted(best)]


def curve_points(runs: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every evaluation after WARMUP_FACTOR x warmup steps: N, D, loss and the run's index."""
    rows = [(run["N"], p["tokens"], p["valid_loss"], i) for i, run in enumerate(runs)
            for p in run["curve"] if p["step"] >= WARMUP_FACTOR * (run.get("warmup_steps") or 0)]
    n, d, loss, group = (np.asarray(c, dtype=float) for c in zip(*rows, strict=True)) if rows \
        else (np.zeros(0),) * 4
    return {"N": n, "D": d, "loss": loss, "run": group}


def _ci(boot: Bootstrap, names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {k: {"value": boot.estimate[k], "low": boot.low[k], "high": boot.high[k]}
            for k in names if k in boot.estimate}


def _skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def size_law_section(finals: list[dict[str, Any]], samples: int, seed: int) -> dict[str, Any]:
    if len(finals) < 3:
        return _skipped(f"needs >= 3 sizes, got {len(finals)}")
    n = [r["N"] for r in finals]
    loss = [r["valid_loss"] for r in finals]
    law = fit_size_law(n, loss)
    boot = bootstrap({"N": n}, loss, samples=samples, seed=seed, law=law)
    pure = bootstrap_pure(n, loss, samples=samples, seed=seed)
    return {"law": law.to_dict(), "ci": _ci(boot, ("E", "A", "alpha")),
            "bootstrap": {"samples": samples, "failed": boot.failed, "level": boot.level},
            "draws": {k: boot.draws[k] for k in ("E", "A", "alpha")},
            "pure": {"law": fit_pure_power_law(n, loss).to_dict(),
                     "ci": _ci(pure, ("A", "alpha"))},
            "points": [{"name": r["name"], "N": r["N"], "D": r["D"], "loss": r["valid_loss"]}
                       for r in finals]}


def chinchilla_section(runs: list[dict[str, Any]], samples: int, seed: int,
                       finals_only: bool = False) -> dict[str, Any]:
    if finals_only:
        points = {"N": np.array([r["N"] for r in runs], dtype=float),
                  "D": np.array([r["D"] for r in runs], dtype=float),
                  "loss": np.array([r["valid_loss"] for r in runs], dtype=float),
                  "run": np.arange(len(runs), dtype=float)}
    else:
        points = curve_points(runs)
    if points["loss"].size < 5 or np.unique(points["N"]).size < 2 or np.unique(
            points["D"]).size < 2:
        return _skipped(f"needs >= 5 points over >= 2 sizes and >= 2 token counts, got "
                        f"{points['loss'].size} points")
    law = fit_chinchilla(points["N"], points["D"], points["loss"])
    boot = bootstrap({"N": points["N"], "D": points["D"]}, points["loss"], samples=samples,
                     seed=seed, groups=points["run"], law=law, quantities=allocation_exponents)
    return {"law": law.to_dict(), "points": int(points["loss"].size),
            "runs": len(np.unique(points["run"])),
            "ci": _ci(boot, ("E", "A", "alpha", "B", "beta", "n_opt_exponent",
                             "d_opt_exponent")),
            "bootstrap": {"samples": samples, "failed": boot.failed, "level": boot.level,
                          "by": "run"}}


def holdout_section(runs: list[dict[str, Any]], samples: int, seed: int) -> dict[str, Any]:
    """Fit without the largest size; predict its final loss."""
    finals = final_points(runs)
    if len(finals) < 4:
        return _skipped(f"needs >= 4 sizes (3 to fit, 1 held out), got {len(finals)}")
    held = finals[-1]
    rest_finals = finals[:-1]
    target = {"name": held["name"], "N": held["N"], "D": held["D"],
              "measured": held["valid_loss"]}
    n = [r["N"] for r in rest_finals]
    loss = [r["valid_loss"] for r in rest_finals]
    law = fit_size_law(n, loss)

    def at_held(fitted: Law) -> dict[str, float]:
        return {"predicted": float(fitted.predict(N=held["N"]))}

    boot = bootstrap({"N": n}, loss, samples=samples, seed=seed, law=law, quantities=at_held)
    section: dict[str, Any] = {"held_out": target, "size_law": _prediction(boot, target)}
    rest = [r for r in runs if r["N"] < held["N"]]
    points = curve_points(rest)
    if points["loss"].size >= 5 and np.unique(points["D"]).size >= 2:
        chin = fit_chinchilla(points["N"], points["D"], points["loss"])

        def at_held_nd(fitted: Law) -> dict[str, float]:
            return {"predicted": float(fitted.predict(N=held["N"], D=held["D"]))}

        boot = bootstrap({"N": points["N"], "D": points["D"]}, points["loss"],
                         samples=samples, seed=seed, groups=points["run"], law=chin,
                         quantities=at_held_nd)
        section["chinchilla"] = _prediction(boot, target)
    return section


def _prediction(boot: Bootstrap, target: dict[str, Any]) -> dict[str, Any]:
    predicted = boot.estimate["predicted"]
    low, high = boot.interval("predicted")
    return {"predicted": predicted, "low": low, "high": high,
            "error": predicted - target["measured"],
            "relative_error": (predicted - target["measured"]) / target["measured"],
            "inside_interval": bool(low <= target["measured"] <= high),
            "law": {k: boot.estimate[k] for k in ("E", "A", "alpha", "B", "beta")
                    if k in boot.estimate}}


def frontier_section(runs: list[dict[str, Any]], law: dict[str, Any] | None) -> dict[str, Any]:
    curves = [(r["N"], [p["tokens"] for p in r["curve"]], [p["valid_loss"] for p in r["curve"]])
              for r in runs if r["curve"]]
    if not curves:
        return _skipped("no runs")
    section: dict[str, Any] = {"measured": measured_frontier(curves)}
    if law is not None:
        fitted = Law(("N", "D"), law["E"], (law["A"], law["B"]), (law["alpha"], law["beta"]))
        compute = np.asarray(section["measured"]["compute"])
        n_opt, d_opt = optimal_allocation(fitted, compute)
        section["fitted"] = {"compute": compute.tolist(), "n_opt": n_opt.tolist(),
                             "d_opt": d_opt.tolist(),
                             "loss": fitted.predict(N=n_opt, D=d_opt).tolist()}
    return section


def moe_section(results: dict[str, Any], size_law: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each MoE run against the dense run of its size and steps: loss at equal steps, speed,
    the MoE's loss when it had trained as long as the dense run (interpolated along its curve),
    and the dense size the L(N) fit gives its loss."""
    runs = results.get("runs", {}).values()
    rows = []
    for moe in sorted((r for r in runs if r["kind"] != "dense"), key=lambda r: r["name"]):
        twin = next((r for r in runs if r["kind"] == "dense" and r.get("size") == moe.get("size")
                     and r["steps"] == moe["steps"]), None)
        row: dict[str, Any] = {
            "name": moe["name"], "kind": moe["kind"], "experts": moe["experts"],
            "top_k": moe["top_k"], "size": moe.get("size"),
            "active_params": moe["params"]["active"],
            "total_non_embedding": moe["params"]["non_embedding"],
            "steps": moe["steps"], "valid_loss": moe["valid_loss"],
            "tokens_per_second": moe.get("tokens_per_second"),
            "train_seconds": moe.get("train_seconds")}
        if twin is not None:
            row["dense"] = {"name": twin["name"], "valid_loss": twin["valid_loss"],
                            "active_params": twin["params"]["active"],
                            "tokens_per_second": twin.get("tokens_per_second"),
                            "train_seconds": twin.get("train_seconds")}
            row["loss_difference"] = moe["valid_loss"] - twin["valid_loss"]
            if moe.get("train_seconds") and twin.get("train_seconds"):
                row["speed_ratio"] = twin["train_seconds"] / moe["train_seconds"]
                share = min(1.0, twin["train_seconds"] / moe["train_seconds"])
                steps = [p["step"] for p in moe["curve"]]
                losses = [p["valid_loss"] for p in moe["curve"]]
                row["loss_at_dense_time"] = float(np.interp(share * moe["steps"], steps,
                                                            losses))
        if size_law is not None:
            fitted = Law(("N",), size_law["E"], (size_law["A"],), (size_law["alpha"],))
            n_eff = size_for_loss(fitted, moe["valid_loss"])
            row["dense_equivalent_params"] = n_eff
            row["dense_equivalent_ratio"] = n_eff / moe["params"]["active"]
        rows.append(row)
    return rows


def analyse(results: dict[str, Any], *, samples: int = 200, seed: int = 0) -> dict[str, Any]:
    """report.json: every fit, interval and comparison the runs support (a part they cannot
    support says why it is skipped)."""
    runs = dense(results)
    finals = final_points(runs)
    size_law = size_law_section(finals, samples, seed)
    chinchilla = chinchilla_section(runs, samples, seed)
    budgets = sorted({r["D"] for r in runs})
    report: dict[str, Any] = {
        "runs": len(results.get("runs", {})), "dense_runs": len(runs),
        "sizes": [r["N"] for r in finals], "budgets_tokens": budgets,
        "size_law": size_law, "chinchilla": chinchilla,
        "holdout": holdout_section(runs, samples, seed),
        "frontier": frontier_section(runs, chinchilla.get("law")),
        "moe": moe_section(results, size_law.get("law")),
        "papers": {"kaplan": KAPLAN, "hoffmann": HOFFMANN},
        "warmup_factor": WARMUP_FACTOR,
    }
    if len({r["D"] for r in runs}) >= 2 and len(runs) >= 5:
        report["chinchilla_finals"] = chinchilla_section(runs, samples, seed, finals_only=True)
    report["notes"] = notes(results, report)
    return report


# -- words -----------------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _params(n: float) -> str:
    if not math.isfinite(n):
        return "inf"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _interval(ci: dict[str, Any], name: str, digits: int = 3) -> str:
    if name not in ci:
        return "-"
    v = ci[name]
    return f"{_fmt(v['value'], digits)} [{_fmt(v['low'], digits)}, {_fmt(v['high'], digits)}]"


def _inside(ci: dict[str, Any], name: str, value: float) -> bool | None:
    if name not in ci:
        return None
    return bool(ci[name]["low"] <= value <= ci[name]["high"])


def notes(results: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """What the numbers say, each sentence tied to a measured figure."""
    out = []
    finals = report["size_law"].get("points", [])
    losses = [p["loss"] for p in finals]
    if len(losses) >= 2:
        ordered = all(b < a for a, b in zip(losses, losses[1:], strict=False))
        out.append("Every larger model reached a lower final validation loss." if ordered else
                   "The final loss is not monotone in N: at this budget some larger models "
                   "are no better than smaller ones (too few tokens for them to pull ahead).")
    if 0 < len(finals) < 6:
        out.append(f"With {len(finals)} sizes the bootstrap resamples few distinct points: its "
                   "intervals are rough (too narrow where resamples repeat the same sizes, "
                   "too wide where they drop the ends).")
    law = report["size_law"].get("ci", {})
    if "alpha" in law:
        verdict = _inside(law, "alpha", HOFFMANN["alpha"])
        out.append(f"L(N) = E + A/N^alpha gives alpha = {_interval(law, 'alpha')}; Hoffmann et "
                   f"al.'s 0.34 is {'inside' if verdict else 'outside'} the interval.")
    pure = report["size_law"].get("pure", {}).get("ci", {})
    if "alpha" in pure:
        verdict = _inside(pure, "alpha", KAPLAN["alpha_N"])
        out.append(f"Kaplan's form (N_c/N)^alpha_N gives alpha_N = {_interval(pure, 'alpha')}; "
                   f"their 0.076 is {'inside' if verdict else 'outside'} the interval.")
    chin = report["chinchilla"].get("ci", {})
    for name in ("alpha", "beta"):
        if name in chin:
            verdict = _inside(chin, name, HOFFMANN[name])
            out.append(f"Chinchilla form: {name} = {_interval(chin, name)} (Hoffmann: "
                       f"{HOFFMANN[name]}, {'inside' if verdict else 'outside'} the interval).")
    holdout = report["holdout"]
    for which in ("size_law", "chinchilla"):
        if which in holdout:
            p, target = holdout[which], holdout["held_out"]
            out.append(
                f"Held out {target['name']}: the {which.replace('_', ' ')} fitted on the "
                f"smaller sizes predicts {_fmt(p['predicted'])} [{_fmt(p['low'])}, "
                f"{_fmt(p['high'])}], measured {_fmt(target['measured'])} "
                f"({100 * p['relative_error']:+.1f}%; "
                f"{'inside' if p['inside_interval'] else 'outside'} the interval).")
    if report["chinchilla"].get("law"):
        out.append("The D points of one run are its evaluations along one cosine schedule: "
                   "before the end the learning rate has not decayed, so those points sit "
                   "above the loss a run of that length would reach (Hoffmann et al. 2022, "
                   "sec. 3.1 and fig. A1); they bias beta and B, and the compute frontier "
                   "drawn through them is not each point's compute-optimal loss.")
    epochs = [r.get("epochs") for r in results.get("runs", {}).values() if r.get("epochs")]
    if epochs and max(epochs) > 1:
        out.append(f"The longest runs saw the training text {max(epochs):.1f} times: repeated "
                   "tokens are worth less than new ones beyond a few epochs (Muennighoff et al. "
                   "2023), which flattens L(D) at the largest budgets.")
    for row in report["moe"]:
        if "loss_difference" in row:
            diff, twin = row["loss_difference"], row["dense"]["valid_loss"]
            out.append(
                f"{row['name']}: {_fmt(row['valid_loss'])} vs dense {_fmt(twin)} at equal "
                f"steps and active parameters ({diff:+.3f}); "
                f"{_fmt(row.get('speed_ratio'), 2)}x the dense run's speed.")
    return out


REASONS = [
    "Scale: these models have 1e4 to 5e6 non-embedding parameters, below the smallest of "
    "Kaplan et al. (768 to 1.5e9) and far below Hoffmann et al.'s (7e7 to 1.6e10); a power "
    "law fitted over two and a half decades need not hold its exponent over five.",
    "Data and tokens: one narrow corpus (the World English Bible) in characters, against BPE "
    "tokens of web text; the loss per character and its irreducible part differ, and "
    "exponents depend on the data distribution (Kaplan et al. 2020, sec. 3.2.2).",
    "Budgets: the larger models get few tokens per parameter here (Hoffmann et al. recommend "
    "about 20), so L(N) at the largest D is partly data-limited and its alpha comes out lower "
    "than a converged L(N) would give; Kaplan fit L(N) on early-stopped, converged runs.",
    "The two papers differ from each other too: Kaplan's alpha_N = 0.076 is a pure power law "
    "without E, fitted with a fixed schedule length; Hoffmann's 0.34 has the irreducible term "
    "and a cosine matched to each D. Compare our pure-law alpha_N with Kaplan's and our "
    "E + A/N^alpha with Hoffmann's.",
    "One recipe: the learning rate follows Kaplan et al.'s LR(N) and the batch is fixed; "
    "neither is tuned per size, and a size whose learning rate is off sits off the law.",
]


def markdown(results: dict[str, Any], report: dict[str, Any]) -> str:
    s = results.get("settings", {})
    machine = results.get("machine", {})
    lines = ["# Scaling laws on this machine", "",
             f"{report['dense_runs']} dense runs ({len(report['sizes'])} sizes, "
             f"{', '.join(_params(n) for n in report['sizes'])} non-embedding parameters) and "
             f"{report['runs'] - report['dense_runs']} MoE runs on `{s.get('text')}` "
             f"({s.get('tokenizer')} tokens, block {s.get('block_size')}, batch "
             f"{s.get('batch_size')}, steps {s.get('steps')}); machine: "
             f"{machine.get('cpu', '?')}, torch threads: {machine.get('torch_threads', '?')}, "
             f"torch {machine.get('torch', '?')}. Loss: mean next-token loss (nats per token) on "
             f"{s.get('valid_windows')} fixed windows of the validation text.", ""]
    lines += ["## Runs", "", "| run | N (active) | D tokens | steps | valid loss | test loss | "
              "tokens/s | train s |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results.get("runs", {}).values(), key=lambda r: (r["kind"], r["N"], r["D"])):
        lines.append(f"| {r['name']} | {r['N']:,} | {r['D']:,} | {r['steps']} | "
                     f"{_fmt(r['valid_loss'])} | {_fmt(r.get('test_loss'))} | "
                     f"{r.get('tokens_per_second') or '-'} | {r.get('train_seconds') or '-'} |")
    size_law, chin = report["size_law"], report["chinchilla"]
    lines += ["", "## Fitted laws (95% bootstrap intervals)", "",
              "| law | parameter | this study | Kaplan et al. 2020 | Hoffmann et al. 2022 |",
              "|---|---|---|---|---|"]
    if "ci" in size_law:
        ci = size_law["ci"]
        lines += [f"| L(N) = E + A/N^alpha, final loss per size | alpha | "
                  f"{_interval(ci, 'alpha')} | - | 0.34 |",
                  f"| | E | {_interval(ci, 'E')} | - | 1.69 (nats/token, BPE) |",
                  f"| L(N) = (N_c/N)^alpha_N (Kaplan's form) | alpha_N | "
                  f"{_interval(size_law['pure']['ci'], 'alpha')} | 0.076 | - |"]
    else:
        lines.append(f"| L(N) | - | skipped: {size_law.get('skipped')} | | |")
    if "ci" in chin:
        ci = chin["ci"]
        lines += [f"| L(N, D), {chin['points']} points of {chin['runs']} runs | alpha (a) | "
                  f"{_interval(ci, 'alpha')} | - | 0.34 |",
                  f"| | beta (b) | {_interval(ci, 'beta')} | 0.095 (alpha_D) | 0.28 |",
                  f"| | E | {_interval(ci, 'E')} | - | 1.69 |",
                  f"| | N_opt ~ C^x | {_interval(ci, 'n_opt_exponent')} | 0.73 | 0.46 |",
                  f"| | D_opt ~ C^x | {_interval(ci, 'd_opt_exponent')} | 0.27 | 0.54 |"]
    else:
        lines.append(f"| L(N, D) | - | skipped: {chin.get('skipped')} | | |")
    finals = report.get("chinchilla_finals", {})
    if "ci" in finals:
        ci = finals["ci"]
        lines.append(f"| L(N, D), final points only ({finals['points']}) | alpha, beta | "
                     f"{_interval(ci, 'alpha')}, {_interval(ci, 'beta')} | - | 0.34, 0.28 |")
    holdout = report["holdout"]
    lines += ["", "## Prediction check: the largest size held out", ""]
    if "held_out" in holdout:
        t = holdout["held_out"]
        lines += [f"Fitted on the smaller sizes only; {t['name']} (N = {t['N']:,}, D = "
                  f"{t['D']:,}) measured {_fmt(t['measured'])}.", "",
                  "| law | predicted [95%] | measured | error |", "|---|---|---|---|"]
        for which in ("size_law", "chinchilla"):
            if which in holdout:
                p = holdout[which]
                lines.append(f"| {'L(N)' if which == 'size_law' else 'L(N, D)'} | "
                             f"{_fmt(p['predicted'])} [{_fmt(p['low'])}, {_fmt(p['high'])}] | "
                             f"{_fmt(t['measured'])} | {100 * p['relative_error']:+.1f}% |")
    else:
        lines.append(f"Skipped: {holdout.get('skipped')}.")
    if report["moe"]:
        lines += ["", "## Mixture of experts against dense (equal active parameters, equal "
                      "steps)", "",
                  "| run | active / total N | valid loss | dense loss | difference | speed vs "
                  "dense | loss at the dense run's time | dense-equivalent N |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in report["moe"]:
            dense_loss = row.get("dense", {}).get("valid_loss")
            n_eff = row.get("dense_equivalent_params")
            lines.append(
                f"| {row['name']} | {_params(row['active_params'])} / "
                f"{_params(row['total_non_embedding'])} | {_fmt(row['valid_loss'])} | "
                f"{_fmt(dense_loss)} | {_signed(row.get('loss_difference'))} | "
                f"{_fmt(row.get('speed_ratio'), 2)}x | {_fmt(row.get('loss_at_dense_time'))} | "
                f"{_params(n_eff) if n_eff else '-'} "
                f"({_fmt(row.get('dense_equivalent_ratio'), 2)}x) |")
        lines += ["", "The dense-equivalent N is the size at which the dense L(N) fit reaches "
                      "the MoE run's loss (at this D); 'loss at the dense run's time' reads the "
                      "MoE curve where it had trained as long as the dense run did, mid-"
                      "schedule. The equal wall-clock comparison with its own schedules is "
                      "`python benchmarks/moe_vs_dense.py`."]
    lines += ["", "## What the measurement says", "", *(f"- {n}" for n in report["notes"]),
              "", "## Why the exponents may differ from the papers' at this scale", "",
              *(f"- {r}" for r in REASONS), "",
              "Plots: loss_vs_compute.png (every run's curve against C = 6 N D, the measured "
              "frontier and the fitted compute-optimal loss), loss_vs_n.png, loss_vs_d.png."]
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path, *, samples: int = 200,
                 seed: int = 0) -> dict[str, Any]:
    """report.json, report.md and the plots (plots.py) in `out`; returns the report."""
    from attnlab.studies.scaling.plots import write_plots

    report = analyse(results, samples=samples, seed=seed)
    write_plots(results, report, out)
    saved = {**report, "size_law": {k: v for k, v in report["size_law"].items()
                                    if k != "draws"}}
    text = json.dumps(saved, indent=2) + "\n"
    atomic_write(out / "report.json", lambda t: Path(t).write_text(text, encoding="utf-8"))
    md = markdown(results, report)
    atomic_write(out / "report.md", lambda t: Path(t).write_text(md, encoding="utf-8"))
    return report
