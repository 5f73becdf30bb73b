"""Trainer: exact resume, atomic checkpoints, interrupts, safe loading, averaging."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from attnlab.training import checkpoint
from attnlab.training.checkpoint import (
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    read_training_state,
    save_checkpoint,
)
from attnlab.training.trainer import Trainer, TrainerConfig


class SeededBatches:
    """Batch i is a pure function of (seed, i): the position is the whole state."""

    def __init__(self, seed: int = 0) -> None:
        self.seed, self.position = seed, 0

    def next(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.position)
        self.position += 1
        x = torch.randn(8, 4, generator=g)
        return x, x.sum(-1, keepdim=True) + 0.1 * torch.randn(8, 1, generator=g)

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y), x.size(0)


def make_trainer(tmp: Path | None, max_steps: int, **config) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model, optimizer, lambda step: 1e-2 / step**0.5, SeededBatches(),
                   loss_fn, TrainerConfig(max_steps=max_steps, progress=False, **config),
                   checkpoint_dir=tmp)


def test_resume_equals_uninterrupted(tmp_path):
    straight = make_trainer(tmp_path / "a", 20, grad_accum=2)
    result = straight.fit()
    first = make_trainer(tmp_path / "b", 10, grad_accum=2)
    first.fit()
    second = make_trainer(tmp_path / "b", 20, grad_accum=2)  # fresh objects, as a new process
    assert second.resume()
    resumed = second.fit()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in result.history]
    for p, q in zip(straight.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert resumed.step == 20 and resumed.stopped_by == "max_steps"


def test_loss_decreases_and_tokens_counted(tmp_path):
    result = make_trainer(None, 100).fit()
    losses = [h["loss"] for h in result.history]
    assert sum(losses[-20:]) / 20 < 0.75 * sum(losses[:10]) / 10
    assert result.train_tokens == 100 * 8


def test_killed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, 3)
    trainer.fit()
    good = latest_checkpoint(tmp_path)
    assert good is not None and good.name == "step_0000003"

    def broken_save(model, path, *args, **kwargs):  # the weights, after the sharded state
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_model", broken_save)
    trainer.step = 4
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    assert latest_checkpoint(tmp_path) == good
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000003"]
    assert not list(tmp_path.glob(".step_*"))  # the staging folder was removed
    monkeypatch.undo()
    assert trainer.resume(good) and trainer.step == 3  # still resumes


def test_first_interrupt_saves_and_stops(tmp_path):
    calls = {"n": 0}

    def interrupting_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_fn(model, batch)

    trainer = make_trainer(tmp_path, 50)
    trainer.loss_fn = interrupting_loss
    result = trainer.fit()
    assert result.stopped_by == "interrupt" and result.step == 3
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_time_budget_stops(tmp_path):
    result = make_trainer(None, 10_000, time_budget=0.05).fit()
    assert result.stopped_by == "time_budget" and result.step < 10_000


def test_non_finite_loss_raises_without_saving(tmp_path):
    trainer = make_trainer(tmp_path, 5)
    trainer.loss_fn = lambda model, batch: (torch.tensor(float("nan"), requires_grad=True), 1)
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.fit()
    assert latest_checkpoint(tmp_path) is None


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_pickle_payload_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = make_trainer(tmp_path / "ck", 1)
    trainer.fit()
    path = latest_checkpoint(tmp_path / "ck")
    torch.save({"step": 1, "evil": Payload()}, path / "training_state.pt")
    with pytest.raises(ValueError, match="cannot load training state"):
        read_training_state(path)
    assert not (tmp_path / "pwned_marker").exists()


def test_retention_and_average(tmp_path):
    model = nn.Linear(2, 2)
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
            model.bias.fill_(-value)
        save_checkpoint(tmp_path, step, model, {"step": step}, keep_last=3)
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_0000002", "step_0000003", "step_0000004"]
    average_checkpoints(kept, model)
    assert torch.allclose(model.weight, torch.full((2, 2), 3.0))
    assert torch.allclose(model.bias, torch.full((2,), -3.0))


def test_config_errors():
    with pytest.raises(ValueError, match="max_steps must be positive, got 0"):
        TrainerConfig(max_steps=0)
    with pytest.raises(ValueError, match="grad_accum"):
        TrainerConfig(grad_accum=0)


def test_a_requested_stop_ends_the_run_as_finished(tmp_path):
    """request_stop (early stopping) ends the run after the step, saves a checkpoint, and the
    validation just made is not repeated; evaluation_due adds validations at chosen steps."""
    trainer = make_trainer(tmp_path, 50)
    trainer.evaluation_due = lambda step: step in (4, 8)

    def evaluate(model, step):
        if step == 8:
            trainer.request_stop("plateau")
        return {"valid": float(step)}

    trainer.evaluate = evaluate
    result = trainer.fit()
    assert result.stopped_by == "plateau" and result.step == 8
    assert [e["step"] for e in result.evaluations] == [4, 8]  # not 8 twice
    assert latest_checkpoint(tmp_path).name == "step_0000008"


def test_step_metrics_reach_the_history_and_the_progress_bar(tmp_path, capsys):
    """The task's figures of each step (step_metrics, called once per optimizer step, after
    the step's micro-batches) are kept in that step's history entry and shown on the bar under
    a short name; they survive a checkpoint like the loss."""
    trainer = make_trainer(tmp_path, 4, grad_accum=3)
    trainer.config.progress = True
    seen = {"micro": 0, "calls": []}

    def counting_loss(model, batch):
        seen["micro"] += 1
        return loss_fn(model, batch)

    def step_metrics():
        seen["calls"].append(seen["micro"])
        return {"aux_loss": seen["micro"] / 3, "dropped": 0.25}

    trainer.loss_fn, trainer.step_metrics = counting_loss, step_metrics
    result = trainer.fit()
    assert seen["calls"] == [3, 6, 9, 12]  # once per step, after its three micro-batches
    assert [(h["step"], h["aux_loss"], h["dropped"]) for h in result.history] == [
        (1, 1.0, 0.25), (2, 2.0, 0.25), (3, 3.0, 0.25), (4, 4.0, 0.25)]
    bar = capsys.readouterr().err
    assert "aux=4" in bar and "dropped=0.25" in bar and "loss=" in bar
    assert read_training_state(latest_checkpoint(tmp_path))["history"][-1]["aux_loss"] == 4.0
    trainer = make_trainer(None, 2)
    trainer.step_metrics = lambda: {"loss": 1.0}
    with pytest.raises(ValueError, match=r"step_metrics returned \['loss'\], names the history"):
        trainer.fit()
    assert make_trainer(None, 2).fit().history[0].keys() == {"step", "loss", "lr"}
