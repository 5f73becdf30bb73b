"""Resident memory of `attnlab train lm` on a corpus and on one 10x larger, from a prepared
folder (`attnlab prepare lm`: memory-mapped tokens) and from the plain text file.

    python benchmarks/prepared_memory.py [--base-lines 15000] [--steps 20]

The text: verses of the World English Bible (Debian's sword-text-web, read by
attnlab.data.sword), one per line, a blank line between chapters; without the module, the
built-in corpus's English sentences (attnlab.data.corpus). The base corpus is its first
--base-lines lines; the 10x corpus is ten copies of them, each shuffled by chapter with its own
seed. Each training run (gpt2-tiny, --steps steps, byte-level BPE of 2,000) and each prepare is
a subprocess that reads /proc/self/status at its end: VmHWM (peak resident memory), RssAnon
(the process's own memory) and RssFile (file pages mapped in: the memmap's pages it touched,
shared libraries). File-backed pages are a cache: the kernel drops them under memory pressure
and reads them again, so RssFile is not memory a corpus takes away. Writes
benchmarks/results/prepared_memory.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attnlab.evaluation.machine import record_header
from attnlab.version import __version__

SCRIPT = "benchmarks/prepared_memory.py"
RESULT = Path(__file__).parent / "results" / "prepared_memory.json"
# The child runs `attnlab ARGV`; `prepare` through its module (whether or not cli/main.py
# lists it yet), with the same one-line error policy.
CHILD = """
import argparse, json, sys
from attnlab.cli.main import main
if sys.argv[1] == "prepare":
    from attnlab.cli import prepare
    parser = argparse.ArgumentParser(prog="attnlab prepare")
    prepare.add_arguments(parser)
    code = prepare.run(parser.parse_args(sys.argv[2:]))
else:
    code = main(sys.argv[1:])
fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
keys = ("VmHWM", "RssAnon", "RssFile")
print("STATUS " + json.dumps({k: int(fields[k].split()[0]) // 1024 for k in keys}))
sys.exit(code)
"""


def chapters() -> tuple[list[list[str]], str]:
    """The text as chapters of lines, and what it is."""
    from attnlab.data.sword import is_installed, read_verses

    if is_installed("engWEB2015eb"):
        grouped: dict[str, list[str]] = {}
        for (chapter, _), text in read_verses("engWEB2015eb").items():
            grouped.setdefault(chapter, []).append(text)
        return list(grouped.values()), "World English Bible verses (sword-text-web)"
    from attnlab.data.corpus import generate_corpus

    pairs = generate_corpus(seed=0, train_size=60_000, valid_size=0, test_size=0)["train"]
    sources = [src for src, _ in pairs]
    return ([sources[i:i + 30] for i in range(0, len(sources), 30)],
            "the built-in corpus's English sentences (attnlab.data.corpus)")


def write_corpus(path: Path, parts: list[list[str]], copies: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for copy in range(copies):
            order = list(parts)
            random.Random(copy).shuffle(order)
            for chapter in order:
                f.write("\n".join(chapter) + "\n\n")


def child(argv: list[str]) -> dict:
    """Run `attnlab ARGV` in a fresh process: its seconds and /proc/self/status figures (MiB)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"attnlab {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("STATUS "))
    return {**{f"{k}_MiB": v for k, v in json.loads(line[7:]).items()},
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-lines", type=int, default=15000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    parts, what = chapters()
    base: list[list[str]] = []
    for chapter in parts:
        if sum(map(len, base)) >= args.base_lines:
            break
        base.append(chapter)
    train = ["--preset", "gpt2-tiny", "--max-steps", str(args.steps), "--block-size", "128",
             "--batch-size", "16", "--vocab-size", "2000", "--valid-fraction", "0.002",
             "--evaluations", "0", "--keep", "last", "--threads", "1"]
    runs = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name, copies in (("base", 1), ("10x", 10)):
            text = work / f"{name}.txt"
            write_corpus(text, base, copies)
            prepared = work / f"{name}-prepared"
            record = {"corpus": name, "text_MB": round(text.stat().st_size / 1e6, 2),
                      "prepare": child(["prepare", "lm", "--text", str(text), "--out",
                                        str(prepared), "--vocab-size", "2000",
                                        "--no-progress"]),
                      "prepared_MB": round(sum(p.stat().st_size for p in prepared.iterdir())
                                           / 1e6, 2)}
            for source, path in (("prepared", prepared), ("text file", text)):
                record[f"train from {source}"] = child(
                    ["train", "lm", "--text", str(path), "--out", str(work / f"run-{name}"),
                     "--overwrite", *train])
            print(json.dumps(record), flush=True)
            runs.append(record)
    result = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "attnlab": __version__, "python": sys.version.split()[0],
              "torch": __import__("torch").__version__,
              "numpy": __import__("numpy").__version__,
              "text": what, "base_lines": sum(map(len, base)),
              "train_args": train, "runs": runs,
              "note": "MiB from /proc/self/status at the end of each process: VmHWM is the "
                      "peak resident memory; RssAnon the process's own memory; RssFile the "
                      "file pages mapped in (memmap pages touched, libraries), which the kernel "
                      "may drop and read again"}
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
