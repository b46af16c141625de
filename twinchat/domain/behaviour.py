"""Behaviour from purchase history: what a customer-lifetime model needs, interest drift, and the answer shown.

Plain Python. A *purchase* here is a day with at least one order that was not cancelled: customer-lifetime
models (Fader, Hardie & Lee 2005) count transactions in discrete periods, and an order split over two
invoices on one day is one decision to buy. From a customer's purchase days, as of a date:

- ``frequency`` x: repeat purchases (purchase days after the first);
- ``recency`` t_x: days from the first to the last purchase day;
- ``age`` T: days from the first purchase day to the date the prediction is made as of.

The model that turns these into probabilities lives behind the ``LifetimeModel`` port (twinchat.ports); the
back-test (evals/backtest.py) and the twins' predictions both build their features here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date
from typing import Any

from twinchat.domain.categories import CategoryMap, load_categories
from twinchat.domain.events import Event

HORIZON_DAYS = 90
MIN_TREND_DAYS = 4  # purchase days needed before the older and newer half of a history are compared
TREND_SHIFT = 0.25  # change in a category's share of purchase days that counts as rising or fading
TREND_MIN_COUNT = 2  # ... when the side it rises to, or fades from, has at least this many purchase days
TRENDS_SHOWN = 10
CANCEL_KINDS = ("cancellation", "refund", "return")
FIT_VERSION = 1


@dataclass(frozen=True)
class PurchaseDay:
    day: date
    event_ids: tuple[str, ...]
    products: tuple[str, ...]


@dataclass(frozen=True)
class Features:
    """A customer's purchase history as the lifetime model sees it (all times in days).

    >>> f = features([PurchaseDay(date(2011, 1, 1), ("e1",), ()), PurchaseDay(date(2011, 1, 11), ("e2",), ())],
    ...              as_of=date(2011, 1, 31))
    >>> f.frequency, f.recency, f.age
    (1, 10, 30)
    """

    frequency: int
    recency: int
    age: int
    as_of: date
    days: tuple[PurchaseDay, ...] = ()


def is_order(event: Event) -> bool:
    """A purchase event that is an order, not a cancellation, refund or return (nor a negative quantity)."""
    if event.source != "purchase":
        return False
    quantity = event.attributes.get("quantity")
    try:
        negative = quantity is not None and not isinstance(quantity, bool) and float(quantity) < 0
    except (TypeError, ValueError):
        negative = False
    return (event.kind or "").lower() not in CANCEL_KINDS and not negative


def purchase_days(events: Iterable[Event], *, until: date | None = None) -> list[PurchaseDay]:
    """The customer's purchase days, oldest first, up to and including ``until``; undated orders are left out."""
    by_day: dict[date, tuple[list[str], list[str]]] = {}
    for event in events:
        if not is_order(event) or event.timestamp is None:
            continue
        day = event.timestamp.astimezone(UTC).date()
        if until is not None and day > until:
            continue
        ids, products = by_day.setdefault(day, ([], []))
        ids.append(event.event_id)
        products.extend(_products(event))
    return [PurchaseDay(d, tuple(sorted(by_day[d][0])), tuple(by_day[d][1])) for d in sorted(by_day)]


def features(days: Sequence[PurchaseDay], *, as_of: date) -> Features | None:
    """x, t_x and T as of a date from the purchase days up to it; None without a purchase by then."""
    kept = tuple(d for d in days if d.day <= as_of)
    if not kept:
        return None
    first, last = kept[0].day, kept[-1].day
    return Features(len(kept) - 1, (last - first).days, (as_of - first).days, as_of, kept)


def purchases_between(days: Sequence[PurchaseDay], start: date, end: date) -> int:
    """Purchase days after ``start`` up to and including ``end`` (a holdout period)."""
    return sum(1 for d in days if start < d.day <= end)


# --- interest drift per category ---------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryTrend:
    """One category's share of the older and the newer half of a customer's purchase days."""

    category: str
    trend: str  # rising, stable, fading
    earlier: int  # purchase days naming the category in the older half
    recent: int  # ... in the newer half
    earlier_share: float
    recent_share: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trends:
    earlier_days: int
    recent_days: int
    earlier_period: tuple[str, str]
    recent_period: tuple[str, str]
    categories: tuple[CategoryTrend, ...]


def category_trends(days: Sequence[PurchaseDay], categories: CategoryMap | None = None) -> Trends | None:
    """Interest drift: each category's share of the older half of the purchase days against the newer half.

    Shares, not counts, so that a customer who buys less often overall (that is churn, reported apart) is
    not read as losing interest in everything. Rising: the share grows by ``TREND_SHIFT`` or more and the
    newer half has at least ``TREND_MIN_COUNT`` days with the category; fading: the mirror image; else
    stable. None below ``MIN_TREND_DAYS`` purchase days: two halves of one day each say nothing.

    >>> day = lambda d, *p: PurchaseDay(date(2011, 1, d), (f"e{d}",), p)
    >>> t = category_trends([day(1, "RED CANDLE"), day(2, "RED CANDLE"), day(3, "BLUE MUG"), day(4, "BLUE MUG")])
    >>> [(c.category, c.trend, c.earlier, c.recent) for c in t.categories]
    [('candles & lights', 'fading', 2, 0), ('kitchen & tableware', 'rising', 0, 2)]
    """
    if len(days) < MIN_TREND_DAYS:
        return None
    categories = categories or load_categories()
    split = len(days) - len(days) // 2  # the older half takes the middle day of an odd count
    halves = (days[:split], days[split:])
    counts: list[dict[str, int]] = [{}, {}]
    for half, count in zip(halves, counts, strict=True):
        for d in half:
            named = {
                c
                for p in d.products
                if not categories.is_fee(p)
                for c in categories.categorize(p)
                if c != categories.other
            }
            for c in named:
                count[c] = count.get(c, 0) + 1
    found = []
    for name in set(counts[0]) | set(counts[1]):
        before, after = counts[0].get(name, 0), counts[1].get(name, 0)
        s0, s1 = before / len(halves[0]), after / len(halves[1])
        if s1 - s0 >= TREND_SHIFT and after >= TREND_MIN_COUNT:
            trend = "rising"
        elif s0 - s1 >= TREND_SHIFT and before >= TREND_MIN_COUNT:
            trend = "fading"
        else:
            trend = "stable"
        found.append(CategoryTrend(name, trend, before, after, round(s0, 3), round(s1, 3)))
    found.sort(key=lambda c: (-(c.earlier + c.recent), c.category))
    return Trends(
        len(halves[0]),
        len(halves[1]),
        (halves[0][0].day.isoformat(), halves[0][-1].day.isoformat()),
        (halves[1][0].day.isoformat(), halves[1][-1].day.isoformat()),
        tuple(found[:TRENDS_SHOWN]),
    )


# --- the fitted model and its forecasts --------------------------------------------------------------


@dataclass(frozen=True)
class LifetimeFit:
    """A lifetime model fitted on a panel: its parameters, their uncertainty and what it was fitted on."""

    model: str  # "bg/nbd"
    params: dict[str, float]
    covariance: list[list[float]] | None  # of the log parameters, for intervals; None when not estimable
    panel: str | None  # None: every real twin
    customers: int
    repeaters: int
    observed_from: date
    observed_until: date  # the panel's last purchase day: predictions are made as of it (or later)
    fitted_at: str
    log_likelihood: float
    version: int = FIT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["observed_from"], data["observed_until"] = (
            self.observed_from.isoformat(),
            self.observed_until.isoformat(),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LifetimeFit:
        if not isinstance(data, dict) or data.get("version") != FIT_VERSION:
            raise ValueError(
                f"lifetime fit version {data.get('version')!r}; refit with `twinchat predict fit`"
            )
        values = dict(data)
        values["observed_from"] = date.fromisoformat(values["observed_from"])
        values["observed_until"] = date.fromisoformat(values["observed_until"])
        return cls(**values)


@dataclass(frozen=True)
class Forecast:
    """What the model says of one customer over ``horizon_days``; intervals: 90% over parameter uncertainty."""

    horizon_days: int
    p_alive: float
    p_buy_again: float
    expected_purchases: float
    p_buy_again_interval: tuple[float, float] | None = None
    expected_purchases_interval: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def churn_level(risk: float) -> str:
    return "low" if risk < 0.3 else "medium" if risk < 0.7 else "high"


def confidence(f: Features, fit: LifetimeFit) -> dict[str, Any]:
    """How far to trust a forecast: from how much of the customer's own history it rests on."""
    n = f.frequency + 1
    level = "high" if n >= 5 else "medium" if n >= 2 else "low"
    if fit.customers < 100:
        level = "low"
    why = (
        f"{n} purchase day{'s' if n != 1 else ''} of this customer"
        + (", one purchase: the forecast leans on the panel's averages" if n == 1 else "")
        + f"; model fitted on {fit.customers} customers"
    )
    return {"level": level, "basis": why}


def not_available(reason: str, **more: Any) -> dict[str, Any]:
    """The honest answer when there is nothing to predict from: no number, a reason."""
    return {"available": False, "reason": reason, "simulated": True, **more}


def predictions_document(
    f: Features, forecast: Forecast, fit: LifetimeFit, trends: Trends | None
) -> dict[str, Any]:
    """The ``predictions`` object of `twinchat show --json` and GET /v1/twins/{id}/predictions."""
    conf = confidence(f, fit)
    if forecast.p_buy_again_interval is not None:
        conf["p_buy_again_90"] = list(forecast.p_buy_again_interval)
    if forecast.expected_purchases_interval is not None:
        conf["expected_purchases_90"] = list(forecast.expected_purchases_interval)
    return {
        "available": True,
        "simulated": True,
        "model": fit.model,
        "fitted_on": {
            "panel": fit.panel,
            "customers": fit.customers,
            "repeat_customers": fit.repeaters,
            "from": fit.observed_from.isoformat(),
            "until": fit.observed_until.isoformat(),
            "fitted_at": fit.fitted_at,
            "params": fit.params,
        },
        "as_of": f.as_of.isoformat(),
        "horizon_days": forecast.horizon_days,
        "p_buy_again_90d": _round(forecast.p_buy_again),
        "expected_purchases_90d": _round(forecast.expected_purchases),
        "p_alive": _round(forecast.p_alive),
        # Lapse risk: no purchase within the horizon, whether the customer left or only buys rarely. 1 - P(alive)
        # alone says nothing where the panel shows no dropout (BG/NBD then reduces to NBD, P(alive) = 1).
        "churn_risk": {
            "value": _round(1 - forecast.p_buy_again),
            "level": churn_level(1 - forecast.p_buy_again),
            "definition": f"P(no purchase in the next {forecast.horizon_days} days)",
        },
        "category_trends": trends_document(trends),
        "confidence": conf,
        "evidence": evidence_document(f),
    }


def trends_document(trends: Trends | None) -> dict[str, Any]:
    if trends is None:
        return {
            "available": False,
            "reason": f"not enough history: fewer than {MIN_TREND_DAYS} purchase days to compare",
        }
    return {
        "available": True,
        "rule": f"share of purchase days, older half against newer half; a change of {TREND_SHIFT:.0%} or "
        f"more on at least {TREND_MIN_COUNT} days is rising or fading",
        "earlier": {
            "days": trends.earlier_days,
            "from": trends.earlier_period[0],
            "to": trends.earlier_period[1],
        },
        "recent": {
            "days": trends.recent_days,
            "from": trends.recent_period[0],
            "to": trends.recent_period[1],
        },
        "categories": [c.to_dict() for c in trends.categories],
    }


def evidence_document(f: Features) -> dict[str, Any]:
    return {
        "purchase_days": len(f.days),
        "frequency": f.frequency,
        "recency_days": f.recency,
        "age_days": f.age,
        "first_purchase": f.days[0].day.isoformat(),
        "last_purchase": f.days[-1].day.isoformat(),
        "purchases": [{"date": d.day.isoformat(), "event_ids": list(d.event_ids)} for d in f.days],
    }


def evidence_ids(f: Features) -> list[str]:
    return [e for d in f.days for e in d.event_ids]


def _products(event: Event) -> list[str]:
    value = event.attributes.get("products", event.attributes.get("product"))
    items = value if isinstance(value, list) else [value]
    return [" ".join(str(x).split()) for x in items if isinstance(x, str) and x.strip()]


def _round(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else x
