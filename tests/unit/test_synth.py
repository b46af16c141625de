"""The synthetic population generator: determinism by seed, labelling, consistent histories, privacy."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord
from twinchat.importers.online_retail import COLUMNS
from twinchat.services import TwinService
from twinchat.synth.catalogue import Catalogue, read_catalogue
from twinchat.synth.population import SyntheticCustomer, generate, records
from twinchat.synth.privacy import PrivacyViolation, nearest_neighbours
from twinchat.synth.spec import Spec, SpecError, load_spec
from twinchat.testing import fake_service

WORDS = ["RED", "BLUE", "PINK", "VINTAGE", "SPOTTY", "GREEN"]
THINGS = [
    "TEAPOT",
    "CAKE STAND",
    "MUG",
    "CANDLE",
    "PARTY BUNTING",
    "BIRTHDAY CARD",
    "GARDEN TROWEL",
    "SHOPPER BAG",
]


@pytest.fixture(scope="module")
def retail_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Online Retail file: 48 products, 30 customers with a few invoices each."""
    path = tmp_path_factory.mktemp("retail") / "retail.csv"
    products = [
        (f"2{i:04d}", f"{w} {t}", 0.5 + i % 7)
        for i, (w, t) in enumerate((w, t) for w in WORDS for t in THINGS)
    ]
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(COLUMNS)
        for c in range(30):
            for k in range(1 + c % 4):
                invoice = f"5{c:03d}{k}"
                for j in range(1 + (c + k) % 3):
                    code, name, price = products[(c * 7 + k * 5 + j * 11) % len(products)]
                    when = f"2011-{1 + (c + 3 * k) % 12:02d}-{1 + c % 27:02d} 10:00:00"
                    out.writerow(
                        [invoice, code, name, 1 + j * 5, when, price, f"{17000 + c}.0", "United Kingdom"]
                    )
        out.writerow(
            ["C99999", "20000", "RED TEAPOT", -1, "2011-05-01 10:00:00", 1.5, "17001.0", "United Kingdom"]
        )
        out.writerow(
            ["599999", "POST", "POSTAGE", 1, "2011-05-01 10:00:00", 18.0, "17001.0", "United Kingdom"]
        )
    return path


@pytest.fixture(scope="module")
def catalogue(retail_csv: Path) -> Catalogue:
    return read_catalogue(retail_csv)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec()


def population(spec: Spec, catalogue: Catalogue, seed: int, n: int = 12) -> list[SyntheticCustomer]:
    return generate(spec, catalogue, n=n, seed=seed)


def test_the_catalogue_leaves_out_cancellations_and_fees(catalogue: Catalogue) -> None:
    assert len(catalogue.products) == 48
    assert "POST" not in {p.stock_code for p in catalogue.products}
    assert len(catalogue.real_histories) == 30
    assert all(catalogue.basket_sizes) and catalogue.gap_days


def test_the_same_seed_gives_the_same_population_and_another_seed_another(
    spec: Spec, catalogue: Catalogue
) -> None:
    first = list(records(population(spec, catalogue, 7)))
    assert first == list(records(population(spec, catalogue, 7)))
    other = list(records(population(spec, catalogue, 8)))
    assert [r["text"] for r in other] != [r["text"] for r in first]
    assert {r["customer_id"] for r in first} == {f"syn-7-{i:04d}" for i in range(12)}


def test_every_record_is_a_valid_event_labelled_synthetic(spec: Spec, catalogue: Catalogue) -> None:
    events = [Event.from_record(r) for r in records(population(spec, catalogue, 3))]
    assert all(e.attributes["synthetic"] is True for e in events)
    assert {e.source for e in events} >= {"crm", "purchase", "survey"}
    assert all(e.customer_id.startswith("syn-3-") for e in events)


def test_reviews_and_tickets_are_about_products_bought_and_dated_after_the_purchase(
    spec: Spec, catalogue: Catalogue
) -> None:
    customers = population(spec, catalogue, 11, n=40)
    followups = 0
    for c in customers:
        orders = {r["invoice"]: r for r in c.records if r["source"] == "purchase"}
        for r in c.records:
            if r["source"] in ("review", "support"):
                followups += 1
                order = orders[r["invoice"]]
                assert r["product"] in order["products"]
                assert r["stock_code"] in order["stock_codes"]
                assert datetime.fromisoformat(r["timestamp"]) > datetime.fromisoformat(order["timestamp"])
                assert r["product"].lower() in r["text"].lower()
        bought = {code for r in orders.values() for code in r["stock_codes"]}
        assert bought == set().union(*c.baskets)
    assert followups > 0


def test_survey_answers_fit_the_persona(spec: Spec, catalogue: Catalogue) -> None:
    segments = {s.name: s for s in spec.segments}
    for c in population(spec, catalogue, 5, n=20):
        segment = segments[c.segment]
        answers = {r["question_id"]: r["answer"] for r in c.records if r["source"] == "survey"}
        assert answers["synth-age-band"] in segment.age_bands
        assert answers["synth-payment"] in segment.survey["payment"]
        assert answers["synth-delivery-day"] in segment.survey["delivery_day"]


def test_no_synthetic_history_reproduces_a_real_one(spec: Spec, catalogue: Catalogue) -> None:
    customers = population(spec, catalogue, 2, n=40)
    report = nearest_neighbours({c.twin_id: c.baskets for c in customers}, catalogue.real_histories).check()
    assert report.min_distance > 0
    assert 0 < report.median_distance <= 1
    assert report.to_dict()["reproduced"] == 0


def test_a_copy_of_a_real_history_is_caught(catalogue: Catalogue) -> None:
    customer, baskets = next(iter(catalogue.real_histories.items()))
    report = nearest_neighbours({"syn-0-0000": list(baskets)}, catalogue.real_histories)
    assert report.nearest[0].real_customer == customer
    assert (report.min_distance, report.nearest[0].same_sequence) == (0.0, True)
    with pytest.raises(PrivacyViolation, match="syn-0-0000"):
        report.check()


def test_a_copied_run_of_real_orders_is_caught_by_the_ordered_distance(catalogue: Catalogue) -> None:
    # A real customer's orders, in order, padded with other baskets: the item sets differ (Jaccard > 0) and
    # the sequence is not identical, but the whole real sequence is inside the synthetic one.
    customer, baskets = max(catalogue.real_histories.items(), key=lambda kv: (len(kv[1]), kv[0]))
    filler = [b for c, bs in catalogue.real_histories.items() if c != customer for b in bs][:6]
    copied = [filler[0], *baskets[:3], filler[1], *baskets[3:], filler[2]]
    report = nearest_neighbours({"syn-0-0001": copied}, catalogue.real_histories)
    (nearest,) = report.nearest
    assert nearest.distance > 0 and not nearest.same_sequence
    assert nearest.sequence_distance == 0.0
    with pytest.raises(PrivacyViolation, match="syn-0-0001"):
        report.check()
    generated = nearest_neighbours({"syn": list(reversed(filler))}, catalogue.real_histories)
    assert generated.nearest[0].sequence_distance > 0


def ingest(service: TwinService, customers: list[SyntheticCustomer]) -> None:
    rows = [RawRecord("synth", i, r) for i, r in enumerate(records(customers))]
    report = service.ingest_records(rows, panel="syn", synthetic=True)
    assert report.exit_code == 0


def test_synthetic_twins_are_labelled_in_the_registry_listings_and_exports(
    tmp_path: Path, spec: Spec, catalogue: Catalogue
) -> None:
    service = fake_service(tmp_path)
    service.ingest_records([RawRecord("real", 1, {"customer_id": "ann", "text": "Bought a teapot"})])
    ingest(service, population(spec, catalogue, 1, n=3))
    labels = {t.twin_id: t.synthetic for t in service.twins()}
    assert labels == {"ann": False, "syn-1-0000": True, "syn-1-0001": True, "syn-1-0002": True}
    assert all(t.synthetic for t in service.twins(panel="syn"))
    exported = service.export("syn-1-0000")
    assert exported["twin"]["synthetic"] is True
    assert all(e["synthetic"] is True for e in exported["events"])


def test_synthetic_twins_need_no_consent_real_ones_do(
    tmp_path: Path, spec: Spec, catalogue: Catalogue
) -> None:
    from twinchat.domain.control import ConsentDenied, Use

    service = fake_service(tmp_path, default_consent=[])
    service.ingest_records([RawRecord("real", 1, {"customer_id": "ann", "text": "Bought a teapot"})])
    ingest(service, population(spec, catalogue, 1, n=1))
    marketing = Use("analyst", "marketing")
    assert service.authorize("syn-1-0000", marketing, "ask").synthetic
    with pytest.raises(ConsentDenied):
        service.authorize("ann", marketing, "ask")


def test_real_and_synthetic_histories_never_mix(tmp_path: Path) -> None:
    service = fake_service(tmp_path)
    service.ingest_records([RawRecord("real", 1, {"customer_id": "ann", "text": "Bought a teapot"})])
    report = service.ingest_records(
        [RawRecord("synth", 1, {"customer_id": "ann", "text": "Bought a mug"})], synthetic=True
    )
    assert [(p.field, "real customer" in p.reason) for p in report.rejected] == [("customer_id", True)]
    assert service.store.count("ann") == 1 and not service.twin("ann").synthetic
    service.ingest_records(
        [RawRecord("synth", 1, {"customer_id": "syn-x", "text": "Bought a mug"})], synthetic=True
    )
    again = service.ingest_records([RawRecord("real", 2, {"customer_id": "syn-x", "text": "Bought a jug"})])
    assert again.stored == 0 and service.twin("syn-x").synthetic


def test_a_bad_spec_names_the_file_segment_and_field(tmp_path: Path) -> None:
    text = load_spec().path
    bad = tmp_path / "spec.yaml"
    bad.write_text(Path(text).read_text().replace("review_propensity: 0.35", "review_propensity: 3"))
    with pytest.raises(SpecError, match=r"spec.yaml: segment 'home-makers': review_propensity: 3.0 is not"):
        load_spec(bad)


def test_the_synth_command_stores_a_labelled_panel_and_reports_privacy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, retail_csv: Path
) -> None:
    import json

    from twinchat.cli import main

    monkeypatch.setenv("TWINCHAT_EMBEDDER", "hash")
    report = tmp_path / "synth.json"
    argv = [
        "synth",
        "--n",
        "4",
        "--seed",
        "9",
        "--panel",
        "syn",
        "--data",
        str(retail_csv),
        "--report",
        str(report),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "generated 4 synthetic customers" in out and "0 synthetic histories reproduce a real one" in out
    written = json.loads(report.read_text())
    assert written["privacy"]["min_distance"] > 0 and written["ingest"]["new_twins"] == 4
    assert main(argv) == 0  # the same seed again: the same events, all already stored
    assert "stored 0 new events" in capsys.readouterr().out
    assert main(["twins", "--panel", "syn"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 4 and all(line.startswith("syn-9-") and "[synthetic]" in line for line in listed)


def test_llm_wording_keeps_the_facts_and_falls_back_to_the_template(spec: Spec, catalogue: Catalogue) -> None:
    from twinchat.domain.prompts import load_prompt
    from twinchat.synth.population import llm_reword

    prompt = load_prompt(
        Path(__file__).resolve().parents[2] / "prompts", "synth_reword", required=("system", "user")
    )
    asked: list[str] = []

    def model(messages: list) -> str:
        asked.append(messages[-1].content)
        product = messages[-1].content.split(" about ", 1)[1].split(":", 1)[0]
        # A well-behaved rewrite for even calls; an off-topic one (no product) for odd calls.
        return (
            f"Honestly, the {product} was just what I wanted." if len(asked) % 2 else "Great shop, fast post!"
        )

    plain = population(spec, catalogue, 3, n=6)
    reworded = generate(spec, catalogue, n=6, seed=3, reword=llm_reword(model, prompt))
    assert asked, "the model was asked to reword"
    for before, after in zip(plain, reworded, strict=True):
        # Same facts: same events, dates, items, ratings; only review and ticket texts may change.
        strip = [{k: v for k, v in r.items() if k != "text"} for r in before.records]
        assert strip == [{k: v for k, v in r.items() if k != "text"} for r in after.records]
        for old, new in zip(before.records, after.records, strict=True):
            if old["source"] in ("review", "support"):
                assert new["text"] in (
                    old["text"],
                    f"Honestly, the {old['product'].lower()} was just what I wanted.",
                )
                assert old["product"].lower().split()[0] in new["text"].lower()
            else:
                assert new["text"] == old["text"]
