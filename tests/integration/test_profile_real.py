"""Profiles of real Online Retail customers through the real service (MiniLM, Chroma on disk, SQLite): the
order count and spend match the CSV, re-ingesting changes nothing, and `twinchat show --json` agrees."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from twinchat.cli import main
from twinchat.importers.online_retail import OnlineRetailImport
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

CUSTOMERS = 5


def from_csv(path: Path) -> dict[str, tuple[int, float]]:
    """(orders, spend) per customer from the rows: invoices not starting with C, |quantity| x price."""
    invoices: dict[str, set[str]] = {}
    spend: dict[str, float] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            customer = row["CustomerID"].strip().removesuffix(".0")
            if not customer or row["InvoiceNo"].startswith("C") or not row["Description"].strip():
                continue
            invoices.setdefault(customer, set()).add(row["InvoiceNo"])
            spend[customer] = spend.get(customer, 0.0) + abs(int(row["Quantity"])) * float(row["UnitPrice"])
    return {c: (len(invoices[c]), round(spend[c], 2)) for c in invoices}


def test_profiles_of_real_customers(real_service: TwinService, shared_data: Path, capsys) -> None:
    path = shared_data / "online_retail" / "online_retail_sample.csv"
    report = real_service.ingest_records(OnlineRetailImport(path, customers=CUSTOMERS).records())
    assert report.stored > 0 and not report.rejected
    twins = [t.twin_id for t in real_service.twins()]
    assert len(twins) == CUSTOMERS
    expected = from_csv(path)
    profiles = {}
    for twin_id in twins:
        profile = real_service.profile(twin_id)
        buys = profile.facts()["purchases"]
        assert (buys["orders"], buys["spend"]) == pytest.approx(expected[twin_id], abs=0.01), twin_id
        assert buys["rfm"]["frequency"] == buys["orders"] and buys["rfm"]["recency_days"] >= 0
        assert profile.n_events == real_service.twin(twin_id).n_events
        assert profile.summary.startswith("A customer since ")
        assert f"{buys['orders']} orders" in profile.summary
        profiles[twin_id] = profile

    again = real_service.ingest_records(OnlineRetailImport(path, customers=CUSTOMERS).records())
    assert again.stored == 0 and again.duplicates == report.stored
    assert {t: real_service.profile(t) for t in twins} == profiles

    capsys.readouterr()
    assert main(["show", twins[0], "--json"]) == 0  # a fresh service over the same TWINCHAT_HOME
    shown = json.loads(capsys.readouterr().out)
    assert shown["profile"] == json.loads(json.dumps(profiles[twins[0]].facts()))
    assert shown["summary"] == profiles[twins[0]].summary
    assert shown["twin"]["twin_id"] == twins[0]
