"""results.json of `attnlab compare --family vision` -> results.md (accuracy against the data
fraction per architecture, every run, throughput and memory, and notes that set the measurement
against Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", sec. 1 and 4.4, Fig. 3-4),
accuracy_vs_data.png and throughput.png. Works on a partial file (an interrupted study)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnlab.serialization import atomic_write  # noqa: E402
from attnlab.viz.figures import save_png  # noqa: E402

ARCHS = ("vit", "resnet")
NAMES = {"vit": "ViT", "resnet": "ResNet"}
COLOURS = {"vit": "tab:blue", "resnet": "tab:orange"}
MIB = 2**20
PAPER = ("Dosovitskiy et al. (2021) write that ViT, trained on mid-sized data such as "
         "ImageNet without strong regularisation, lands a few points below ResNets of "
         "comparable size, and that the picture changes only when it is pre-trained on 14M-300M "
         "images (sec. 1); sec. 4.4 measures it: pre-trained on ImageNet, BiT ResNets beat every "
         "ViT, and ViT overtakes with ImageNet-21k and JFT-300M (Fig. 3); on random JFT "
         "subsets, ViT-B/32 is much worse than ResNet-50 at 9M images and better from 90M on, "
         "ViT overfitting more than ResNets of comparable compute on the smaller sets (Fig. 4). "
         "The CNN's inductive biases (locality, translation equivariance) pay off with little "
         "data; ViT must learn them.")


def _fractions(results: dict[str, Any]) -> list[float]:
    return sorted({run["fraction"] for run in results.get("runs", {}).values()})


def _acc(results: dict[str, Any], arch: str, fraction: float) -> dict[str, float] | None:
    return results.get("accuracy", {}).get(arch, {}).get(f"{fraction:g}")


def _pm(stats: dict[str, float] | None, scale: float = 100, digits: int = 1) -> str:
    """'mean ± std (n)' in percent; just the mean for one seed; '-' when absent."""
    if not stats:
        return "-"
    if stats["n"] > 1:
        return (f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f} "
                f"(n={stats['n']})")
    return f"{stats['mean'] * scale:.{digits}f}"


def _train_images(results: dict[str, Any], fraction: float) -> int | None:
    return next((r["train_examples"] for r in results.get("runs", {}).values()
                 if r["fraction"] == fraction), None)


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _train_speed(results: dict[str, Any], arch: str) -> float | None:
    return _median([r["train_examples_per_second"] for r in results.get("runs", {}).values()
                    if r["arch"] == arch])


def setup_section(results: dict[str, Any]) -> list[str]:
    s, m, d = results["settings"], results.get("machine", {}), results.get("data", {})
    v = results.get("versions", {})
    budget = (f"{s['max_steps']} optimizer steps" if s.get("max_steps") else
              f"{s['seconds']:g} s of training (validation and testing not counted)")
    models = results.get("models", {})
    lines = ["# ViT vs a ResNet at equal parameters: accuracy against training data", "",
             f"`{results.get('command', '')}`", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} CPUs, "
             f"{m.get('torch_threads', '?')} torch threads; attnlab {v.get('attnlab', '?')}, "
             f"torch {v.get('torch', '?')}, Python {v.get('python', '?')}.", ""]
    if d:
        ex = d.get("examples", {})
        lines += [f"Data: `{d['spec']}`, {d['classes']} classes, images "
                  f"{' x '.join(map(str, d['image']))} (C x H x W); {ex.get('train', 0):,} "
                  f"training images (the fractions take the same share of every class, one "
                  f"fixed subset per fraction for all seeds), {ex.get('valid', 0):,} validation "
                  f"(which picks the kept weights), {ex.get('test', 0):,} test.", ""]
    for arch in ARCHS:
        if arch in models:
            info = models[arch]
            width = info["values"].get("width")
            lines.append(f"- {NAMES[arch]}: `{info['preset']}`"
                         + (f" at width {width} (matched to the ViT's parameters)"
                            if width and s.get("match_params") else "")
                         + f", {info['params']:,} parameters")
    lines += ["", f"Each run: {budget}, {s['evaluations']} validations, batch "
              f"{s['batch_size']}, AdamW (lr 1e-3, warmup + cosine, weight decay 0.05), label "
              f"smoothing 0.1, random crop{' and flip' if s['flip'] else ''}: the same recipe "
              f"for both architectures, not tuned for either. Seeds: {s['seeds']}.", ""]
    return lines


def accuracy_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Test accuracy (%) against the share of training data", "",
             "| fraction | training images | ViT | ResNet | ViT - ResNet (points) |",
             "|---|---|---|---|---|"]
    for f in _fractions(results):
        vit, resnet = _acc(results, "vit", f), _acc(results, "resnet", f)
        gap = (f"{(vit['mean'] - resnet['mean']) * 100:+.1f}" if vit and resnet else "-")
        n = _train_images(results, f)
        lines.append(f"| {f:.0%} | {n:,} | {_pm(vit)} | {_pm(resnet)} | {gap} |")
    return [*lines, ""]


def runs_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Every run", "",
             "| run | test acc. | valid acc. | steps | epochs | train images/s | kept step |",
             "|---|---|---|---|---|---|---|"]
    for key, r in results.get("runs", {}).items():
        lines.append(f"| {key} | {r['test_accuracy']:.2%} | {r['valid_accuracy']:.2%} | "
                     f"{r['steps']:,} | {r['epochs']:g} | "
                     f"{r['train_examples_per_second']:,.0f} | {r['kept_step']:,} |")
    return [*lines, ""]


def cost_section(results: dict[str, Any]) -> list[str]:
    throughput, memory = results.get("throughput"), results.get("memory")
    if not throughput or not memory:
        return []
    batch = next(iter(throughput.values()))["batch"]
    mem_batch = next(iter(memory.values()))["batch"]
    lines = ["## Throughput and memory", "",
             f"Inference: eval-mode forwards of a batch of {batch}, both models timed in turn "
             "in one loop, median of the rounds. Training: the runs' median images/s "
             "(augmentation included). Activations: bytes autograd saves for backward in one "
             f"training forward of {mem_batch} images (parameters excluded); peak: the "
             "allocator's high-water mark during a whole training step (profiler).", "",
             "| | params | forward MFLOPs / image | inference images/s | training images/s "
             "| parameters MiB | activations MiB | train step peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for arch in ARCHS:
        t, m = throughput.get(arch), memory.get(arch)
        if not t or not m:
            continue
        speed = _train_speed(results, arch)
        lines.append(
            f"| {NAMES[arch]} | {m['params']:,} | {t['forward_flops_per_image'] / 1e6:,.1f} | "
            f"{t['images_per_second']:,.0f} | {'-' if speed is None else f'{speed:,.0f}'} | "
            f"{m['parameter_bytes'] / MIB:.2f} | {m['activation_bytes'] / MIB:,.1f} | "
            f"{m['train_step_peak_bytes'] / MIB:,.1f} |")
    return [*lines, ""]


def notes(results: dict[str, Any]) -> list[str]:
    """The paper's claim, what was measured, where they agree or disagree, and why ours may
    differ."""
    lines = ["## Against the paper", "", PAPER, ""]
    both = [f for f in _fractions(results)
            if _acc(results, "vit", f) and _acc(results, "resnet", f)]
    if not both:
        return [*lines, "No fraction has finished runs of both architectures yet.", ""]
    gaps = {f: (_acc(results, "vit", f)["mean"] - _acc(results, "resnet", f)["mean"]) * 100
            for f in both}
    noise = {f: 100 * max(_acc(results, a, f)["std"] for a in ARCHS) for f in both}
    seeds = min(_acc(results, a, f)["n"] for a in ARCHS for f in both)
    small, large = both[0], both[-1]
    said = ", ".join(f"{gaps[f]:+.1f} at {f:.0%}" for f in both)
    lines.append(f"Measured: ViT minus ResNet, in points of test accuracy: {said}.")
    ahead = [f for f in both if gaps[f] > 0]
    if not ahead:
        lines.append("The ResNet is ahead at every fraction: that agrees with the paper, "
                     "where ViT trained without large-scale pre-training trails ResNets.")
    else:
        where = ", ".join(f"{f:.0%}" for f in ahead)
        lines.append(f"ViT is ahead at {where}: that disagrees with the paper's finding that "
                     "a ViT trained without pre-training on 14M+ images trails a ResNet "
                     "(see the reasons below).")
    if len(both) > 1:
        if gaps[large] > gaps[small]:
            lines.append(f"The gap moves in ViT's favour as data grows ({gaps[small]:+.1f} at "
                         f"{small:.0%}, {gaps[large]:+.1f} at {large:.0%}): ViT gains more from "
                         "more data, the data-hunger the paper describes.")
        else:
            lines.append(f"The gap does not move in ViT's favour as data grows "
                         f"({gaps[small]:+.1f} at {small:.0%}, {gaps[large]:+.1f} at "
                         f"{large:.0%}): here ViT does not gain more from more data, which "
                         "disagrees with the data-hunger picture.")
    close = [f for f in both if abs(gaps[f]) <= max(2 * noise[f], 0.5)]
    if seeds == 1:
        lines.append("One seed per cell: differences of a point or less may be noise; run more "
                     "seeds (--seeds) before quoting them.")
    elif close:
        lines.append("Within twice the seeds' standard deviation (noise) at "
                     + ", ".join(f"{f:.0%}" for f in close) + ".")
    lines += ["", "Why ours may differ from the paper:", ""]
    lines += [f"- {reason}" for reason in reasons(results)]
    return [*lines, ""]


def reasons(results: dict[str, Any]) -> list[str]:
    out = []
    d = results.get("data", {})
    if d:
        image = d["image"]
        out.append(f"Images of {image[1]} x {image[2]} with {image[0]} channel(s), not 224 x 224 "
                   "RGB: the ViT reads a short sequence of small patches, and a 10-class "
                   "problem this easy leaves little room between the models.")
    steps = {arch: _median([r["steps"] for r in results.get("runs", {}).values()
                            if r["arch"] == arch]) for arch in ARCHS}
    s = results["settings"]
    if not s.get("max_steps") and all(steps.values()):
        out.append(f"Equal time, not equal steps or compute: in {s['seconds']:g} s of CPU the "
                   f"ViT took {steps['vit']:,.0f} steps and the ResNet {steps['resnet']:,.0f} "
                   "(medians); both are far from convergence on the full set, so the ranking "
                   "mixes learning per example with speed per step. The paper trains for days "
                   "on TPUs.")
    throughput = results.get("throughput", {})
    if all(throughput.get(a) for a in ARCHS):
        ratio = (throughput["resnet"]["forward_flops_per_image"]
                 / throughput["vit"]["forward_flops_per_image"])
        out.append(f"Equal parameters, not equal compute: the ResNet spends {ratio:.1f}x the "
                   "ViT's forward FLOPs per image (convolutions reuse each weight at every "
                   "position); the paper compares at comparable pre-training compute.")
    examples = d.get("examples", {}).get("train") if d else None
    size = f"{examples:,}" if examples else "tens of thousands of"
    out.append(f"No pre-training: every model starts from random weights on {size} images, "
               "below the paper's smallest setting (ImageNet's 1.3M, or 9M JFT images); the "
               "paper's crossover happens after pre-training and fine-tuning, which this "
               "study does not do.")
    out.append("One recipe for both (AdamW, the same learning rate, weight decay, label "
               "smoothing and augmentation) tuned for neither; the paper notes that ViT on "
               "small data depends on regularisation, and DeiT (Touvron et al. 2021) closes "
               "much of the gap with stronger augmentation and distillation.")
    return out


def markdown(results: dict[str, Any]) -> str:
    return "\n".join([*setup_section(results), *accuracy_section(results),
                      *cost_section(results), *notes(results), *runs_section(results)])


def plot_accuracy(results: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    fractions = _fractions(results)
    for arch in ARCHS:
        runs = [r for r in results.get("runs", {}).values() if r["arch"] == arch]
        if not runs:
            continue
        ax.scatter([r["fraction"] for r in runs], [100 * r["test_accuracy"] for r in runs],
                   color=COLOURS[arch], alpha=0.5, s=18)
        means = [(f, _acc(results, arch, f)) for f in fractions if _acc(results, arch, f)]
        params = results.get("models", {}).get(arch, {}).get("params")
        label = NAMES[arch] + (f" ({params / 1e6:.2f}M params)" if params else "")
        ax.plot([f for f, _ in means], [100 * a["mean"] for _, a in means], marker="o",
                color=COLOURS[arch], label=label)
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:.0%}\n({_train_images(results, f):,})" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("share of the training images (count)")
    ax.set_ylabel("test accuracy (%)")
    s = results["settings"]
    budget = f"{s['max_steps']} steps" if s.get("max_steps") else f"{s['seconds']:g} s"
    ax.set_title(f"Accuracy vs data, {budget} per run (dots: seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, path)


def plot_throughput(results: dict[str, Any], path: Path) -> Path | None:
    throughput, memory = results.get("throughput"), results.get("memory")
    if not throughput or not memory:
        return None
    archs = [a for a in ARCHS if a in throughput and a in memory]
    fig, (speed, mem) = plt.subplots(1, 2, figsize=(9, 3.8))
    width = 0.38
    for i, arch in enumerate(archs):
        train = _train_speed(results, arch) or 0.0
        speed.bar([j + (i - 0.5) * width for j in range(2)],
                  [throughput[arch]["images_per_second"], train], width,
                  color=COLOURS[arch], label=NAMES[arch])
        mem.bar([j + (i - 0.5) * width for j in range(2)],
                [memory[arch]["activation_bytes"] / MIB,
                 memory[arch]["train_step_peak_bytes"] / MIB], width, color=COLOURS[arch],
                label=NAMES[arch])
    speed.set_xticks([0, 1], ["inference", "training"])
    speed.set_ylabel("images / s")
    speed.set_title("Throughput")
    batch = next(iter(memory.values()))["batch"]
    mem.set_xticks([0, 1], ["saved activations", "train step peak"])
    mem.set_ylabel(f"MiB at batch {batch}")
    mem.set_title("Training memory")
    for ax in (speed, mem):
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
        ax.legend(loc="upper right", ncols=2)
        ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


def write_report(results: dict[str, Any], out: Path) -> Path:
    text = markdown(results) + "\n"
    atomic_write(out / "results.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
    if results.get("runs"):
        plot_accuracy(results, out / "accuracy_vs_data.png")
    plot_throughput(results, out / "throughput.png")
    return out / "results.md"
