"""The `attnlab` command line: list, demo, help and errors."""

from __future__ import annotations

import json
import subprocess
import sys

from attnlab.cli.main import main


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("multi_head", "additive", "multiplicative", "sinusoidal", "learned", "relative",
                 "rope", "alibi", "transformer-base", "transformer-big", "transformer-tiny",
                 "sdpa", "reference", "swiglu", "rms"):
        assert name in out, name


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table["attention"]) >= {"multi_head", "additive", "multiplicative"}


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "attnlab.cli.main", "--help"],
                            capture_output=True, text=True, check=True)
    assert "demo" in result.stdout and "list" in result.stdout


def test_demo_runs_tiny(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path), "--steps", "3", "--batch-size", "8",
                 "--max-len", "8"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["cached_equals_uncached"] is True
    assert (tmp_path / "cross_attention.png").stat().st_size > 1000


def test_bad_argument_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps must be positive, got 0" in capsys.readouterr().err
