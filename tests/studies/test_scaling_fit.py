"""Scaling-law fits (studies/scaling/fit.py): known exponents recovered from synthetic noisy
power-law data within the bootstrap interval, the compute-optimal allocation against its
closed form, the measured frontier, and bad input refused by name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnlab.errors import DataError, UserError
from attnlab.studies.scaling.fit import (
    Law,
    allocation_exponents,
    bootstrap,
    bootstrap_pure,
    fit_chinchilla,
    fit_pure_power_law,
    fit_size_law,
    measured_frontier,
    objective,
    optimal_allocation,
    size_for_loss,
)


def noisy(loss: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return loss * np.exp(np.random.default_rng(seed).normal(0.0, sigma, loss.shape))


def test_size_law_recovers_its_exponent_within_the_bootstrap_interval():
    n = np.logspace(4, 6.7, 10)
    truth = {"E": 1.7, "A": 8.0, "alpha": 0.3}
    loss = noisy(truth["E"] + truth["A"] / n ** truth["alpha"], 0.003, seed=1)
    law = fit_size_law(n, loss)
    assert law.params["alpha"] == pytest.approx(0.3, abs=0.08)
    ci = bootstrap({"N": n}, loss, samples=80, law=law, refine=0, seed=2)
    for name in ("E", "alpha"):
        low, high = ci.interval(name)
        assert low <= truth[name] <= high, (name, low, high)
    assert ci.high["alpha"] - ci.low["alpha"] < 0.3  # an interval that says something
    assert ci.failed == 0 and len(ci.draws["alpha"]) == 80


def test_chinchilla_form_recovers_hoffmann_exponents_within_the_interval():
    n, d = (g.ravel() for g in np.meshgrid(np.logspace(4, 6.7, 6), np.logspace(5, 7.5, 6)))
    truth = {"E": 1.5, "A": 40.0, "alpha": 0.34, "B": 400.0, "beta": 0.28}
    clean = truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"]
    loss = noisy(clean, 0.004, seed=3)
    law = fit_chinchilla(n, d, loss)
    assert law.variables == ("N", "D") and law.points == 36
    ci = bootstrap({"N": n, "D": d}, loss, samples=60, law=law, refine=0, seed=4,
                   quantities=lambda fitted: {"L_big": float(fitted.predict(N=1e7, D=1e8))})
    for name in ("alpha", "beta"):
        low, high = ci.interval(name)
        assert low <= truth[name] <= high, (name, low, high)
        assert high - low < 0.2
    true_big = truth["E"] + truth["A"] / 1e7 ** 0.34 + truth["B"] / 1e8 ** 0.28
    assert ci.low["L_big"] <= true_big <= ci.high["L_big"]


def test_groups_resample_whole_runs():
    n = np.repeat(np.logspace(4, 6, 5), 3)
    loss = 1.0 + 5.0 / n ** 0.25 + np.tile([0.0, 0.001, 0.002], 5)
    ci = bootstrap({"N": n}, loss, samples=20, groups=np.repeat(np.arange(5), 3), refine=0)
    assert ci.samples == 20 and ci.failed < 20
    with pytest.raises(DataError, match="groups has 3 values"):
        bootstrap({"N": n}, loss, samples=2, groups=[0, 1, 2])


def test_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    log_x = np.log(rng.uniform(1e4, 1e6, (12, 2)))
    log_y = np.log(rng.uniform(1.5, 3.0, 12))
    theta = np.array([3.0, 5.0, 0.3, 0.25, 0.4])
    value, grad = objective(theta, log_x, log_y, delta=10.0)  # quadratic region: smooth
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        numeric = (objective(theta + step, log_x, log_y, 10.0)[0]
                   - objective(theta - step, log_x, log_y, 10.0)[0]) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-4, abs=1e-8)
    assert value > 0


def test_optimal_allocation_is_the_closed_form_and_the_minimum():
    law = Law(("N", "D"), E=1.7, coefficients=(406.4, 410.7), exponents=(0.34, 0.28))
    c = np.array([1e18, 1e21])
    n_opt, d_opt = optimal_allocation(law, c)
    assert np.allclose(6 * n_opt * d_opt, c)
    # the law's loss along C = 6 N D is least at N_opt
    for budget, best in zip(c, n_opt, strict=True):
        ns = best * np.array([0.5, 0.8, 1.0, 1.25, 2.0])
        losses = law.predict(N=ns, D=budget / (6 * ns))
        assert int(np.argmin(losses)) == 2
    exponents = allocation_exponents(law)
    assert exponents["n_opt_exponent"] == pytest.approx(0.28 / 0.62)
    assert n_opt[1] / n_opt[0] == pytest.approx(1000 ** (0.28 / 0.62), rel=1e-9)


def test_size_for_loss_inverts_the_size_law():
    law = Law(("N",), E=1.5, coefficients=(20.0,), exponents=(0.3,))
    assert size_for_loss(law, float(law.predict(N=12345.0))) == pytest.approx(12345.0)
    assert size_for_loss(law, 1.4) == math.inf


def test_measured_frontier_takes_the_lower_envelope():
    small = (1e4, [1e5, 1e6, 1e7], [3.0, 2.5, 2.3])
    big = (1e6, [1e5, 1e6, 1e7], [3.2, 2.2, 1.8])
    front = measured_frontier([small, big], points=30)
    compute, loss, n = (np.array(front[k]) for k in ("compute", "loss", "n"))
    assert compute[0] == pytest.approx(6e9) and compute[-1] == pytest.approx(6e13)
    # the small model's end (2.3 at 6e11) stays the best use of compute until the big one's
    # curve drops below it (between 6e11 and 6e12)
    assert np.all(n[compute < 4e12] == 1e4) and np.all(n[compute > 6e12] == 1e6)
    assert np.all(np.diff(loss) <= 0) and loss[-1] == pytest.approx(1.8)


@pytest.mark.parametrize(("n", "loss", "message"), [
    ([1e4, 1e5], [3.0, 2.5], "3 parameters and needs at least 3 points, got 2"),
    ([1e4, 0.0, 1e6], [3.0, 2.5, 2.0], "N must be positive"),
    ([1e4, -5.0, 1e6, 1e7], [3.0, 2.5, 2.0, 1.9], "N must be positive"),
    ([1e4, 1e5, 1e6], [3.0, float("nan"), 2.0], "loss must be positive and finite"),
    ([1e4, 1e5, 1e6], [3.0, 2.5], "N has 3 values, the loss has 2"),
])
def test_bad_points_are_refused_by_name(n, loss, message):
    with pytest.raises(DataError, match=message):
        fit_size_law(n, loss)


def test_chinchilla_needs_five_points_and_a_two_variable_law_for_allocation():
    with pytest.raises(UserError, match="5 parameters and needs at least 5 points, got 4"):
        fit_chinchilla([1e4, 1e5, 1e6, 1e7], [1e6] * 4, [3.0, 2.8, 2.6, 2.5])
    with pytest.raises(DataError, match=r"needs a law in \(N, D\)"):
        optimal_allocation(Law(("N",), 1.0, (1.0,), (0.3,)), [1e18])
    with pytest.raises(DataError, match="bootstrap samples"):
        bootstrap({"N": [1e4, 1e5, 1e6]}, [3.0, 2.5, 2.2], samples=0)


def test_pure_power_law_is_kaplans_form_fitted_in_log_log():
    n = np.logspace(3, 7, 9)
    loss = noisy((8.8e13 / n) ** 0.076, 0.002, seed=5)  # Kaplan et al. 2020, eq. 1.1
    law = fit_pure_power_law(n, loss)
    assert law.E == 0.0 and law.exponents[0] == pytest.approx(0.076, abs=0.004)
    ci = bootstrap_pure(n, loss, samples=50, seed=1)
    assert ci.low["alpha"] <= 0.076 <= ci.high["alpha"]
    with pytest.raises(DataError, match="2 parameters and needs at least 2 points, got 1"):
        fit_pure_power_law([1e4], [3.0])
