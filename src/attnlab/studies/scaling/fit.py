"""Power laws of loss against model size and data, fitted the way the scaling-law papers do.

- L(N) = E + A / N^alpha: Kaplan et al. 2020 ("Scaling Laws for Neural Language Models",
  eq. 1.1: L = (N_c / N)^alpha_N), with the irreducible loss E that Henighan et al. 2020 and
  Hoffmann et al. 2022 add.
- L(N, D) = E + A / N^alpha + B / D^beta: Hoffmann et al. 2022 ("Training Compute-Optimal
  Large Language Models", eq. 2), fitted as their approach 3 (sec. 3.3, appendix D.2): the
  prediction written as a log-sum-exp, log L = LSE(a - alpha log N, b - beta log D, e) with
  A = e^a, B = e^b, E = e^e, and the Huber loss (delta = 1e-3) of log L^ - log L summed over
  the points, minimised by L-BFGS from a grid of starts (alpha, beta in {0, 0.5, ..., 2},
  e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}), the best optimum kept. Here the whole grid
  is scored first (one vectorised pass) and L-BFGS-B refines its best `refine` points: the
  optimum of a start outside those basins is no better than the best grid cells' (their
  objective is already lower), at a small fraction of the time.
- Confidence intervals by the bootstrap (Efron & Tibshirani 1993, ch. 13, percentile
  intervals): resample the points, or whole runs (`groups`: the evaluations along one training
  run are not independent), with replacement, refit, take the 2.5th and 97.5th percentiles.
- The compute-optimal allocation (Hoffmann et al. 2022, eq. 4): with C = 6 N D,
  N_opt(C) = G (C / 6)^(beta / (alpha + beta)), D_opt = (C / 6) / N_opt,
  G = (alpha A / (beta B))^(1 / (alpha + beta)); and the measured frontier, the least loss any
  run reached at each compute (Kaplan et al. 2020, fig. 2 and 13).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits  # scikit-learn's dependency, so always installed

from attnlab.errors import DataError

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, appendix D.2
EXPONENT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
LOG_E_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
LOG_COEFFICIENT_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
COEFFICIENTS = ("A", "B", "C")  # the names of each variable's coefficient, in order
EXPONENTS = ("alpha", "beta", "gamma")
# L-BFGS-B bounds: exponents >= 0 (a law that falls), log-coefficients and log E finite.
EXPONENT_BOUNDS = (0.0, 5.0)
LOG_COEFFICIENT_BOUNDS = (-20.0, 80.0)
LOG_E_BOUNDS = (-12.0, 5.0)


@dataclass(frozen=True)
class Law:
    """L = E + sum_k coefficient_k / x_k^exponent_k over the named variables (N, D)."""

    variables: tuple[str, ...]
    E: float
    coefficients: tuple[float, ...]
    exponents: tuple[float, ...]
    objective: float = math.nan  # the Huber loss at the optimum
    points: int = 0

    @property
    def params(self) -> dict[str, float]:
        """{"E", "A", "alpha"} or {"E", "A", "alpha", "B", "beta"}."""
        values = {"E": self.E}
        for k, (c, s) in enumerate(zip(self.coefficients, self.exponents, strict=True)):
            values[COEFFICIENTS[k]] = c
            values[EXPONENTS[k]] = s
        return values

    def predict(self, **values: Any) -> np.ndarray:
        """The law's loss at the given variables (arrays broadcast)."""
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise DataError(f"predict: the law is in {list(self.variables)}; missing "
                            f"{missing}, got {sorted(values)}")
        total = np.full(np.broadcast_shapes(*(np.shape(values[v]) for v in self.variables)),
                        self.E, dtype=float)
        for v, c, s in zip(self.variables, self.coefficients, self.exponents, strict=True):
            total = total + c / np.asarray(values[v], dtype=float) ** s
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"variables": list(self.variables), **self.params,
                "objective": self.objective, "points": self.points}


@dataclass
class Bootstrap:
    """Percentile intervals of each parameter and derived quantity over bootstrap refits."""

    estimate: dict[str, float]  # from the fit on every point
    low: dict[str, float]
    high: dict[str, float]
    samples: int
    level: float
    failed: int = 0  # resamples whose fit could not be made (too few distinct points)
    draws: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def interval(self, name: str) -> tuple[float, float]:
        return self.low[name], self.high[name]

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "samples": self.samples, "failed": self.failed,
                "estimate": self.estimate,
                "interval": {k: [self.low[k], self.high[k]] for k in self.estimate}}


# -- checks ----------------------------------------------------------------------------------------

def _column(name: str, values: Any, length: int | None) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if length is not None and array.size != length:
        raise DataError(f"{name} has {array.size} values, the loss has {length}: one per point")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        bad = [float(x) for x in array[~(np.isfinite(array) & (array > 0))][:3]]
        raise DataError(f"{name} must be positive and finite at every point, got {bad}")
    return array


def check_points(variables: Mapping[str, Any], loss: Any,
                 params: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(log x (P, K), log L (P,)) after checking: positive finite values, one per point, at
    least as many points as the law has parameters (`params`, default 2K + 1)."""
    if not variables:
        raise DataError("a law needs at least one variable (N, or N and D), got none")
    if len(variables) > len(COEFFICIENTS):
        raise DataError(f"at most {len(COEFFICIENTS)} variables, got {list(variables)}")
    y = _column("loss", loss, None)
    x = np.stack([_column(name, v, y.size) for name, v in variables.items()], axis=1)  # (P, K)
    params = params or 2 * len(variables) + 1
    if y.size < params:
        raise DataError(f"a law in {list(variables)} has {params} parameters and needs at "
                        f"least {params} points, got {y.size}")
    return np.log(x), np.log(y)


# -- the objective ---------------------------------------------------------------------------------

def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(theta: np.ndarray, log_x: np.ndarray, log_y: np.ndarray,
              delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Huber loss of LSE(c_k - s_k log x_k, e) - log y, summed, and its gradient;
    theta = [c_1..c_K, s_1..s_K, e]."""
    K = log_x.shape[1]
    c, s, e = theta[:K], theta[K:2 * K], theta[2 * K]
    z = np.concatenate([c - s * log_x, np.full((log_x.shape[0], 1), e)], axis=1)  # (P, K+1)
    top = z.max(axis=1, keepdims=True)
    w = np.exp(z - top)
    total = w.sum(axis=1, keepdims=True)
    lse = (top + np.log(total))[:, 0]  # (P,)
    w = w / total  # softmax weights (P, K+1)
    r = lse - log_y
    g = np.clip(r, -delta, delta)  # d huber / d r
    grad = np.concatenate([(g[:, None] * w[:, :K]).sum(0),
                           (-g[:, None] * w[:, :K] * log_x).sum(0),
                           [(g * w[:, K]).sum()]])
    return float(huber(r, delta).sum()), grad


def grid_objective(starts: np.ndarray, log_x: np.ndarray, log_y: np.ndarray,
                   delta: float = HUBER_DELTA) -> np.ndarray:
    """The objective at every start (G, 2K+1) at once: (G,)."""
    K = log_x.shape[1]
    c, s, e = starts[:, None, :K], starts[:, None, K:2 * K], starts[:, None, 2 * K:]
    terms = c - s * log_x[None]  # (G, P, K)
    z = np.concatenate([terms, np.broadcast_to(e, (*terms.shape[:2], 1))], axis=2)
    top = z.max(axis=2, keepdims=True)
    lse = (top + np.log(np.exp(z - top).sum(axis=2, keepdims=True)))[..., 0]  # (G, P)
    return huber(lse - log_y[None], delta).sum(axis=1)


def start_grid(k: int) -> np.ndarray:
    """Hoffmann et al.'s grid of starts for k variables: (G, 2k + 1) rows [c.., s.., e]."""
    rows = [(*cs, *ss, e) for cs in itertools.product(LOG_COEFFICIENT_GRID, repeat=k)
            for ss in itertools.product(EXPONENT_GRID, repeat=k) for e in LOG_E_GRID]
    return np.asarray(rows, dtype=float)


def _bounds(k: int) -> list[tuple[float, float]]:
    return [LOG_COEFFICIENT_BOUNDS] * k + [EXPONENT_BOUNDS] * k + [LOG_E_BOUNDS]


def _minimise(log_x: np.ndarray, log_y: np.ndarray, starts: np.ndarray,
              delta: float) -> tuple[np.ndarray, float]:
    """The best L-BFGS-B optimum over the starts (callers hold `one_blas_thread`)."""
    best, best_value = starts[0], math.inf
    bounds = _bounds(log_x.shape[1])
    for start in starts:
        result = minimize(objective, start, args=(log_x, log_y, delta), jac=True,
                          method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9})
        if np.all(np.isfinite(result.x)) and result.fun < best_value:
            best, best_value = result.x, float(result.fun)
    return best, best_value


def one_blas_thread() -> threadpool_limits:
    """L-BFGS-B's vectors have 5 entries: a multi-threaded BLAS spends ~5x the time of the
    fit waking its threads on a busy machine."""
    return threadpool_limits(limits=1, user_api="blas")


def _law(names: Sequence[str], theta: np.ndarray, value: float, points: int) -> Law:
    K = len(names)
    return Law(tuple(names), E=float(np.exp(theta[2 * K])),
               coefficients=tuple(float(np.exp(c)) for c in theta[:K]),
               exponents=tuple(float(s) for s in theta[K:2 * K]), objective=value,
               points=points)


def _theta(law: Law) -> np.ndarray:
    return np.array([*np.log(law.coefficients), *law.exponents, math.log(law.E)])


def fit_law(variables: Mapping[str, Any], loss: Any, *, refine: int = 8,
            delta: float = HUBER_DELTA, extra_starts: Sequence[Law] = ()) -> Law:
    """L = E + sum_k A_k / x_k^alpha_k fitted to the points (Hoffmann et al.'s approach 3):
    `variables` maps each name (N, D) to one positive value per point."""
    log_x, log_y = check_points(variables, loss)
    grid = start_grid(log_x.shape[1])
    scores = grid_objective(grid, log_x, log_y, delta)
    starts = grid[np.argsort(scores, kind="stable")[:refine]]
    if extra_starts:
        starts = np.concatenate([np.stack([_theta(law) for law in extra_starts]), starts])
    with one_blas_thread():
        theta, value = _minimise(log_x, log_y, starts, delta)
    return _law(list(variables), theta, value, log_y.size)


def fit_size_law(n: Any, loss: Any, **kwargs: Any) -> Law:
    """L(N) = E + A / N^alpha."""
    return fit_law({"N": n}, loss, **kwargs)


def fit_chinchilla(n: Any, d: Any, loss: Any, **kwargs: Any) -> Law:
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    return fit_law({"N": n, "D": d}, loss, **kwargs)


def bootstrap(variables: Mapping[str, Any], loss: Any, *, samples: int = 200, seed: int = 0,
              groups: Sequence[Any] | None = None, level: float = 0.95, refine: int = 1,
              quantities: Callable[[Law], Mapping[str, float]] | None = None,
              law: Law | None = None) -> Bootstrap:
    """Percentile intervals of the law's parameters (and of `quantities(law)`, e.g. a
    prediction) over `samples` refits on resampled points, or resampled groups of points
    (whole runs) when `groups` gives each point's group. Each refit starts from the full fit's
    optimum and the resample's `refine` best grid cells (0: the full fit's alone)."""
    if not (isinstance(samples, int) and samples >= 1):
        raise DataError(f"bootstrap samples must be a positive integer, got {samples!r}")
    if not 0 < level < 1:
        raise DataError(f"bootstrap level must be in (0, 1), got {level!r}")
    names = list(variables)
    log_x, log_y = check_points(variables, loss)
    full = law or fit_law(variables, loss)

    def measure(fitted: Law) -> dict[str, float]:
        return {**fitted.params, **(dict(quantities(fitted)) if quantities else {})}

    estimate = measure(full)
    group_of = np.arange(log_y.size) if groups is None else np.asarray(groups)
    if group_of.shape != (log_y.size,):
        raise DataError(f"groups has {group_of.size} values, the loss has {log_y.size}")
    grid = start_grid(len(names))
    params = 2 * len(names) + 1
    draws: dict[str, list[float]] = {k: [] for k in estimate}
    failed = 0
    with one_blas_thread():
        for index in resamples(group_of, samples, seed):
            if np.unique(index).size < params:
                failed += 1
                continue
            lx, ly = log_x[index], log_y[index]
            starts = _theta(full)[None]  # the full fit's optimum, and the resample's best cells
            if refine:
                scores = grid_objective(grid, lx, ly, HUBER_DELTA)
                starts = np.concatenate([starts,
                                         grid[np.argsort(scores, kind="stable")[:refine]]])
            theta, value = _minimise(lx, ly, starts, HUBER_DELTA)
            for k, v in measure(_law(names, theta, value, ly.size)).items():
                draws[k].append(float(v))
    return _intervals(estimate, draws, samples, level, failed)


def resamples(group_of: np.ndarray, samples: int, seed: int) -> Any:
    """Index arrays of `samples` bootstrap resamples: groups drawn with replacement, each
    bringing all its points."""
    keys, members = np.unique(group_of, return_inverse=True)
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        chosen = rng.integers(0, keys.size, keys.size)
        yield np.concatenate([np.flatnonzero(members == g) for g in chosen])


def _intervals(estimate: dict[str, float], draws: dict[str, list[float]], samples: int,
               level: float, failed: int) -> Bootstrap:
    tail = (1 - level) / 2 * 100
    low, high = {}, {}
    for k, values in draws.items():
        finite = np.asarray([v for v in values if np.isfinite(v)])
        low[k], high[k] = ((float(np.percentile(finite, tail)),
                            float(np.percentile(finite, 100 - tail))) if finite.size
                           else (math.nan, math.nan))
    return Bootstrap(estimate, low, high, samples, level, failed, draws)


def fit_pure_power_law(n: Any, loss: Any) -> Law:
    """L(N) = A / N^alpha with no irreducible term, Kaplan et al. 2020's form (eq. 1.1,
    L = (N_c / N)^alpha_N): least squares of log L on log N."""
    log_x, log_y = check_points({"N": n}, loss, params=2)
    if np.unique(log_x).size < 2:
        raise DataError("a pure power law needs at least two distinct N, got one")
    slope, intercept = np.polyfit(log_x[:, 0], log_y, 1)
    return Law(("N",), E=0.0, coefficients=(float(np.exp(intercept)),),
               exponents=(float(-slope),), objective=float(np.sum(
                   (intercept + slope * log_x[:, 0] - log_y) ** 2)), points=log_y.size)


def bootstrap_pure(n: Any, loss: Any, *, samples: int = 200, seed: int = 0,
                   level: float = 0.95) -> Bootstrap:
    """Percentile intervals of the pure power law's A and alpha over resampled points."""
    log_x, log_y = check_points({"N": n}, loss, params=2)
    full = fit_pure_power_law(np.exp(log_x[:, 0]), np.exp(log_y))
    draws: dict[str, list[float]] = {k: [] for k in full.params}
    failed = 0
    for index in resamples(np.arange(log_y.size), samples, seed):
        if np.unique(log_x[index]).size < 2:
            failed += 1
            continue
        refit = fit_pure_power_law(np.exp(log_x[index, 0]), np.exp(log_y[index]))
        for k, v in refit.params.items():
            draws[k].append(v)
    return _intervals(full.params, draws, samples, level, failed)


# -- what a law says -------------------------------------------------------------------------------

def size_for_loss(law: Law, loss: float) -> float:
    """The N at which L(N) = E + A / N^alpha reaches `loss` (inf at or below E)."""
    A, alpha = law.coefficients[0], law.exponents[0]
    if loss <= law.E or alpha <= 0:
        return math.inf
    return (A / (loss - law.E)) ** (1 / alpha)


def optimal_allocation(law: Law, compute: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising the Chinchilla law at compute C = 6 N D (Hoffmann et al.
    2022, eq. 4); law in (N, D)."""
    if law.variables != ("N", "D"):
        raise DataError(f"the compute-optimal allocation needs a law in (N, D), got "
                        f"{list(law.variables)}")
    (A, B), (alpha, beta) = law.coefficients, law.exponents
    c = _column("compute", compute, None) / 6
    if alpha <= 0 or beta <= 0:  # a flat term: the law sets no finite optimum
        return np.full_like(c, math.nan), np.full_like(c, math.nan)
    g = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n = g * c ** (beta / (alpha + beta))
    return n, c / n


def allocation_exponents(law: Law) -> dict[str, float]:
    """N_opt ~ C^a, D_opt ~ C^b with a = beta / (alpha + beta), b = alpha / (alpha + beta)
    (Hoffmann et al. 2022 find a ~ b ~ 0.5)."""
    alpha, beta = law.exponents
    total = alpha + beta
    if total <= 0:
        return {"n_opt_exponent": math.nan, "d_opt_exponent": math.nan}
    return {"n_opt_exponent": beta / total, "d_opt_exponent": alpha / total}


def measured_frontier(curves: Sequence[tuple[float, Sequence[float], Sequence[float]]],
                      points: int = 40) -> dict[str, list[float]]:
    """The least loss any run reached with at most each compute: `curves` holds one (N,
    D values, losses) per run; each run's loss is interpolated in log compute between its
    evaluations, the lower envelope over runs is taken on `points` log-spaced computes, then
    its running minimum (a run that ended at lower compute with a lower loss is still the
    best use of the larger budget); `n` is the N of the run giving each point."""
    if not curves:
        raise DataError("the compute frontier needs at least one run's curve, got none")
    logs = []
    for n, d, loss in curves:
        d_arr, l_arr = np.asarray(d, dtype=float), np.asarray(loss, dtype=float)
        order = np.argsort(d_arr)
        logs.append((np.log(6 * n * d_arr[order]), l_arr[order], n))
    low = min(c[0].min() for c in logs)
    high = max(c[0].max() for c in logs)
    grid = np.linspace(low, high, points)
    best = np.full(points, np.inf)
    best_n = np.full(points, np.nan)
    for log_c, loss, n in logs:
        inside = (grid >= log_c[0]) & (grid <= log_c[-1])
        values = np.interp(grid, log_c, loss)
        better = inside & (values < best)
        best[better], best_n[better] = values[better], n
    for i in range(1, points):  # running minimum over compute
        if best[i - 1] < best[i]:
            best[i], best_n[i] = best[i - 1], best_n[i - 1]
    keep = np.isfinite(best)
    return {"compute": np.exp(grid[keep]).tolist(), "loss": best[keep].tolist(),
            "n": best_n[keep].tolist()}
