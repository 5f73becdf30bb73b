"""results.json of `attnlab bench lra` -> results.md (accuracy mean ± std per task and variant,
beside the published Long Range Arena numbers, with notes where the rankings disagree) and
results.png (a bar chart with error bars per task)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.serialization import atomic_write  # noqa: E402

# Tay et al., 2021, "Long Range Arena", Table 1: test accuracy (%) on ListOps and Image (CIFAR-10
# as 1,024 grey-level pixels), keyed by our registry name -> (their row name, ListOps, Image).
# Rows of theirs with no variant here (Sinkhorn Transformer) are left out; nystrom and routing
# are not in that table.
PUBLISHED: dict[str, tuple[str, float, float]] = {
    "multi_head": ("Transformer", 36.37, 42.44),
    "sliding_window": ("Local Attention", 15.82, 41.46),
    "sparse": ("Sparse Trans.", 17.07, 44.24),
    "longformer": ("Longformer", 35.63, 42.22),
    "linformer": ("Linformer", 35.70, 38.56),
    "reformer": ("Reformer", 37.27, 38.07),
    "synthesizer": ("Synthesizer", 36.99, 41.61),
    "bigbird": ("BigBird", 36.05, 40.83),
    "linear": ("Linear Trans.", 16.13, 42.34),
    "performer": ("Performer", 18.01, 42.77),
}
# our task -> the Table 1 column it is compared with (retrieval has none: see TASK_NOTES)
PUBLISHED_COLUMN = {"listops": 1, "pixels": 2}
TASK_NOTES = {
    "listops": "ListOps as in LRA, at the lengths and data size below (LRA: 500-2,000 tokens, "
               "96,000 training expressions).",
    "retrieval": "Our key-value retrieval is NOT LRA's Retrieval task (document matching on the "
                 "ACL Anthology Network, byte level, 4K tokens per document): no published "
                 "column compares with it.",
    "pixels": "Sequences of 1,024 grey levels like LRA's Image task, but of 8x8 handwritten "
              "digits upsampled to 32x32 (scikit-learn load_digits), not CIFAR-10: digits are "
              "far easier, so only the ranking, not the level, can be compared.",
}


def summarise(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> variant -> accuracy mean/std/n (in %), mean train seconds, params, errors."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in results["runs"]:
        cell = table.setdefault(run["task"], {}).setdefault(
            run["variant"], {"accuracies": [], "seconds": [], "params": None, "errors": []})
        if "error" in run:
            cell["errors"].append(run["error"])
            continue
        cell["accuracies"].append(100.0 * run["accuracy"])
        cell["seconds"].append(run["train_seconds"])
        cell["params"] = run["params"]
    for variants in table.values():
        for cell in variants.values():
            acc = cell["accuracies"]
            cell["n"] = len(acc)
            cell["mean"] = statistics.fmean(acc) if acc else None
            cell["std"] = statistics.stdev(acc) if len(acc) > 1 else 0.0
            cell["train_seconds"] = statistics.fmean(cell["seconds"]) if acc else None
    return table


def _cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if cell["mean"] is None:
        return f"failed ({len(cell['errors'])} runs)"
    text = f"{cell['mean']:.1f} ± {cell['std']:.1f}" if cell["n"] > 1 else f"{cell['mean']:.1f}"
    return text + (f" ({len(cell['errors'])} failed)" if cell["errors"] else "")


PAR_POINTS = 3.0  # within this many points of exact attention counts as "on par"


def relation(delta: float, margin: float) -> str:
    """'on par', 'above' or 'below' exact attention, given a difference in points."""
    if abs(delta) <= margin:
        return "on par"
    return "above" if delta > 0 else "below"


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation with average ranks for ties (None when either side is constant)."""
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    if len(set(rx)) < 2 or len(set(ry)) < 2:
        return None
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def comparisons(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """task -> variant -> (relation to exact attention here, published relation), for the
    variants with a published number; exact attention is multi_head in both."""
    found: dict[str, dict[str, Any]] = {}
    for task, column in PUBLISHED_COLUMN.items():
        cells = table.get(task, {})
        exact = cells.get("multi_head")
        if exact is None or exact["mean"] is None:
            continue
        found[task] = {}
        for variant, cell in cells.items():
            if variant == "multi_head" or variant not in PUBLISHED or cell["mean"] is None:
                continue
            margin = max(PAR_POINTS, cell["std"] + exact["std"])  # beyond the seed spread
            ours = relation(cell["mean"] - exact["mean"], margin)
            theirs = relation(PUBLISHED[variant][column] - PUBLISHED["multi_head"][column],
                              PAR_POINTS)
            found[task][variant] = (ours, theirs)
    return found


def rank_notes(table: dict[str, dict[str, dict[str, Any]]], chance: dict[str, float],
               params: dict[str, int]) -> list[str]:
    """Where our ordering of the variants disagrees with the published one, said plainly."""
    notes = []
    for task, cells in table.items():
        exact = cells.get("multi_head")
        if exact is None or exact["mean"] is None or task not in chance:
            continue
        gain = exact["mean"] - 100.0 * chance[task]
        verdict = ("learns it" if gain > max(5.0, 2 * exact["std"]) else
                   "does NOT learn it in this budget: every number in this column is at chance "
                   "level and says nothing about the variants")
        notes.append(f"**{task}**: exact attention reaches {exact['mean']:.1f}% against "
                     f"{100.0 * chance[task]:.1f}% chance ({gain:+.1f} points): it {verdict}.")
    for task, rows in comparisons(table).items():
        column = PUBLISHED_COLUMN[task]
        ours = {v: c["mean"] for v, c in table[task].items()
                if v in PUBLISHED and c["mean"] is not None}
        rho = spearman([ours[v] for v in ours], [PUBLISHED[v][column] for v in ours])
        line = f"**{task}**: "
        if task in chance and max(ours.values()) < 100.0 * chance[task] + 5.0:
            line += "no variant is more than 5 points above chance, so any ordering is noise. "
        disagree = [f"{v} ({o} here, {t} published)" for v, (o, t) in rows.items() if o != t]
        agree = [v for v, (o, t) in rows.items() if o == t]
        if disagree:
            line += ("relative to exact attention, these variants disagree with the published "
                     f"ranking: {'; '.join(disagree)}. ")
        if agree:
            line += f"Same relation as published: {', '.join(agree)}. "
        if rho is not None:
            line += (f"Spearman rank correlation with the published column over "
                     f"{len(ours)} variants: {rho:+.2f}.")
        notes.append(line.strip())
    exact = params.get("multi_head")
    if exact:
        heavy = [f"{v} ({n / exact:.1f}x)" for v, n in params.items() if n > 1.2 * exact]
        if heavy:
            notes.append("More parameters than exact attention (pixels task; sequence-sized "
                         f"projections or tables): {', '.join(heavy)}. Part of their accuracy "
                         "may come from those weights rather than from the attention pattern.")
    return notes


def markdown(results: dict[str, Any]) -> str:
    table = summarise(results)
    tasks = [t for t in results["settings"]["tasks"] if t in table]
    names = list(dict.fromkeys(results["settings"]["names"]))
    s, machine = results["settings"], results["machine"]
    chance = {t: results["tasks"][t]["chance"] for t in tasks if t in results["tasks"]}
    lines = [
        "# Long-Range-Arena-style accuracy of the attention variants", "",
        f"Command: `{results['command']}`", "",
        f"Machine: {machine.get('cpu')}, {machine.get('cpu_count')} CPUs, torch "
        f"{machine.get('torch')} with {machine.get('torch_threads')} thread(s)"
        + (f", GPU {machine['gpu']}" if "gpu" in machine else "") + f"; device {s['device']}. "
        f"Wall time {results.get('wall_seconds', 0.0) / 60:.1f} min.", "",
        *(["**Interrupted**: only the runs that finished are shown; `--resume` continues.", ""]
          if results.get("interrupted") else []),
        f"Same classifier for every variant: d_model {s['d_model']}, {s['n_heads']} heads, "
        f"{s['n_layers']} layer(s), d_ff {s['d_ff']}, dropout {s['dropout']}, "
        f"{s['position']} positions, mean pooling; AdamW (weight decay {s['weight_decay']}), "
        f"linear warmup + cosine decay, gradient clipping 1.0; {s['seeds']} seed(s).", "",
        "## Test accuracy (%), mean ± std over seeds", "",
        "| variant | " + " | ".join(tasks) + " | published ListOps | published Image "
        "| vs exact attention, here / published |",
        "|---" * (len(tasks) + 4) + "|",
        "| chance (majority class) | " + " | ".join(
            f"{100 * chance[t]:.1f}" if t in chance else "-" for t in tasks) + " | 10 | 10 | |",
    ]
    relations = comparisons(table)
    for name in names:
        row = PUBLISHED.get(name)
        published = (f"{row[1]:.2f} ({row[0]})", f"{row[2]:.2f}") if row else ("-", "-")
        cells = " | ".join(_cell(table[t].get(name)) for t in tasks)
        versus = "; ".join(
            f"{t}: {o} / {p}" + (" **(disagrees)**" if o != p else "")
            for t in relations if name in relations[t] for o, p in [relations[t][name]])
        lines.append(f"| {name} | {cells} | {published[0]} | {published[1]} | {versus} |")
    lines += ["", "## Tasks", "", "| task | budget | data | notes |", "|---|---|---|---|"]
    for task in tasks:
        info, b = results["tasks"].get(task, {}), s["budgets"][task]
        data = (f"{info.get('train_size')} train / {info.get('test_size')} test, "
                f"{info.get('n_classes')} classes, padded length {info.get('seq_len')}, "
                f"mean real length {info.get('mean_length', 0):.0f}; {info.get('notes', '')}")
        lines.append(f"| {task} | {b['steps']} steps x batch {b['batch_size']}, peak lr "
                     f"{b['lr']:g} | {data} | {TASK_NOTES[task]} |")
    knobs = {r["variant"]: r.get("knob") for r in results["runs"] if "error" not in r}
    lines += ["", "## Cost of a run (mean training seconds; parameters)", "",
              "Wall-clock training time on the machine above, as it was during the run (other "
              "jobs on a shared machine make it pessimistic and noisy; `attnlab bench "
              "attention` measures speed properly). Budget knob: the argument that trades cost "
              "for accuracy, at the value run (the registry default unless the settings' "
              "knobs say otherwise).", "",
              "| variant | budget knob | " + " | ".join(tasks) + " |",
              "|---" * (len(tasks) + 2) + "|"]
    for name in names:
        knob = ", ".join(f"{k}={v}" for k, v in (knobs.get(name) or {}).items()) or "-"
        cells = []
        for t in tasks:
            cell = table[t].get(name)
            cells.append("-" if cell is None or cell["mean"] is None else
                         f"{cell['train_seconds']:.1f} s, {cell['params']:,}")
        lines.append(f"| {name} | {knob} | " + " | ".join(cells) + " |")
    pixel_params = {v: c["params"] for v, c in table.get("pixels", {}).items() if c["params"]}
    notes = rank_notes(table, chance, pixel_params)
    lines += ["", "## Against the published ranking", "",
              "Published: Tay et al., 2021, Table 1 (ListOps and Image columns). Their models "
              "are far bigger and trained far longer on the real data sets; ours are tiny and "
              "briefly trained, so levels do not compare, and a ranking is only meaningful "
              "where runs are clearly above chance. Each variant is placed relative to exact "
              f"attention (multi_head / their Transformer): on par within {PAR_POINTS:g} "
              "points (or, here, within the two runs' summed seed standard deviations if "
              "larger), else above or below.", ""]
    lines += [f"- {n}" for n in notes] or ["- Fewer than two published variants were run."]
    errors = [f"- {r['task']} / {r['variant']} / seed {r['seed']}: {r['error']}"
              for r in results["runs"] if "error" in r]
    if errors:
        lines += ["", "## Failed runs", "", *errors]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    table = summarise(results)
    tasks = [t for t in results["settings"]["tasks"] if t in table]
    names = list(dict.fromkeys(results["settings"]["names"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        cells = [table[task].get(n) for n in names]
        means = [c["mean"] if c and c["mean"] is not None else 0.0 for c in cells]
        stds = [c["std"] if c and c["mean"] is not None else 0.0 for c in cells]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
        chance = results["tasks"].get(task, {}).get("chance")
        if chance is not None:
            ax.axhline(100 * chance, color="tab:red", linestyle="--", label="chance")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(task)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
    fig.suptitle(f"mean ± std over {results['settings']['seeds']} seed(s)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> None:
    text = markdown(results)
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    if results["runs"]:
        plot(results, out / "results.png")
