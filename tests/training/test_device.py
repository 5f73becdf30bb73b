"""CPU threads for one command (`use_threads`, the default, an explicit --threads kept by the
run routine's cap) and the busy-machine warning (a monkeypatched load average)."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from attnlab.training import device
from attnlab.training.device import (
    available_cores,
    cap_torch_threads,
    default_threads,
    use_threads,
    warn_if_oversubscribed,
)
from attnlab.training.settings import SettingError


@pytest.fixture
def torch_threads(monkeypatch):
    """No OMP_NUM_THREADS, and torch's thread count put back after the test."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_default_is_torch_count_capped_at_the_process_cores(torch_threads):
    torch.set_num_threads(available_cores() + 2)
    assert default_threads() == available_cores()
    with use_threads(None) as count:
        assert count == torch.get_num_threads() == available_cores()
    assert torch.get_num_threads() == available_cores() + 2  # restored


def test_explicit_threads_are_set_kept_by_the_cap_and_restored(torch_threads):
    many = available_cores() + 1  # above the cores: the user's explicit choice still stands
    with use_threads(many) as count:
        assert count == many == torch.get_num_threads()
        assert cap_torch_threads() == many  # what run_task calls: it must not lower it
    assert torch.get_num_threads() == torch_threads
    assert device._explicit_threads is None
    torch.set_num_threads(many)
    assert cap_torch_threads() == available_cores()  # outside a command the cap works again


def test_omp_num_threads_is_kept_as_the_default(torch_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    torch.set_num_threads(available_cores() + 5)
    assert default_threads() == available_cores() + 5
    with use_threads(None) as count:
        assert count == available_cores() + 5


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_threads_name_the_flag(bad, torch_threads):
    with pytest.raises(SettingError, match=rf"--threads must be a positive integer, got {bad}"):
        with use_threads(bad):
            pass
    assert torch.get_num_threads() == torch_threads


def busy(monkeypatch, load: float, cpus: int) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)


def test_a_busy_machine_gives_one_warning_with_the_numbers(monkeypatch, caplog):
    busy(monkeypatch, load=1.02, cpus=2)  # the trial: another job on a 2-core machine
    with caplog.at_level(logging.WARNING, logger="attnlab.training.device"):
        message = warn_if_oversubscribed(2)
    assert message is not None
    assert "1-minute load average 1.02 on 2 CPUs leaves ~1.0 free" in message
    assert "torch will use 2 threads" in message and "`attnlab --threads 1 ...`" in message
    assert [r.getMessage() for r in caplog.records] == [message]


@pytest.mark.parametrize(("load", "cpus", "threads"), [
    (0.3, 2, 2),    # an idle machine's background load
    (1.02, 2, 1),   # busy, but one thread fits in the free core
    (10.0, 64, 8),  # a big shared host: plenty free
])
def test_a_machine_with_room_gives_no_warning(monkeypatch, caplog, load, cpus, threads):
    busy(monkeypatch, load, cpus)
    with caplog.at_level(logging.WARNING):
        assert warn_if_oversubscribed(threads) is None
    assert caplog.records == []


def test_no_load_average_no_warning(monkeypatch):
    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert warn_if_oversubscribed(64) is None


def test_the_suggestion_uses_the_free_cores(monkeypatch):
    busy(monkeypatch, load=4.0, cpus=8)
    assert "`attnlab --threads 4 ...`" in warn_if_oversubscribed(8)
