"""Purchase-day features, interest drift per category, and the predictions a twin gets (service and API)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests.support.api import client_for
from twinchat.domain.behaviour import (
    PurchaseDay,
    category_trends,
    features,
    is_order,
    purchase_days,
    purchases_between,
)
from twinchat.domain.control import ConsentDenied, Use
from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService
from twinchat.testing import fake_service


def order(customer: str, day: str, invoice: str, *products: str, kind: str = "order") -> dict:
    return {
        "customer_id": customer,
        "text": f"Order {invoice} on {day}: {', '.join(products)}",
        "source": "purchase",
        "kind": kind,
        "timestamp": f"{day}T10:00:00",
        "invoice": invoice,
        "products": list(products) or ["RED MUG"],
    }


def events(*records: dict) -> list[Event]:
    return [Event.from_record(r) for r in records]


def test_purchase_days_join_a_days_orders_and_leave_out_cancellations() -> None:
    days = purchase_days(
        events(
            order("c", "2011-01-05", "2", "BLUE MUG"),
            order("c", "2011-01-01", "1", "RED MUG"),
            order("c", "2011-01-05", "3", "TEAPOT"),
            order("c", "2011-01-07", "C4", "RED MUG", kind="cancellation"),
            {"customer_id": "c", "text": "Loved it", "source": "review", "timestamp": "2011-01-08"},
        )
    )
    assert [d.day.isoformat() for d in days] == ["2011-01-01", "2011-01-05"]
    assert len(days[1].event_ids) == 2 and set(days[1].products) == {"BLUE MUG", "TEAPOT"}
    negative = Event.from_record({**order("c", "2011-02-01", "9"), "quantity": -2})
    assert not is_order(negative)


def test_features_count_repeat_purchases_recency_and_age_as_of_a_date() -> None:
    days = [PurchaseDay(date(2011, 1, d), (f"e{d}",), ()) for d in (1, 11, 21)]
    f = features(days, as_of=date(2011, 1, 31))
    assert f is not None and (f.frequency, f.recency, f.age) == (2, 20, 30)
    # as of an earlier date only the purchases by then count
    early = features(days, as_of=date(2011, 1, 15))
    assert early is not None and (early.frequency, early.recency, early.age) == (1, 10, 14)
    assert features(days, as_of=date(2010, 12, 31)) is None
    assert purchases_between(days, date(2011, 1, 1), date(2011, 1, 21)) == 2


def test_category_trends_compare_shares_of_the_older_and_newer_half() -> None:
    def day(d: int, *products: str) -> PurchaseDay:
        return PurchaseDay(date(2011, 1, d), (f"e{d}",), products)

    history = [
        day(1, "RED CANDLE", "BLUE MUG"),
        day(2, "WHITE CANDLE"),
        day(3, "PINK CANDLE", "BLUE MUG"),
        day(4, "BLUE MUG", "GREEN MUG"),
        day(5, "TEAPOT MUG"),
        day(6, "CANDLE HOLDER", "MUG"),
    ]
    trends = category_trends(history)
    assert trends is not None and (trends.earlier_days, trends.recent_days) == (3, 3)
    found = {c.category: (c.trend, c.earlier, c.recent) for c in trends.categories}
    assert found["candles & lights"] == ("fading", 3, 1)
    assert found["kitchen & tableware"] == ("rising", 2, 3)  # from 2 of 3 days to 3 of 3
    assert category_trends(history[:3]) is None  # too few days to compare halves


def test_a_stable_interest_is_stable() -> None:
    history = [PurchaseDay(date(2011, 1, d), (f"e{d}",), ("RED CANDLE",)) for d in range(1, 9)]
    trends = category_trends(history)
    assert trends is not None
    assert [(c.category, c.trend, c.earlier, c.recent) for c in trends.categories] == [
        ("candles & lights", "stable", 4, 4)
    ]


# --- the service and the API ----------------------------------------------------------------------------


def panel_records(n: int = 60) -> list[RawRecord]:
    """A small panel: customer i buys every (i % 6 + 2) weeks from January, some stop half way."""
    rows = []
    for i in range(n):
        gap, stops = (i % 6 + 2) * 7, 150 if i % 3 == 0 else 330
        for k, day in enumerate(range(0, stops, gap)):
            when = date.fromordinal(date(2011, 1, 1).toordinal() + day).isoformat()
            rows.append(order(f"c{i}", when, f"{i}-{k}", "RED CANDLE" if k % 2 else "BLUE MUG"))
    return [RawRecord("panel", i, r) for i, r in enumerate(rows)]


@pytest.fixture
def service(tmp_path: Path) -> TwinService:
    service = fake_service(tmp_path, default_consent=["research", "marketing"])
    service.ingest_records(panel_records())
    service.ingest_records([RawRecord("x", 1, {"customer_id": "quiet", "text": "Asked about opening hours"})])
    return service


def test_predictions_need_a_fit_then_carry_evidence_and_confidence(service: TwinService) -> None:
    before = service.predictions("c1")
    assert before["available"] is False and "twinchat predict fit" in before["reason"]
    fit = service.fit_lifetime()
    assert fit.customers == 60 and fit.model == "bg/nbd"
    p = service.predictions("c1")
    assert p["available"] and p["simulated"] is True and p["model"] == "bg/nbd"
    assert 0 <= p["p_buy_again_90d"] <= p["p_alive"] <= 1 and p["expected_purchases_90d"] > 0
    assert p["churn_risk"]["level"] in ("low", "medium", "high")
    assert p["as_of"] == fit.observed_until.isoformat()
    assert p["evidence"]["purchase_days"] == len(p["evidence"]["purchases"]) > 1
    assert p["confidence"]["level"] == "low"  # a panel of 60 is too small to trust much
    assert p["category_trends"]["available"]
    audit = [e for e in service.audit(twin_id="c1") if e.action == "predict"]
    assert audit[-1].purpose == "marketing" and len(audit[-1].evidence) == p["evidence"]["purchase_days"]


def test_a_customer_who_stopped_has_a_higher_churn_risk(service: TwinService) -> None:
    service.fit_lifetime()
    stopped, going = service.predictions("c6"), service.predictions("c1")  # same gap; c6 stopped in May
    assert stopped["churn_risk"]["value"] > going["churn_risk"]["value"]


def test_a_twin_without_purchases_gets_no_number(service: TwinService) -> None:
    service.fit_lifetime()
    p = service.predictions("quiet")
    assert p == {"available": False, "reason": p["reason"], "simulated": True}
    assert "no purchases" in p["reason"]


def test_predictions_are_refused_without_marketing_consent_and_the_refusal_audited(
    service: TwinService,
) -> None:
    service.fit_lifetime()
    service.set_consent("c2", "marketing", False)
    with pytest.raises(ConsentDenied):
        service.predictions("c2", use=Use("local", "marketing"))
    refused = [e for e in service.audit(twin_id="c2") if e.action == "refused"]
    assert refused and refused[-1].detail == {"attempted": "predict"}
    # and the next fit leaves that customer out
    assert service.fit_lifetime().customers == 59


def test_new_events_change_the_prediction_without_a_refit(service: TwinService) -> None:
    fit = service.fit_lifetime()
    before = service.predictions("c6")
    later = date.fromordinal(fit.observed_until.toordinal() + 1).isoformat()
    service.ingest_records([RawRecord("new", 1, order("c6", later, "new-1", "BLUE MUG"))])
    after = service.predictions("c6")
    assert after["evidence"]["purchase_days"] == before["evidence"]["purchase_days"] + 1
    assert after["as_of"] == later and after["p_alive"] > before["p_alive"]


def test_the_api_serves_predictions_to_product_keys_and_refuses_researchers(service: TwinService) -> None:
    service.fit_lifetime()
    product = client_for(service, "product")
    response = product.get("/v1/twins/c1/predictions")
    assert response.status_code == 200, response.text
    assert response.json()["available"] and response.json()["simulated"] is True
    assert product.get("/v1/twins/nobody/predictions").status_code == 404
    assert product.get("/v1/twins/c1/predictions", params={"horizon_days": 0}).status_code in (400, 422)
    assert client_for(service, "researcher").get("/v1/twins/c1/predictions").status_code == 403
    service.set_consent("c1", "marketing", False)
    refused = product.get("/v1/twins/c1/predictions")
    assert refused.status_code == 403 and "marketing" in refused.text
    # a customer sees their own twin's predictions, not another's
    own = client_for(service, "customer", twin_id="c3")
    assert own.get("/v1/twins/c3/predictions").status_code == 200
    assert own.get("/v1/twins/c1/predictions").status_code == 404
