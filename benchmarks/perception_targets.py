"""The accuracy targets of issue 20, measured: the two shipped recipes trained from scratch on
this machine, each recorded with its settings, training seconds, examples/s and the machine.

    python benchmarks/perception_targets.py                       # trains both (~17 min)
    python benchmarks/perception_targets.py --only image           # Fashion-MNIST only
    python benchmarks/perception_targets.py --from-runs runs/fm runs/words   # record finished runs

Targets (2 CPU cores): Fashion-MNIST test accuracy >= 90% within 10 minutes of training (ViT,
`attnlab train image --config fashion-mnist`); spoken words >= 95% on held-out voices within 10
minutes (AST, `attnlab train audio --config spoken-words`). Writes
benchmarks/results/perception_targets.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnlab.evaluation.machine import record_header, write_record

TARGETS = {  # task -> (recipe, accuracy target, training seconds allowed)
    "image": ("fashion-mnist", 0.90, 600.0),
    "audio": ("spoken-words", 0.95, 600.0),
}
RESULT = Path(__file__).parent / "results" / "perception_targets.json"


def summary(run: Path) -> dict[str, Any]:
    """What the record keeps of a finished run folder: its task, settings and figures, and
    whether it meets its target."""
    settings = json.loads((run / "train_settings.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    task = "audio" if "spoken" in settings["data"] or "freq_masks" in settings else "image"
    recipe, target, seconds = TARGETS[task]
    return {
        "task": task, "recipe": recipe, "run": str(run), "data": settings["data"],
        "preset": settings["preset"], "params": metrics["params"], "steps": metrics["steps"],
        "batch_size": settings["batch_size"], "train_seconds": metrics["train_seconds"],
        "train_examples_per_second": metrics["train_examples_per_second"],
        "test_accuracy": metrics["test_accuracy"], "valid_accuracy": metrics["valid_accuracy"],
        "target_accuracy": target, "target_seconds": seconds,
        "meets_target": metrics["test_accuracy"] >= target
        and metrics["train_seconds"] <= seconds,
        **({"held_out_speakers": metrics["speakers"]["test"]} if "speakers" in metrics else {}),
    }


def train(task: str, out: Path) -> Path:
    from attnlab.cli.main import main

    recipe = TARGETS[task][0]
    code = main(["train", task, "--config", recipe, "--out", str(out), "--overwrite"])
    if code:
        raise SystemExit(f"attnlab train {task} --config {recipe} exited with {code}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(TARGETS), default=None)
    parser.add_argument("--out", default="runs/perception-targets",
                        help="folder for the run folders (default runs/perception-targets)")
    parser.add_argument("--from-runs", nargs="+", default=None, metavar="RUN",
                        help="record these finished run folders instead of training")
    parser.add_argument("--result", default=str(RESULT), help="where the record goes")
    args = parser.parse_args(argv)
    if args.from_runs:
        runs = [Path(r) for r in args.from_runs]
    else:
        tasks = [args.only] if args.only else sorted(TARGETS)
        runs = [train(task, Path(args.out) / task) for task in tasks]
    record = {**record_header("benchmarks/perception_targets.py", argv or sys.argv[1:]),
              "runs": [summary(run) for run in runs]}
    for run in record["runs"]:
        print(json.dumps({k: run[k] for k in ("task", "test_accuracy", "train_seconds",
                                               "target_accuracy", "meets_target")}))
    write_record(args.result, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
