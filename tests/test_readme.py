"""The README's front page stays true: its Python example runs, its quick start is the two make
commands, and every relative link points at a file in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # it saves a folder
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})


def test_quick_start_is_make_demo_and_make_test():
    assert "make demo" in README and "make test" in README
    assert len(README.splitlines()) < 200


def test_relative_links_resolve():
    pages = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
