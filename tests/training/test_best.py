"""Keeping the best weights and stopping on a plateau (training/best.py)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from attnlab.training.best import BestKeeper


class FakeTrainer(SimpleNamespace):
    def request_stop(self, reason: str) -> None:
        self.stopped = reason


def test_the_best_weights_are_kept_and_restored(tmp_path):
    model = nn.Linear(3, 2)
    keeper = BestKeeper(tmp_path / "best", "valid_bleu", "max")
    trainer = FakeTrainer(step=0, stopped=None)
    values = {10: 5.0, 20: 9.0, 30: 7.0}
    weights = {}
    for step, value in values.items():
        with torch.no_grad():
            model.weight.fill_(step)
        weights[step] = model.weight.clone()
        keeper.after_evaluation(model, {"step": step, "valid_bleu": value}, trainer)
    assert keeper.best == {"step": 20, "metric": "valid_bleu", "value": 9.0}
    chosen = keeper.restore(model, step=30)
    assert chosen["step"] == 20 and torch.equal(model.weight, weights[20])
    # A new keeper over the same folder (a resumed run) knows the best.
    again = BestKeeper(tmp_path / "best", "valid_bleu", "max")
    assert again.best == keeper.best
    assert trainer.stopped is None


def test_lower_is_better_for_a_loss(tmp_path):
    keeper = BestKeeper(tmp_path / "best", "valid_loss", "min")
    model, trainer = nn.Linear(2, 2), FakeTrainer(step=0, stopped=None)
    for step, value in ((1, 3.0), (2, 2.0), (3, 2.5)):
        keeper.after_evaluation(model, {"step": step, "valid_loss": value}, trainer)
    assert keeper.best["step"] == 2


def test_patience_stops_a_plateau(tmp_path):
    keeper = BestKeeper(tmp_path / "best", "valid_bleu", "max", patience=2)
    model, trainer = nn.Linear(2, 2), FakeTrainer(step=0, stopped=None)
    for step, value in ((1, 4.0), (2, 3.0)):
        keeper.after_evaluation(model, {"step": step, "valid_bleu": value}, trainer)
    assert trainer.stopped is None
    keeper.after_evaluation(model, {"step": 3, "valid_bleu": 4.0}, trainer)  # not better
    assert trainer.stopped == "plateau"


def test_the_last_weights_stay_when_they_are_the_best(tmp_path):
    keeper = BestKeeper(tmp_path / "best", "valid_bleu", "max")
    model, trainer = nn.Linear(2, 2), FakeTrainer(step=0, stopped=None)
    keeper.after_evaluation(model, {"step": 5, "valid_bleu": 1.0}, trainer)
    with torch.no_grad():
        model.weight.fill_(7.0)
    assert keeper.restore(model, step=5)["step"] == 5
    assert torch.all(model.weight == 7.0)  # not reloaded


def test_keep_best_and_patience_need_a_metric_and_validations():
    import pytest

    from attnlab.training.run import Task, check_selection
    from attnlab.training.settings import RunSettings, SettingError

    class NoMetric(Task):
        name = "plain"

    class WithMetric(Task):
        name = "scored"
        best_metric = ("valid_loss", "min")

    with pytest.raises(SettingError, match="`attnlab train plain` has none to select by"):
        check_selection(NoMetric(None), RunSettings(keep="best", evaluations=5))
    with pytest.raises(SettingError, match="patience=3 needs validations during the run"):
        check_selection(WithMetric(None), RunSettings(patience=3))
    check_selection(WithMetric(None), RunSettings(keep="best", eval_every=10))  # fine
    check_selection(NoMetric(None), RunSettings())  # keep last, no patience: nothing needed
