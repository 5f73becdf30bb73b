"""The step plan (training/plan.py) and the budget schedule (training/schedule.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from attnlab.training.plan import TIMED_FROM, TIMED_STEPS, StepPlan
from attnlab.training.schedule import warmup_linear_decay


def drive(plan: StepPlan, steps: int, seconds_per_step: float, start: int = 0,
          start_seconds: float = 0.0) -> SimpleNamespace:
    trainer = SimpleNamespace(step=start, train_seconds=start_seconds)
    for _ in range(steps):
        trainer.step += 1
        trainer.train_seconds += seconds_per_step
        plan.on_step(trainer)
    return trainer


def test_a_step_limit_alone_is_the_plan_from_the_start():
    plan = StepPlan(max_steps=500)
    assert plan.measured and plan.total == 500
    drive(plan, 30, 0.1)
    assert plan.total == 500


def test_a_time_budget_plan_follows_the_measured_speed(capsys):
    plan = StepPlan(max_steps=100_000, time_budget=60.0)
    assert not plan.measured
    seen = 1 + TIMED_FROM + TIMED_STEPS  # the first step seen, warm-up, the timed steps
    drive(plan, seen - 1, 0.1)
    assert not plan.measured and plan.total == 100_000  # not yet timed
    trainer = drive(plan, 1, 0.1, start=seen - 1, start_seconds=0.1 * (seen - 1))
    # 10 steps/s measured, 60 s budget: ~600 steps in all
    assert plan.measured and plan.total == pytest.approx(600, abs=1)
    assert "expected training time" in capsys.readouterr().err
    # The machine slows down to half speed: the plan shrinks with the measured average
    # (110 steps in 21 s since timing began, 38.7 s left: 113 + 202 steps).
    drive(plan, 100, 0.2, start=trainer.step, start_seconds=trainer.train_seconds)
    assert plan.total == pytest.approx(113 + 38.7 * 110 / 21.0, abs=2)


def test_the_plan_never_exceeds_max_steps():
    plan = StepPlan(max_steps=50, time_budget=3600.0)
    drive(plan, 20, 0.01)
    assert plan.total == 50


def test_evaluations_are_spread_evenly_and_each_happens_once():
    plan = StepPlan(max_steps=100, evaluations=4)
    due = [step for step in range(1, 101) if plan.evaluation_due(step)]
    assert due == [25, 50, 75]  # the fourth is the run's final evaluation


def test_evaluations_wait_for_a_measured_plan():
    plan = StepPlan(max_steps=10_000, time_budget=10.0, evaluations=5)
    assert not plan.evaluation_due(1)
    drive(plan, 20, 0.01)  # 100 steps/s -> ~1000 steps
    assert not plan.evaluation_due(100)
    assert plan.evaluation_due(plan.total // 5 + 1)


def test_a_resumed_plan_skips_the_evaluations_already_made():
    plan = StepPlan(max_steps=100, evaluations=4)
    plan.resumed_at(60)
    assert [s for s in range(61, 101) if plan.evaluation_due(s)] == [75]


def test_budget_schedule_warms_up_then_decays_to_the_end():
    lr = [warmup_linear_decay(s, peak_lr=1.0, total_steps=100, warmup_fraction=0.1)
          for s in range(1, 121)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)  # peak at step 10
    assert all(a > b for a, b in zip(lr[9:99], lr[10:100], strict=True))  # decays
    assert lr[99] == pytest.approx(0.01)  # the floor at the planned end, and after it
    assert lr[119] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="warmup_fraction"):
        warmup_linear_decay(1, peak_lr=1.0, total_steps=10, warmup_fraction=1.0)


def test_the_schedule_follows_a_changed_plan():
    # The same step has a lower rate in a shorter plan: the decay is fitted to the steps
    # the run will get.
    long = warmup_linear_decay(300, peak_lr=1.0, total_steps=1000)
    short = warmup_linear_decay(300, peak_lr=1.0, total_steps=400)
    assert short < long
