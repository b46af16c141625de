"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"), fitted by maximum likelihood.

Implemented here with scipy rather than taken from a library: ``lifetimes`` 0.11.3 (unmaintained since
2020) fails with this project's numpy 2 / pandas 3 / setuptools (its datasets import ``pkg_resources``, and
its autograd-based fitter reports no convergence on simple simulated data); ``pymc-marketing`` compiles C at
run time through pytensor, too heavy for a command that should answer in seconds on two cores. The model
is small: the log-likelihood, P(alive) and the conditional expectation are closed forms (FHL 2005, eqs. 6,
10 and the appendix), and the tests recover known parameters from a simulated population.

Model: while alive, a customer buys at rate lambda ~ Gamma(r, alpha); after each purchase they drop out
with probability p ~ Beta(a, b). Times are in days; ``x`` repeat purchases, last at ``t_x``, observed for ``T``.

>>> params = {"r": 0.5, "alpha": 50.0, "a": 0.8, "b": 2.5}
>>> float(p_alive(params, 0, 0.0, 100.0))  # never bought again: no dropout yet (it follows a purchase)
1.0
>>> round(float(p_alive(params, 3, 100.0, 100.0)), 3)  # bought just now: only that purchase's dropout
0.849
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import optimize, special

from twinchat.domain.behaviour import Features, Forecast, LifetimeFit
from twinchat.ports import LifetimeModel

NAMES = ("r", "alpha", "a", "b")
Params = Mapping[str, Any]  # floats, or arrays of draws
INTERVAL_DRAWS = 400
LOG_BOUND = 8.0  # parameters between e^-8 and e^8 (times in units of the mean T)


def log_likelihood(params: Params, x: Any, tx: Any, T: Any) -> np.ndarray:  # noqa: N803 (the paper's T)
    """Each customer's log-likelihood (FHL 2005 eq. 6, in logs for stability)."""
    r, alpha, a, b = (params[n] for n in NAMES)
    x, tx, T = (np.asarray(v, dtype=float) for v in (x, tx, T))
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx), -np.inf
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def p_alive(params: Params, x: Any, tx: Any, T: Any) -> np.ndarray:  # noqa: N803
    """P(still a customer at T | x, t_x, T) (FHL 2005 eq. 10); 1 for anyone who never bought again."""
    r, alpha, a, b = (params[n] for n in NAMES)
    x, tx, T = (np.asarray(v, dtype=float) for v in (x, tx, T))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = (
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * np.log((alpha + T) / (alpha + tx))
        )
    return np.where(x > 0, special.expit(-log_ratio), 1.0)


def expected_purchases(params: Params, t: float, x: Any, tx: Any, T: Any) -> np.ndarray:  # noqa: N803
    """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, appendix eq. for E[Y(t) | X = x, t_x, T])."""
    r, alpha, a, b = (params[n] for n in NAMES)
    x, tx, T = (np.asarray(v, dtype=float) for v in (x, tx, T))
    z = t / (alpha + T + t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        inner = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        alive_term = (a + b + x - 1) / (a - 1) * inner
    return np.maximum(np.nan_to_num(alive_term, nan=0.0, posinf=0.0) * p_alive(params, x, tx, T), 0.0)


def p_buy_again(params: Params, t: float, x: Any, tx: Any, T: Any) -> np.ndarray:  # noqa: N803
    """P(at least one purchase in (T, T + t] | x, t_x, T).

    Alive at T, the rate's posterior is Gamma(r + x, alpha + T), and no dropout can come before the next
    purchase, so P(none in t | alive) = ((alpha + T) / (alpha + T + t)) ** (r + x).
    """
    r, alpha = params["r"], params["alpha"]
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    none = ((alpha + T) / (alpha + T + t)) ** (r + x)
    return p_alive(params, x, tx, T) * (1 - none)


def fit(x: Any, tx: Any, T: Any) -> tuple[dict[str, float], np.ndarray | None, float]:  # noqa: N803
    """Maximum-likelihood parameters, the covariance of their logs (None if the Hessian is not invertible)
    and the total log-likelihood. Times are rescaled internally so every parameter is of order one."""
    x, tx, T = (np.asarray(v, dtype=float) for v in (x, tx, T))
    if len(x) < 2 or not (x > 0).any():
        raise ValueError("a BG/NBD fit needs at least two customers and one repeat purchase")
    scale = float(max(T.mean(), 1.0))
    sx, stx, sT = x, tx / scale, T / scale

    def nll(theta: np.ndarray) -> float:
        params = dict(zip(NAMES, np.exp(theta), strict=True))
        value = -float(log_likelihood(params, sx, stx, sT).sum())
        return value if math.isfinite(value) else 1e300

    # Bounded in log space: far outside these values gammaln(b + x) - gammaln(b) loses every digit to
    # cancellation, and the optimizer would "find" a degenerate fit (a -> 0, b -> inf) in the rounding noise.
    bounds = [(-LOG_BOUND, LOG_BOUND)] * 4
    best = None
    for start in (np.zeros(4), np.array([0.0, 0.0, -1.0, 1.0]), np.array([-1.0, -1.0, 0.0, 0.0])):
        options = {"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-9}
        found = optimize.minimize(nll, start, method="Nelder-Mead", bounds=bounds, options=options)
        found = optimize.minimize(nll, found.x, method="L-BFGS-B", bounds=bounds)
        if best is None or found.fun < best.fun:
            best = found
    assert best is not None
    theta = best.x.copy()
    theta[1] += math.log(scale)  # alpha is a time: back to days
    covariance = _covariance(nll, best.x)
    params = {n: float(v) for n, v in zip(NAMES, np.exp(theta), strict=True)}
    total = float(log_likelihood(params, x, tx, T).sum())
    return params, covariance, total


def _covariance(nll: Any, theta: np.ndarray, step: float = 1e-4) -> np.ndarray | None:
    """The inverse of the negative log-likelihood's Hessian (central differences) in log-parameter space."""
    n = len(theta)
    hessian = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * step, np.eye(n)[j] * step
            value = (
                nll(theta + e_i + e_j)
                - nll(theta + e_i - e_j)
                - nll(theta - e_i + e_j)
                + nll(theta - e_i - e_j)
            ) / (4 * step * step)
            hessian[i, j] = hessian[j, i] = value
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(covariance)) or np.any(np.linalg.eigvalsh(covariance) <= 0):
        return None
    return covariance  # alpha's log shifts by a constant with the time scale: its variance is unchanged


class BgNbdModel(LifetimeModel):
    """BG/NBD behind the LifetimeModel port.

    >>> from datetime import date
    >>> model = BgNbdModel()
    >>> f = Features(frequency=0, recency=0, age=60, as_of=date(2011, 3, 1))
    >>> fit = LifetimeFit("bg/nbd", {"r": 0.5, "alpha": 50.0, "a": 0.8, "b": 2.5}, None, None, 500, 200,
    ...                   date(2010, 12, 1), date(2011, 3, 1), "2011-03-01T00:00:00+00:00", -1.0)
    >>> model.forecast(fit, f, horizon_days=90).p_alive
    1.0
    """

    name = "bg/nbd"

    def fit(self, panel: Sequence[Features], *, panel_name: str | None = None) -> LifetimeFit:
        x, tx, T = (
            np.array([getattr(f, k) for f in panel], dtype=float) for k in ("frequency", "recency", "age")
        )
        params, covariance, ll = fit(x, tx, T)
        starts = [f.days[0].day for f in panel if f.days]
        return LifetimeFit(
            model=self.name,
            params={k: round(v, 6) for k, v in params.items()},
            covariance=covariance.tolist() if covariance is not None else None,
            panel=panel_name,
            customers=len(panel),
            repeaters=int((x > 0).sum()),
            observed_from=min(starts) if starts else max(f.as_of for f in panel),
            observed_until=max(f.as_of for f in panel),
            fitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
            log_likelihood=round(ll, 3),
        )

    def forecast(self, fit: LifetimeFit, customer: Features, *, horizon_days: int) -> Forecast:
        c = customer
        args = (c.frequency, float(c.recency), float(c.age))
        alive = float(p_alive(fit.params, *args))
        again = float(p_buy_again(fit.params, horizon_days, *args))
        expected = float(expected_purchases(fit.params, horizon_days, *args))
        p_interval = e_interval = None
        if fit.covariance is not None:
            draws = _draws(fit)
            p = p_buy_again(draws, horizon_days, *args)
            e = expected_purchases(draws, horizon_days, *args)
            p_interval = (round(float(np.quantile(p, 0.05)), 4), round(float(np.quantile(p, 0.95)), 4))
            e_interval = (round(float(np.quantile(e, 0.05)), 4), round(float(np.quantile(e, 0.95)), 4))
        return Forecast(horizon_days, alive, again, expected, p_interval, e_interval)


def _draws(fit: LifetimeFit) -> dict[str, np.ndarray]:
    """Parameter vectors drawn from the fit's asymptotic normal (in logs), always the same ones for a fit."""
    rng = np.random.default_rng(0)
    mean = np.log([fit.params[n] for n in NAMES])
    theta = rng.multivariate_normal(mean, np.asarray(fit.covariance), size=INTERVAL_DRAWS)
    return {n: np.exp(theta[:, i]) for i, n in enumerate(NAMES)}
