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

--family lm: what may replace attention. A LLaMA-style Transformer against Mamba, RWKV, RetNet
and an LSTM language model, each at the Transformer's non-embedding parameter count (widths
searched at run time) and trained for the same time on builtin:web (the World English Bible,
split by book): validation and test perplexity, training tokens/s and memory against length,
decoding ms/token and cache bytes against context (the crossover), and three probes
(multi-query associative recall, copying at a distance, selective copying).

    attnlab compare --family lm --quick                  # 1 seed, 70 s runs: <= 15 min, 2 CPUs
    attnlab compare --family lm                          # 3 seeds, 300 s runs: about 2.3 hours
    attnlab compare --family lm --archs transformer mamba --parts train probes
    attnlab compare --family lm --parts train --steps 300   # equal steps instead of equal time

Writes results.json (after every run; the same command again skips what finished),
results.md (tables and the papers' claims against the measurement), perplexity.png,
cost.png, decode.png and probes.png into --out, and each LM run's folder under --out/runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnlab.cli.settings import positive_float, positive_int
from attnlab.errors import ConfigError
from attnlab.studies.compare import lm, lm_archs
from attnlab.studies.compare.study import ARCHITECTURES, PARTS, CompareSettings, run_compare

FAMILIES = ("text", "vision", "lm")
SHARED = ("out", "quick", "seeds")
# flags of some families only: dest -> the families that take it
ONLY: dict[str, tuple[str, ...]] = {
    "archs": ("text", "lm"), "parts": ("text", "lm"), "size": ("text",),
    "bleu_seconds": ("text",), "probe_seconds": ("text", "lm"), "lengths": ("text", "lm"),
    "seconds": ("vision",), "fractions": ("vision",), "data": ("vision",),
    "train_seconds": ("lm",), "steps": ("lm",), "contexts": ("lm",), "text": ("lm",)}
# the values --archs and --parts take, per family
CHOICES = {"archs": {"text": list(ARCHITECTURES), "lm": list(lm_archs.ARCHS)},
           "parts": {"text": list(PARTS), "lm": list(lm.PARTS)}}
DEFAULT_OUT = {"text": "runs/compare", "vision": "runs/compare-vision", "lm": "runs/compare-lm"}


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
                             "ResNet of equal parameters against the share of training data; "
                             "lm: Transformer vs Mamba, RWKV, RetNet and an LSTM LM at equal "
                             "parameters and time")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/compare; vision: "
                             "runs/compare-vision; lm: runs/compare-lm)")
    parser.add_argument("--quick", action="store_true",
                        help="one seed and short budgets: about 10 minutes on 2 CPU cores "
                             "(vision, lm: at most 15)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds (text: per BLEU run and probe; vision: per run; lm: per "
                             "LM run and probe; default 3, --quick 1)")
    text = parser.add_argument_group("text comparison (--family text; --archs, --parts, "
                                      "--probe-seconds and --lengths also --family lm)")
    text.add_argument("--archs", nargs="+", choices=sorted({*ARCHITECTURES, *lm_archs.ARCHS}),
                      default=None, metavar="ARCH",
                      help=f"architectures to compare (default: all); text: "
                           f"{', '.join(ARCHITECTURES)}; lm: {', '.join(lm_archs.ARCHS)} (default "
                           f"{', '.join(lm_archs.DEFAULT_ARCHS)}; transformer is the reference)")
    text.add_argument("--parts", nargs="+", choices=sorted({*PARTS, *lm.PARTS}), default=None,
                      metavar="PART",
                      help=f"parts to run (default: all); text: {', '.join(PARTS)}; lm: "
                           f"{', '.join(lm.PARTS)}")
    text.add_argument("--size", default=None, choices=("tiny", "mini", "small"),
                      help="preset size for cost and BLEU (default mini: ~1.2M params each)")
    text.add_argument("--bleu-seconds", type=positive_float, default=None,
                      help="training seconds per architecture and seed (default 150; quick 60)")
    text.add_argument("--probe-seconds", type=positive_float, default=None,
                      help="training seconds per probe (default 30, quick 8; lm: 60, quick 10)")
    text.add_argument("--lengths", type=positive_int, nargs="+", default=None,
                      help="sequence lengths for the cost part (default 16 ... 512; lm: "
                           "64 ... 2048)")
    vision = parser.add_argument_group("vision comparison only (--family vision)")
    vision.add_argument("--seconds", type=positive_float, default=None,
                        help="training seconds per run, the same for every architecture and "
                             "fraction (default 300; quick 70)")
    vision.add_argument("--fractions", type=fraction, nargs="+", default=None,
                        help="shares of the training images (default 0.01 0.1 1)")
    vision.add_argument("--data", default=None,
                        help="images: builtin:fashion-mnist (default), builtin:digits, or a "
                             "folder DIR/train/<class>/*.png|jpg, DIR/test/<class>/...")
    family_lm = parser.add_argument_group("language-model comparison only (--family lm)")
    family_lm.add_argument("--train-seconds", type=positive_float, default=None,
                           help="training seconds per architecture and seed, the same for "
                                "every one (default 300; quick 70)")
    family_lm.add_argument("--steps", type=positive_int, default=None,
                           help="train every architecture for this many optimizer steps "
                                "instead of --train-seconds: equal tokens rather than equal "
                                "time (a slow scan then costs minutes, not steps)")
    family_lm.add_argument("--contexts", type=positive_int, nargs="+", default=None,
                           help="context lengths for the decoding part (default 256 1024 "
                                "4096 16384; quick 256 1024 4096)")
    family_lm.add_argument("--text", default=None,
                           help="corpus: builtin:web (default: the World English Bible, split "
                                "by book) or a UTF-8 text file")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag of another family, naming it, the families that take it and what this
    family takes; and an --archs / --parts value this family does not have."""
    family = args.family
    foreign: dict[tuple[str, ...], list[str]] = {}
    for name, owners in ONLY.items():
        if family not in owners and getattr(args, name) is not None:
            foreign.setdefault(owners, []).append(flag(name))
    if foreign:
        own = [*SHARED, *(name for name, owners in ONLY.items() if family in owners)]
        said = "; ".join(f"{', '.join(flags)}: only for --family {' or '.join(owners)}"
                         for owners, flags in foreign.items())
        raise ConfigError(f"{said}; --family {family} takes "
                          + ", ".join(flag(name) for name in own))
    for name, by_family in CHOICES.items():
        wrong = [v for v in getattr(args, name) or [] if v not in by_family[family]]
        if wrong:
            raise ConfigError(f"{flag(name)} {' '.join(wrong)}: not a --family {family} "
                              f"choice; expected some of {', '.join(by_family[family])}")


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    if args.family == "vision":
        return run_vision(args)
    if args.family == "lm":
        return run_lm(args)
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


def run_lm(args: argparse.Namespace) -> int:
    overrides = {key: value for key, value in (
        ("out", args.out), ("architectures", args.archs), ("parts", args.parts),
        ("seeds", args.seeds), ("seconds", args.train_seconds), ("max_steps", args.steps),
        ("probe_seconds", args.probe_seconds), ("lengths", args.lengths),
        ("contexts", args.contexts), ("text", args.text),
    ) if value is not None}
    settings = (lm.LMCompareSettings.quick if args.quick else lm.LMCompareSettings)(**overrides)
    runs = len(settings.architectures) * settings.seeds
    budget = (f"{settings.max_steps:,} steps" if settings.max_steps else
              f"{settings.seconds:g} s")
    work = [f"{runs} LM runs of {budget}"] if "train" in settings.parts else []
    if "probes" in settings.parts:
        work.append(f"{runs * len(settings.probes)} probe runs of "
                    f"{settings.probe_seconds:g} s")
    print(f"language-model comparison of {', '.join(settings.architectures)}: parts "
          f"{', '.join(settings.parts)}; {' and '.join(work) or 'measurements'}, about "
          f"{lm.expected_minutes(settings):.0f} minutes on 2 CPU cores; results in "
          f"{settings.out}", flush=True)
    lm.run_lm_compare(settings)
    report = Path(settings.out) / "results.md"
    print(report.read_text(encoding="utf-8"))
    print(f"written: {report}, perplexity.png, cost.png, decode.png and probes.png beside it")
    return 0
