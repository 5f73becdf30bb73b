"""How many optimizer steps a run will actually get, so its schedule and its evaluations fit them.

A run is bounded by a step limit and, optionally, a time budget. With a budget, the steps it
allows depend on the machine, so they are estimated from the measured speed: the first
`TIMED_FROM` steps are skipped (allocator warm-up), the next `TIMED_STEPS` give the first
estimate, and from then on every step refines it with the average speed since step
`TIMED_FROM` (evaluation and checkpoint time are not training time; the budget counts training
seconds only). A schedule that decays to the end of the run (Li, Yumer and Ramanan 2020,
"Budgeted training: rethinking deep neural network training under resource constraints":
linear decay to the budget's end beats a schedule written for a longer run) reads `total`
each step, and evaluations are spread evenly over it.

Nothing here is saved in checkpoints: a resumed run restores the trainer's step and training
seconds, and the plan is re-derived from them.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from tqdm import tqdm

TIMED_FROM, TIMED_STEPS = 2, 10  # skip the first steps (allocator warm-up), then time ten


class StepPlan:
    """The planned number of steps (`total`) and when to evaluate (`evaluation_due`).

    `total` is `max_steps` without a time budget (exact, machine-independent); with one, it is
    min(max_steps, steps done + remaining budget x measured steps per second), and max_steps
    until the first measurement (`measured` False)."""

    def __init__(self, max_steps: int, time_budget: float | None = None, *,
                 evaluations: int = 0, announce: bool = True) -> None:
        self.max_steps = max_steps
        self.time_budget = time_budget
        self.evaluations = evaluations
        self.announce = announce  # print the expected training time once it is measured
        self.total = max_steps
        self.measured = time_budget is None  # a step limit alone is known from the start
        self.rate: float | None = None  # measured steps per second
        self._first: int | None = None  # the first step this process saw (resume: later)
        self._start: tuple[int, float] | None = None  # (step, train seconds) timing began at
        self._done_marks = 0

    def on_step(self, trainer: Any) -> None:
        """After each optimizer step: time the first steps, then refine `total` (budgeted
        runs) every step and print the expected training time once."""
        step, seconds = trainer.step, trainer.train_seconds
        if self._first is None:
            self._first = step
        if self._start is None:
            if step - self._first == TIMED_FROM:
                self._start = (step, seconds)
            return
        timed = step - self._start[0]
        if timed < TIMED_STEPS:
            return
        first = self.rate is None
        self.rate = timed / max(seconds - self._start[1], 1e-9)
        if self.time_budget is not None:
            remaining = max(self.time_budget - seconds, 0.0)
            self.total = min(self.max_steps, step + max(1, math.floor(remaining * self.rate)))
            self.measured = True
        if first and self.announce:
            left = self.total - step
            note = "" if self.time_budget is None else (
                f" (what the {self.time_budget:.0f}s budget allows"
                + (", capped by max_steps" if self.total == self.max_steps else "")
                + "; the schedule is fitted to it)")
            tqdm.write(f"expected training time: ~{left / self.rate / 60:.1f} min more for "
                       f"{left:,} steps at the measured {self.rate:.2f} steps/s{note}",
                       file=sys.stderr)  # beside the progress bar, not in the results

    def evaluation_due(self, step: int) -> bool:
        """True at the steps k * total / evaluations (k = 1 .. evaluations - 1), each once; the
        run's final evaluation comes after the last step anyway. Before the first measurement
        of a budgeted run nothing is due (the marks are not known yet)."""
        return self.measured and self._pass_marks(step) > 0

    def resumed_at(self, step: int) -> None:
        """A resumed run: the marks before `step` are done (a budgeted run re-measures)."""
        if self.measured:
            self._pass_marks(step)

    def _pass_marks(self, step: int) -> int:
        """Count as done every mark at or before `step`; how many that was (several at once
        when the plan grew past them: still one evaluation)."""
        passed = 0
        while (self._done_marks + 1 < self.evaluations
               and step >= math.ceil((self._done_marks + 1) * self.total / self.evaluations)):
            self._done_marks += 1
            passed += 1
        return passed
