"""Measured comparisons of architectures on this machine, one family at a time.

--family text (the default): the Transformer vs RNN and convolutional encoder-decoders
(Vaswani et al. 2017): training cost and memory against sequence length, Table 1 (sequential
operations, path length) counted on real layers, BLEU at an equal time and parameter budget,
and long-range probes (copy, reverse, key-value recall).

    attnlab compare --quick --out runs/compare          # about 10 minutes on 2 CPU cores
    attnlab compare --out runs/compare                   # 3 seeds, 150 s BLEU budgets
    attnlab compare --parts cost table1 --archs transformer rnn-bahdanau

Writes results.json (after every part), results.md (tables + the usual comparison with
measured numbers + notes where they disagree with the folklore) and cost.png, table1.png,
bleu.png, probes.png into --out.

--family vision: is the Vision Transformer data-hungry (Dosovitskiy et al. 2021, sec. 4.4)?
ViT (vit-fashion) and a ResNet of the same parameter count (He et al. 2016; its width is
matched at run time) trained on 1%, 10% and 100% of Fashion-MNIST for the same time each, over
several seeds: test accuracy against the data fraction, inference and training throughput,
parameter and activation memory.

    attnlab compare --family vision --quick              # 1 seed, 70 s runs: <= 15 min, 2 CPUs
    attnlab compare --family vision                      # 3 seeds, 300 s runs: about 2 hours
    attnlab compare --family vision --fractions 0.05 1 --seconds 120 --seeds 2

Writes results.json (after every run: an interrupted study keeps what finished, and the same
command again skips the finished runs), results.md (tables and notes on where the measurement
agrees or disagrees with the paper), accuracy_vs_data.png and throughput.png into --out, and
each run's folder under --out/runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.settings import positive_float, positive_int
from attnlab.errors import ConfigError
from attnlab.studies.compare.study import ARCHITECTURES, PARTS, CompareSettings, run_compare

FAMILIES = ("text", "vision")
SHARED = ("out", "quick", "seeds")
# flags of one family only: dest -> the family
ONLY = {"archs": "text", "parts": "text", "size": "text", "bleu_seconds": "text",
        "probe_seconds": "text", "lengths": "text",
        "seconds": "vision", "fractions": "vision", "data": "vision"}
DEFAULT_OUT = {"text": "runs/compare", "vision": "runs/compare-vision"}


def fraction(text: str) -> float:
    """argparse type: a share of the training data, in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {value:g}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=FAMILIES, default="text",
                        help="text: Transformer vs RNN vs ConvS2S (default); vision: ViT vs a "
                             "ResNet of equal parameters against the share of training data")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/compare; vision: "
                             "runs/compare-vision)")
    parser.add_argument("--quick", action="store_true",
                        help="one seed and short budgets: about 10 minutes on 2 CPU cores "
                             "(vision: at most 15)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds (text: per BLEU run and probe; vision: per run; default 3, "
                             "--quick 1)")
    text = parser.add_argument_group("text comparison only (--family text)")
    text.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES), default=None,
                      help="architectures to compare (default: all)")
    text.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                      help="parts to run (default: all)")
    text.add_argument("--size", default=None, choices=("tiny", "mini", "small"),
                      help="preset size for cost and BLEU (default mini: ~1.2M params each)")
    text.add_argument("--bleu-seconds", type=positive_float, default=None,
                      help="training seconds per architecture and seed (default 150; quick 60)")
    text.add_argument("--probe-seconds", type=positive_float, default=None,
                      help="training seconds per probe (default 30; quick 8)")
    text.add_argument("--lengths", type=positive_int, nargs="+", default=None,
                      help="sequence lengths for the cost part (default 16 ... 512)")
    vision = parser.add_argument_group("vision comparison only (--family vision)")
    vision.add_argument("--seconds", type=positive_float, default=None,
                        help="training seconds per run, the same for every architecture and "
                             "fraction (default 300; quick 70)")
    vision.add_argument("--fractions", type=fraction, nargs="+", default=None,
                        help="shares of the training images (default 0.01 0.1 1)")
    vision.add_argument("--data", default=None,
                        help="images: builtin:fashion-mnist (default), builtin:digits, or a "
                             "folder DIR/train/<class>/*.png|jpg, DIR/test/<class>/...")


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag of the other family, naming it and what this family takes."""
    family = args.family
    foreign = [name for name, owner in ONLY.items()
               if owner != family and getattr(args, name) is not None]
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        own = [*SHARED, *(name for name, owner in ONLY.items() if owner == family)]
        other = FAMILIES[1 - FAMILIES.index(family)]
        raise ConfigError(f"{flags}: only for --family {other}; --family {family} takes "
                          + ", ".join("--" + name.replace("_", "-") for name in own))


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    if args.family == "vision":
        return run_vision(args)
    overrides = {key: value for key, value in (
        ("out", args.out), ("architectures", args.archs), ("parts", args.parts),
        ("size", args.size), ("seeds", args.seeds), ("bleu_seconds", args.bleu_seconds),
        ("probe_seconds", args.probe_seconds), ("lengths", args.lengths),
    ) if value is not None}
    settings = CompareSettings.quick(**overrides) if args.quick else CompareSettings(**overrides)
    run_compare(settings)
    report = Path(settings.out) / "results.md"
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report} and the PNG plots beside it")
    return 0


def run_vision(args: argparse.Namespace) -> int:
    from attnlab.studies.compare.vision import (
        VisionCompareSettings,
        expected_minutes,
        run_vision_compare,
    )

    overrides = {key: value for key, value in (
        ("out", args.out or DEFAULT_OUT["vision"]), ("seeds", args.seeds),
        ("seconds", args.seconds), ("fractions", args.fractions), ("data", args.data),
    ) if value is not None}
    make = VisionCompareSettings.quick if args.quick else VisionCompareSettings
    settings = make(**overrides)
    runs = 2 * len(settings.fractions) * settings.seeds
    print(f"vision comparison: {runs} runs of {settings.seconds:g} s of training each, about "
          f"{expected_minutes(settings):.0f} minutes on 2 CPU cores; results in {settings.out}",
          flush=True)
    run_vision_compare(settings)
    report = Path(settings.out) / "results.md"
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report}, accuracy_vs_data.png and throughput.png beside it")
    return 0
