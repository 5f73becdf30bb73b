"""Fixtures more than one test folder uses."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """A small UTF-8 text (300 lines of a 17-word vocabulary, one non-ASCII word, a blank line
    every 10): what `train lm` and `prepare lm` tests train on."""
    rng = random.Random(0)
    words = "the cat sat on a warm mat while the dog ran after a red ball near a café".split()
    lines = []
    for i in range(300):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + " .")
        if i % 10 == 9:
            lines.append("")
    path = tmp_path_factory.mktemp("lm") / "text.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
