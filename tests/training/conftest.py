"""Shared by the run-folder tests: a small text file and the argv of a few-step `train lm`."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def text(tmp_path) -> Path:
    rng = random.Random(0)
    words = "the cat sat on a warm mat while the dog ran after a red ball".split()
    path = tmp_path / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(200))
                    + "\n")
    return path


@pytest.fixture
def lm() -> Callable[..., list[str]]:
    """argv of a 2-step `attnlab train lm` (a checkpoint each step) on a 1-layer gpt2-tiny."""

    def argv(text: Path, out: Path, *extra: str) -> list[str]:
        return ["train", "lm", "--text", str(text), "--out", str(out), "--max-steps", "2",
                "--save-every", "1", "--warmup-steps", "1", "--block-size", "16",
                "--batch-size", "4", "--vocab-size", "300", "--set", "n_layers=1", *extra]

    return argv


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[int, str]]]:
    """Every file and folder under a folder: (mtime in ns, sha256 of its bytes), to show that
    a refused command changed nothing on disk."""

    def take(folder: Path) -> dict[str, tuple[int, str]]:
        found = {}
        for path in sorted(folder.rglob("*")):
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            found[str(path.relative_to(folder))] = (path.stat().st_mtime_ns, digest)
        return found

    return take
