"""Strategy tests on twins: campaign files, the statistics on a panel with known answers, the CLI and the API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.api import client_for
from tests.unit.test_behaviour import order, panel_records
from twinchat.cli import main
from twinchat.domain.campaign import (
    BUY,
    CLICK,
    IGNORE,
    UNSUBSCRIBE,
    Campaign,
    CampaignError,
    OfferFit,
    Variant,
    offer_fit,
    offer_prior,
)
from twinchat.domain.control import Use
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService
from twinchat.testing import fake_service

EXAMPLE = Path(__file__).parents[2] / "examples" / "campaign.yaml"
MARKETING = Use("local", "marketing")
TWO = {"name": "t", "variants": {"A": {"text": "a"}, "B": {"text": "b"}}}


def campaign(**more: object) -> Campaign:
    return Campaign.from_dict({**TWO, **more})


def known(rates: dict[str, list[float]]):  # type: ignore[no-untyped-def]
    """A response source where twin c<i> buys variant v with probability rates[v][i], else ignores it."""

    def respond(twin_id: str, variant: Variant) -> dict[str, float]:
        p = rates[variant.key][int(twin_id[1:])]
        return {BUY: p, IGNORE: 1 - p}

    return respond


@pytest.fixture
def service(tmp_path: Path) -> TwinService:
    service = fake_service(tmp_path, default_consent=["research", "marketing"])
    countries = ("United Kingdom", "France", "Germany")
    records = [
        RawRecord(r.file, r.line, {**r.record, "country": countries[int(r.record["customer_id"][1:]) % 3]})
        for r in panel_records(200)
    ]
    service.ingest_records(records, panel="panel")
    return service


def ids(service: TwinService) -> list[str]:
    return [t.twin_id for t in service.twins(panel="panel")]


# --- campaign files ------------------------------------------------------------------------------------


def test_the_shipped_example_parses() -> None:
    c = Campaign.from_file(EXAMPLE)
    assert c.name == "spring-cakestand" and c.channel == "email" and c.panel == "online-retail"
    assert [(v.key, v.price) for v in c.variants] == [("A", 8.5), ("B", 10.6)]
    assert c.segments == ("country", "churn_risk") and c.compare == ("A", "B") and c.responding == (BUY,)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: t\nvariants: {A: {text: a}}\n", "variants"),
        ("name: t\nvariants: {A: {text: a}, B: {price: 2}}\n", "variants.B.text"),
        ("name: t\nvariants: {A: {text: a, price: ten}, B: b}\n", "variants.A.price"),
        ("name: t\nvariants: {A: {text: a, colour: red}, B: b}\n", "variants.A.colour"),
        ("name: t\nchannel: pigeon\nvariants: {A: a, B: b}\n", "channel"),
        ("name: t\nvariants: {A: a, B: b}\nsegments: [country, shoe_size]\n", "segments.1"),
        ("name: t\nvariants: {A: a, B: b}\ncompare: [A, C]\n", "compare"),
        ("name: t\nvariants: {A: a, B: b}\nresponse: [would ignore]\n", "response"),
        ("name: t\nvariants: {A: a, B: b}\nbudget: 3\n", "budget"),
        ("variants: {A: a, B: b}\n", "name"),
        ("- just a list\n", "campaign"),
        ("name: [unclosed\n", "file"),
    ],
)
def test_a_bad_campaign_file_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CampaignError) as caught:
        Campaign.from_file(path)
    assert caught.value.field == field and str(caught.value).startswith(f"{path}: {field}: ")
    with pytest.raises(CampaignError, match="not found"):
        Campaign.from_file(tmp_path / "missing.yaml")


# --- the statistics on known answers ------------------------------------------------------------------


def test_rates_intervals_and_the_ab_difference_match_known_probabilities(service: TwinService) -> None:
    twins = ids(service)
    n = len(twins)
    a = [0.10 + 0.1 * (i % 3) for i in range(n)]  # mean 0.2
    b = [p + 0.1 for p in a]  # every twin 0.1 likelier to respond to B
    doc = service.simulate(campaign(), twins, use=MARKETING, respond=known({"A": a, "B": b}))
    assert doc["simulated"] is True and doc["twins"] == {"asked": n, "answered": n, "refused": 0}
    va, vb = doc["variants"]["A"], doc["variants"]["B"]
    assert va["rate"] == pytest.approx(sum(a) / n, abs=1e-4) and vb["rate"] == pytest.approx(
        sum(b) / n, abs=1e-4
    )
    for v, rate in ((va, 0.2), (vb, 0.3)):
        low, high = v["interval"]
        assert low < rate < high
        binomial = 2 * 1.96 * math.sqrt(rate * (1 - rate) / n)  # the order of the width (see strategy.py)
        assert 0.7 * binomial < high - low < 1.3 * binomial
    c = doc["comparison"]
    assert (c["a"], c["b"]) == ("A", "B") and c["difference"] == pytest.approx(0.1, abs=1e-4)
    assert 0 < c["interval"][0] < 0.1 < c["interval"][1]
    assert c["p_b_better"] > 0.99 and c["p_value"] < 0.01
    assert len(doc["records"]) == 2 * n and all(r["simulated"] for r in doc["records"])


def test_identical_variants_differ_by_nothing_and_a_worse_b_has_the_sign(service: TwinService) -> None:
    twins = ids(service)
    p = [0.05 * (i % 7) for i in range(len(twins))]
    same = service.simulate(campaign(), twins, use=MARKETING, respond=known({"A": p, "B": p}))
    c = same["comparison"]
    assert c["difference"] == 0 and c["interval"][0] <= 0 <= c["interval"][1] and c["p_value"] == 1.0
    worse = service.simulate(
        campaign(), twins, use=MARKETING, respond=known({"A": p, "B": [x * 0.5 for x in p]})
    )["comparison"]
    assert worse["difference"] < 0 and worse["interval"][1] < 0 and worse["p_b_better"] < 0.01


def test_segments_sum_up_to_the_whole_panel(service: TwinService) -> None:
    twins = ids(service)
    p = [0.02 * (i % 10) for i in range(len(twins))]
    doc = service.simulate(
        campaign(segments=["country", "orders"]), twins, use=MARKETING, respond=known({"A": p, "B": p[::-1]})
    )
    for groups in doc["segments"].values():
        assert sum(g["n"] for g in groups.values()) == len(twins)
        for key in ("A", "B"):
            weighted = sum(g["n"] * g["variants"][key]["rate"] for g in groups.values())
            assert weighted == pytest.approx(len(twins) * doc["variants"][key]["rate"], abs=1e-2)
    assert set(doc["segments"]["country"]) == {"United Kingdom", "France", "Germany"}
    assert set(doc["segments"]["orders"]) == {"5+"}  # every customer of this panel ordered often


def test_customers_without_marketing_consent_are_refused_counted_and_audited(service: TwinService) -> None:
    service.set_consent("c3", "marketing", False)
    twins = ids(service)
    doc = service.simulate(
        campaign(), twins, use=MARKETING, respond=known({"A": [0.2] * 200, "B": [0.2] * 200})
    )
    assert doc["twins"] == {"asked": len(twins), "answered": len(twins) - 1, "refused": 1}
    assert doc["refused"][0]["twin_id"] == "c3" and "marketing" in doc["refused"][0]["reason"]
    assert "c3" not in {r["twin_id"] for r in doc["records"]}
    assert [e.detail for e in service.audit(twin_id="c3") if e.action == "refused"] == [
        {"attempted": "simulate"}
    ]
    used = [e for e in service.audit(twin_id="c1") if e.action == "simulate"]
    assert used and used[-1].purpose == "marketing" and used[-1].detail == {"campaign": "t"}


# --- the responses a twin's history gives -----------------------------------------------------------------


def test_an_offer_about_what_a_customer_buys_gets_more_buyers(service: TwinService) -> None:
    service.fit_lifetime()
    c = campaign(variants={"A": {"text": "10% off red candles"}, "B": {"text": "Garden gloves for spring"}})
    doc = service.simulate(c, ids(service), use=MARKETING)
    assert doc["variants"]["A"]["rate"] > 2 * doc["variants"]["B"]["rate"]
    record = next(r for r in doc["records"] if r["variant"] == "A" and r["evidence"])
    assert record["reason"].startswith("I would") and "shopping days" in record["reason"]
    assert set(record["distribution"]) == {BUY, CLICK, IGNORE, UNSUBSCRIBE}
    assert record["parts"][0]["name"] == "behaviour" and record["segments"] == {}
    assert sum(record["distribution"].values()) == pytest.approx(1.0, abs=1e-3)


def test_earlier_answers_to_the_campaign_question_join_through_the_choice_model(service: TwinService) -> None:
    from tests.support.api import survey_records

    c = campaign()
    qid, text = c.question(c.variants[0])
    service.ingest_records(survey_records(qid, text, [(f"c{i}", BUY) for i in range(0, 40, 2)]))
    doc = service.simulate(c, ["c0", "c1"], use=MARKETING)
    own = next(r for r in doc["records"] if r["twin_id"] == "c0" and r["variant"] == "A")
    assert [p["name"] for p in own["parts"]] == ["behaviour", "panel", "own", "similar"][: len(own["parts"])]
    assert own["parts"][0]["weight"] == 0.5 and own["p_response"] > 0.3 > own["parts"][0]["distribution"][BUY]
    assert any(e["event_id"].startswith("survey") or "Q:" in e["text"] for e in own["evidence"])
    other = next(r for r in doc["records"] if r["twin_id"] == "c0" and r["variant"] == "B")
    assert [p["name"] for p in other["parts"]] == ["behaviour"]  # nobody answered B's question


def test_offer_fit_reads_interest_price_and_activity() -> None:
    from twinchat.domain.behaviour import purchase_days
    from twinchat.domain.events import Event

    days = purchase_days(
        Event.from_record(r)
        for r in (order("c", "2011-01-01", "1", "CAKE STAND"), order("c", "2011-02-01", "2", "RED MUG"))
    )
    cheap = offer_fit(Variant("A", "20% off cake stands", 5.0), days, average_order=20.0, p_buy_again=0.8)
    dear = offer_fit(Variant("B", "20% off cake stands", 80.0), days, average_order=20.0, p_buy_again=0.8)
    assert cheap.interest == 0.5 and cheap.price_fit == 1.0 and dear.price_fit == 0.5
    assert cheap.activity == 0.8 and len(cheap.matched) == 1
    assert offer_prior(cheap, "email")[BUY] > offer_prior(dear, "email")[BUY]
    nothing = offer_prior(OfferFit(0.0, 1.0, 0.5, (), ""), "sms")
    assert nothing[UNSUBSCRIBE] > offer_prior(OfferFit(1.0, 1.0, 0.5, (), ""), "sms")[UNSUBSCRIBE]


# --- the command and the API -------------------------------------------------------------------------------


def test_simulate_writes_results_report_and_chart(
    service: TwinService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("twinchat.cli._service", lambda settings=None: service)
    service.set_consent("c5", "marketing", False)
    out = tmp_path / "run"
    assert main(["simulate", str(EXAMPLE), "--panel", "panel", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "campaign spring-cakestand (simulated): 199 twins answered, 1 refused" in printed.out
    assert "B - A:" in printed.out and "left out: twin c5" in printed.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["simulated"] is True and doc["campaign"]["panel"] == "panel" and doc["date"]
    assert set(doc["variants"]) == {"A", "B"} and set(doc["segments"]) == {"country", "churn_risk"}
    assert doc["model"]["behaviour_weight"] and len(doc["records"]) == 2 * 199
    report = (out / "report.md").read_text()
    assert "**Simulated.**" in report and "## B against A" in report and "By churn risk" in report
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_refuses_a_bad_file_and_a_missing_panel(
    service: TwinService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("twinchat.cli._service", lambda settings=None: service)
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nvariants: {A: {text: a, price: -1}, B: b}\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}: variants.A.price: must be a number of 0 or more" in capsys.readouterr().err
    bad.write_text("name: x\nvariants: {A: a, B: b}\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "panel: name the panel here or with --panel" in capsys.readouterr().err
    assert main(["simulate", str(bad), "--panel", "nobody", "--out", str(tmp_path / "o")]) == 1


def test_the_api_simulates_for_product_keys_with_consent_and_limits(service: TwinService) -> None:
    service.set_consent("c7", "marketing", False)
    body = {"campaign": json.loads(json.dumps(Campaign.from_file(EXAMPLE).to_dict())), "panel": "panel"}
    product = client_for(service, "product")
    response = product.post("/v1/simulations", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["simulated"] is True and doc["twins"]["refused"] == 1 and doc["purpose"] == "marketing"
    assert doc["comparison"]["a"] == "A" and doc["variants"]["B"]["interval"]
    assert client_for(service, "researcher").post("/v1/simulations", json=body).status_code == 403
    customer = client_for(service, "customer", twin_id="c1")
    assert customer.post("/v1/simulations", json=body).status_code == 403
    bad = product.post("/v1/simulations", json={**body, "campaign": {**body["campaign"], "channel": "fax"}})
    assert bad.status_code == 422 and "campaign: channel:" in bad.text
    assert product.post("/v1/simulations", json={**body, "panel": "none"}).status_code == 404
    few = product.post("/v1/simulations", json={"campaign": body["campaign"], "twin_ids": ["c1", "c2"]})
    assert few.status_code == 200 and few.json()["twins"]["answered"] == 2
    service.settings.api_max_items = 10
    assert product.post("/v1/simulations", json=body).status_code == 413


def test_a_repeat_purchase_panel_with_a_fit_gets_churn_segments(service: TwinService) -> None:
    service.fit_lifetime()
    later = RawRecord("x", 1, order("c0", "2012-01-10", "late", "RED CANDLE"))
    service.ingest_records([later])
    doc = service.simulate(campaign(segments=["churn_risk"]), ids(service)[:30], use=MARKETING)
    assert set(doc["segments"]["churn_risk"]) <= {"low", "medium", "high"}
