"""`make demo`: the job the 2017 Transformer was built for, end to end on a laptop CPU.

Generates the built-in English -> Veskan corpus (reordering, case and agreement, ambiguous
words; see `python -m attnlab.data.corpus --help`), trains a joint BPE vocabulary and a small
Transformer with the paper's recipe for a fixed number of optimizer steps (seeded, so the
result is the same on a fast or a busy machine; the expected time is printed once the first
steps are timed), translates the 2,000-sentence test set with beam search, and prints sacreBLEU
BLEU / chrF, BLEU by source length, the share of ambiguous words translated in the right sense,
five samples beside their references, and saves a cross-attention alignment heatmap of a long
test sentence. Everything printed comes from the run itself (no corpus regenerated, no model
reloaded).

The settings are the `demo` recipe: `attnlab train translate --config demo` trains the same
model. `--time-budget` adds a limit in seconds (then the result depends on machine speed).
`--task reverse` runs the sequence-reversal demonstration instead. Each task has its own default
folder (runs/demo, runs/demo-reverse); a folder that already holds a run is replaced only with
`--overwrite`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attnlab.cli import reverse_demo
from attnlab.cli.settings import add_folder_flags, positive_float, positive_int
from attnlab.serialization import atomic_write
from attnlab.tasks.alignment import cross_attention, plot_alignment
from attnlab.tasks.translation import TranslationTask, load_recipe, settings_from_dict
from attnlab.training.run import run_task
from attnlab.training.run_folder import check_target, read_record, write_record

# Each demo its own folder, so one never replaces the other's model or metrics.
DEFAULT_OUT = {"translate": "runs/demo", "reverse": "runs/demo-reverse"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=["translate", "reverse"], default="translate",
                        help="translate (default): the built-in translation demo; reverse: "
                             "the sequence-reversal demo")
    parser.add_argument("--out", default=None,
                        help=f"output folder (default: {DEFAULT_OUT['translate']}, with --task "
                             f"reverse {DEFAULT_OUT['reverse']})")
    add_folder_flags(parser, resumable=False)
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="translate: optimizer steps (default: the recipe's, "
                             f"{load_recipe('demo')['max_steps']:,})")
    parser.add_argument("--time-budget", type=positive_float, default=None,
                        help="also stop training after this many seconds (default: none; the "
                             "result then depends on machine speed)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: the recipe's for translate, 0 for reverse)")
    for split in ("train", "valid", "test"):
        parser.add_argument(f"--{split}-size", type=int, default=None,
                            help=f"translate: built-in {split} pairs (default: the recipe's)")
    group = parser.add_argument_group("reverse task options")
    reverse_demo.add_arguments(group)


def run(args: argparse.Namespace) -> int:
    args.out = args.out or DEFAULT_OUT[args.task]
    # before anything is printed: a folder holding a run is replaced only with --overwrite
    check_target(Path(args.out), resume=False, overwrite=args.overwrite, resumable=False)
    if args.task == "reverse":
        args.seed = 0 if args.seed is None else args.seed
        return reverse_demo.run(args)
    return run_translation(args)


def pick_samples(pairs: list[tuple[str, str]], ambiguous: list[int], count: int = 5) -> list[int]:
    """Test indices spread over source lengths (short to long), one of them ambiguous."""
    by_length = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0].split()), i))
    picks = [by_length[int(q * (len(by_length) - 1))] for q in (0.1, 0.35, 0.6, 0.85)]
    extra = next((i for i in ambiguous if i not in picks), by_length[-1])
    return sorted([*picks, extra][:count], key=lambda i: len(pairs[i][0].split()))


def pick_long_sentence(pairs: list[tuple[str, str]], hypotheses: list[str]) -> int:
    """A long test sentence (20-30 words, for a readable plot), translated exactly if one is."""
    candidates = [i for i, (src, _) in enumerate(pairs) if 20 <= len(src.split()) <= 30]
    if not candidates:
        candidates = list(range(len(pairs)))
    exact = [i for i in candidates if hypotheses[i] == pairs[i][1]]
    pool = exact or candidates
    return max(pool, key=lambda i: (len(pairs[i][0].split()), -i))


def run_translation(args: argparse.Namespace) -> int:
    values = load_recipe("demo")
    values["out"] = args.out
    for name in ("max_steps", "time_budget", "seed"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for split in ("train", "valid", "test"):
        size = getattr(args, f"{split}_size")
        if size is not None:
            values[f"builtin_{split}_size"] = size
    settings = settings_from_dict(values, "demo")
    budget = "" if settings.time_budget is None else f" (at most {settings.time_budget:.0f}s)"
    print(f"attnlab demo: English -> Veskan translation with {settings.preset}, "
          f"{settings.max_steps:,} training steps{budget} on the built-in corpus "
          f"({settings.builtin_train_size:,} training pairs), then beam search on the test set\n")
    start = time.perf_counter()
    outcome = run_task(TranslationTask(settings), overwrite=args.overwrite)
    if outcome.interrupted:
        print(f"interrupted at step {outcome.result.step}: resume with "
              f"`attnlab train translate --out {args.out} --resume`")
        return 130
    train_and_eval = time.perf_counter() - start
    metrics, task = outcome.metrics, outcome.task
    test, hypotheses = task.test_pairs, task.test_hypotheses

    from attnlab.data.corpus import baseline_bleu

    print(f"\ntest BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  on {len(test):,} "
          f"sentences, beam {settings.beam_size}  ({metrics['bleu_signature']})")
    print(f"word-by-word baseline with a perfect lexicon: {baseline_bleu(test).score:.2f} BLEU")
    buckets = "  ".join(f"{label}: {b['bleu']:.1f}" for label, b in metrics["buckets"].items())
    print(f"BLEU by source length (words): {buckets}")
    ambiguous = metrics.get("test_ambiguous")
    if ambiguous:
        print(f"ambiguous words ({ambiguous['sentences']} sentences): right sense "
              f"{ambiguous['sense_accuracy']:.1%}, BLEU {ambiguous['bleu']:.2f}")
    print(f"{metrics['params']:,} parameters, {metrics['steps']:,} steps in "
          f"{metrics['train_seconds']:.0f}s "
          f"({metrics['train_tokens_per_second']:,} target tokens/s, {metrics['precision']}), "
          f"test decoding {metrics['eval_seconds']:.0f}s; train + evaluate "
          f"{train_and_eval / 60:.1f} min\n")

    for i in pick_samples(test, task.corpus.test_buckets.get("ambiguous", [])):
        source, reference = test[i]
        mark = "exact" if hypotheses[i] == reference else "differs"
        print(f"  source     {source}\n  reference  {reference}\n"
              f"  attnlab    {hypotheses[i]}   [{mark}]\n")

    out = Path(args.out)
    long_index = pick_long_sentence(test, hypotheses)
    alignment = cross_attention(outcome.model.cpu(), task.tokenizer, test[long_index][0],
                                hypotheses[long_index])
    heatmap = plot_alignment(alignment, out / "alignment.png")
    print(f"cross-attention alignment of test sentence {long_index + 1}: {heatmap}")
    print(f"loss curve: {out / 'loss_curve.png'}   metrics: {out / 'metrics.json'}")
    summary = {"train_and_eval_seconds": round(train_and_eval, 1), "bleu": metrics["bleu"],
               "alignment_sentence": long_index, "alignment_png": str(heatmap)}
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / "demo.json", lambda t: Path(t).write_text(text))
    record = read_record(out)  # the demo's own files belong to the run (for --overwrite)
    if record is not None:
        record["files"] = sorted({*record["files"], "alignment.png", "demo.json"})
        write_record(out, record)
    return 0
