"""Record what `make demo` achieves on this machine: test BLEU of the built-in English -> Veskan
translation demo, and the wall-clock time of training + evaluation against the issue's 10-minute
budget, with training tokens/s and the machine it ran on.

    python benchmarks/translation_demo.py              # the full demo (1,800 steps, ~7 min)
    python benchmarks/translation_demo.py --quick      # a 20-second run on a corpus sliver

Writes benchmarks/results/translation_demo.json (the demo's own output folder is --out).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

from attnlab.cli.main import main as attnlab_main
from attnlab.evaluation.machine import record_header

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "translation_demo.json"
TARGET_SECONDS = 600.0
TARGET_BLEU = 85.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 s of training on 2,000 pairs")
    p.add_argument("--run-dir", default="runs/demo-benchmark", help="the demo's output folder")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo_argv = ["demo", "--out", args.run_dir, "--overwrite"]  # a re-run replaces its run
    if args.quick:
        demo_argv += ["--time-budget", "20", "--train-size", "2000", "--valid-size", "50",
                      "--test-size", "100"]
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = attnlab_main(demo_argv)
    wall = time.perf_counter() - start
    sys.stdout.write(printed.getvalue())
    if code != 0:
        print(f"attnlab demo exited with {code}", file=sys.stderr)
        return code
    metrics = json.loads((Path(args.run_dir) / "metrics.json").read_text())
    demo = json.loads((Path(args.run_dir) / "demo.json").read_text())
    keep = ("bleu", "chrf", "bleu_signature", "sentences", "buckets", "test_ambiguous", "steps",
            "train_seconds", "train_tokens_per_second", "eval_seconds", "params", "precision")
    record = {
        "benchmark": "translation_demo",
        **record_header("benchmarks/translation_demo.py", sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "demo_argv": demo_argv,
        **{k: metrics[k] for k in keep if k in metrics},
        "train_and_eval_seconds": demo["train_and_eval_seconds"],
        "wall_seconds_including_setup": round(wall, 1),
        "targets": {"train_and_eval_seconds": TARGET_SECONDS, "bleu": TARGET_BLEU},
        "meets_time_target": demo["train_and_eval_seconds"] <= TARGET_SECONDS,
        "meets_bleu_target": metrics["bleu"] >= TARGET_BLEU,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    summary = {k: record[k] for k in ("bleu", "train_and_eval_seconds", "meets_time_target",
                                      "meets_bleu_target", "train_tokens_per_second")}
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
