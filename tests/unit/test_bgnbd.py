"""BG/NBD on data with a known answer: a population simulated with known parameters, and limiting cases."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from twinchat.adapters import bgnbd
from twinchat.domain.behaviour import Features

PARAMS = {"r": 0.25, "alpha": 20.0, "a": 0.8, "b": 2.5}


def simulate_times(n: int, params: dict[str, float], horizon: float, seed: int) -> list[list[float]]:
    """The BG/NBD story, customer by customer: Poisson purchases while alive, dropout after each one. Each
    customer's repeat purchase times after a first purchase at 0, up to ``horizon``."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(params["r"], 1 / params["alpha"], n)
    dropout = rng.beta(params["a"], params["b"], n)
    customers = []
    for i in range(n):
        times, t = [], 0.0
        while True:
            t += rng.exponential(1 / rates[i])
            if t > horizon:
                break
            times.append(t)
            if rng.random() < dropout[i]:
                break
        customers.append(times)
    return customers


def cut(customers: list[list[float]], T: float) -> tuple[np.ndarray, ...]:  # noqa: N803
    """x, t_x, T of every customer observed up to T."""
    seen = [[t for t in times if t <= T] for times in customers]
    return (
        np.array([len(s) for s in seen]),
        np.array([max(s, default=0.0) for s in seen]),
        np.full(len(seen), T),
    )


def simulate(n: int, params: dict[str, float], T: float, seed: int) -> tuple[np.ndarray, ...]:  # noqa: N803
    return cut(simulate_times(n, params, T, seed), T)


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, ...]:
    return simulate(4000, PARAMS, 270.0, seed=1)


def test_the_fit_recovers_the_parameters_of_a_simulated_population(
    population: tuple[np.ndarray, ...],
) -> None:
    params, covariance, ll = bgnbd.fit(*population)
    assert covariance is not None and np.isfinite(ll)
    errors = np.sqrt(np.diag(covariance))  # of the log parameters
    for name in ("r", "alpha"):  # the purchase process is well identified
        assert params[name] == pytest.approx(PARAMS[name], rel=0.2), name
    # a and b less so, one at a time; the mean dropout probability a / (a + b) is
    mean_dropout = params["a"] / (params["a"] + params["b"])
    assert mean_dropout == pytest.approx(PARAMS["a"] / (PARAMS["a"] + PARAMS["b"]), rel=0.2)
    for i, name in enumerate(bgnbd.NAMES):
        # each within three standard errors: the uncertainty the intervals use is honest
        assert abs(np.log(params[name]) - np.log(PARAMS[name])) < 3 * errors[i], name


def test_forecasts_of_the_fit_match_what_the_simulated_customers_then_do() -> None:
    # Simulate 270 + 90 days, fit on the first 270, compare the total predicted with the total done after.
    customers = simulate_times(3000, PARAMS, 360.0, seed=2)
    x, tx, T = cut(customers, 270.0)
    done_after = cut(customers, 360.0)[0] - x
    params, _, _ = bgnbd.fit(x, tx, T)
    predicted = bgnbd.expected_purchases(params, 90.0, x, tx, T)
    assert predicted.sum() == pytest.approx(done_after.sum(), rel=0.15)
    # and per customer, better than nothing: the correlation of predicted and done is clearly positive
    assert np.corrcoef(predicted, done_after)[0, 1] > 0.5


def test_p_alive_is_one_without_repeat_purchases_and_highest_right_after_one() -> None:
    # In BG/NBD a customer can drop out only just after a purchase: with none after the first, P(alive) = 1;
    # right after the x-th, P(alive) = 1 / (1 + a / (b + x - 1)), the chance that purchase was not the last.
    assert float(bgnbd.p_alive(PARAMS, 0, 0.0, 200.0)) == 1.0
    assert float(bgnbd.p_alive(PARAMS, 5, 200.0, 200.0)) == pytest.approx(1 / (1 + 0.8 / (2.5 + 4)))
    assert float(bgnbd.p_alive(PARAMS, 5, 200.0, 200.0)) > float(bgnbd.p_alive(PARAMS, 5, 199.0, 200.0))


def test_p_alive_falls_with_time_since_the_last_purchase() -> None:
    values = [float(bgnbd.p_alive(PARAMS, 3, tx, 300.0)) for tx in (300.0, 200.0, 100.0, 20.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 0.2


def test_expected_purchases_grow_with_frequency_and_horizon() -> None:
    by_frequency = [float(bgnbd.expected_purchases(PARAMS, 90, x, 250.0, 260.0)) for x in (1, 3, 6, 12)]
    assert by_frequency == sorted(by_frequency) and by_frequency[0] > 0
    by_horizon = [float(bgnbd.expected_purchases(PARAMS, t, 3, 250.0, 260.0)) for t in (30, 90, 365)]
    assert by_horizon == sorted(by_horizon)


def test_buying_again_is_a_probability_below_p_alive() -> None:
    x, tx, T = np.array([0, 1, 4, 10]), np.array([0.0, 50.0, 200.0, 250.0]), np.full(4, 260.0)
    again = bgnbd.p_buy_again(PARAMS, 90, x, tx, T)
    alive = bgnbd.p_alive(PARAMS, x, tx, T)
    assert np.all((again >= 0) & (again <= alive))
    # P(at least one) is never above the expected count
    assert np.all(again <= bgnbd.expected_purchases(PARAMS, 90, x, tx, T) + 1e-9)


def test_the_model_fits_features_and_forecasts_with_intervals(population: tuple[np.ndarray, ...]) -> None:
    x, tx, T = population
    as_of = date(2011, 9, 1)
    panel = [Features(int(a), int(b), int(c), as_of) for a, b, c in zip(x, tx, T, strict=True)]
    model = bgnbd.BgNbdModel()
    fit = model.fit(panel, panel_name="sim")
    assert (fit.customers, fit.panel, fit.observed_until) == (4000, "sim", as_of)
    forecast = model.forecast(fit, Features(4, 250, 270, as_of), horizon_days=90)
    low, high = forecast.p_buy_again_interval or (None, None)
    assert low is not None and high is not None and low <= forecast.p_buy_again <= high
    assert 0 < forecast.expected_purchases and forecast.p_alive <= 1


def test_a_fit_without_any_repeat_purchase_is_refused() -> None:
    with pytest.raises(ValueError, match="repeat purchase"):
        bgnbd.fit([0, 0, 0], [0, 0, 0], [10, 20, 30])
