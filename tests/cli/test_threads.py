"""`--threads N` on every computing command (before or after the command name), its default,
bad values as one line and exit 2, and the busy-machine warning before a command computes."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from attnlab.cli import bench_lra, listing, train
from attnlab.cli.main import COMPUTING, build_parser, main
from attnlab.training.device import available_cores, cap_torch_threads


@pytest.fixture
def seen(monkeypatch):
    """torch's thread count inside the command (train, train lm, bench lra and list replaced by
    a recorder), after the run routine's cap; torch's count put back after the test."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # a quiet machine
    before = torch.get_num_threads()
    counts: list[int] = []

    def record(args):
        counts.append(cap_torch_threads())  # what run_task does first: must keep the choice
        assert torch.get_num_threads() == counts[-1]
        return 0

    for module in (listing, train, bench_lra):
        monkeypatch.setattr(module, "run", record)
    yield counts
    torch.set_num_threads(before)


@pytest.mark.parametrize("argv", [
    ["--threads", "1", "train", "lm"],
    ["train", "--threads", "1", "lm"],
    ["train", "lm", "--threads", "1"],
    ["--threads", "3", "train", "lm", "--threads", "1"],  # the one after the command wins
    ["bench", "lra", "--threads", "1"],
    ["--threads", "1", "list"],
])
def test_threads_set_torch_for_the_command_and_are_restored(seen, argv):
    torch.set_num_threads(2)
    assert main(argv) == 0
    assert seen == [1]
    assert torch.get_num_threads() == 2


def test_more_threads_than_cores_are_kept_when_asked(seen):
    many = available_cores() + 1
    assert main(["train", "lm", "--threads", str(many)]) == 0
    assert seen == [many]


def test_default_is_torch_capped_at_the_process_cores(seen):
    torch.set_num_threads(available_cores() + 2)
    assert main(["train", "lm"]) == 0
    assert seen == [available_cores()]
    assert torch.get_num_threads() == available_cores() + 2


def test_the_default_is_documented():
    help_text = " ".join(build_parser().format_help().split())
    assert "--threads N" in help_text
    assert f"capped at the {available_cores()} CPUs this process may use" in help_text
    assert "OMP_NUM_THREADS" in help_text


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5"])
def test_bad_thread_counts_are_one_line_and_exit_2(seen, capsys, bad, position):
    argv = (["--threads", bad, "train", "lm"] if position == "before"
            else ["train", "lm", f"--threads={bad}"])
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    shown = repr(bad) if bad in ("abc", "1.5") else bad
    assert f"argument --threads: expected a positive integer, got {shown}" in err
    assert seen == []


def test_every_computing_command_takes_threads_after_its_name():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in COMPUTING:
        assert "--threads" in commands[name]._option_string_actions, name
    assert "--threads" not in commands["list"]._option_string_actions


def test_a_busy_machine_warns_once_before_a_computing_command(seen, monkeypatch, caplog):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.5, 1.5))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.WARNING):
        assert main(["--threads", "2", "train", "lm"]) == 0
        assert main(["--threads", "2", "list"]) == 0  # lists nothing heavy: no warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "load average 1.50 on 2 CPUs" in warnings[0]
    assert "--threads 1" in warnings[0]
