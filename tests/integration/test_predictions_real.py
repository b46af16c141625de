"""Behaviour predictions on real Online Retail customers through the real pipeline, from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_cli_e2e import assert_stayed_offline, env  # noqa: F401 (env: a fixture)

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail" / "online_retail_sample.csv"


def retail_slice(out: Path, customers: int = 40) -> Path:
    """Every line of the first ``customers`` customers of the sample: real histories, a quick ingest."""
    with DATA.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen: list[str] = []
    for row in rows:
        if row["CustomerID"] and row["CustomerID"] not in chosen and len(chosen) < customers:
            chosen.append(row["CustomerID"])
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["CustomerID"] in chosen)
    return out


@pytest.mark.skipif(not DATA.is_file(), reason="the Online Retail sample is not in ../shared/data")
def test_show_has_predictions_and_withdrawn_marketing_consent_refuses_them(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {**env, "TWINCHAT_DEFAULT_CONSENT": '["research", "product", "marketing"]'}
    imported = run_cli(
        env, "import", "online_retail", str(retail_slice(tmp_path / "slice.csv")), "--panel", "retail"
    )
    assert imported.returncode == 0, imported.stderr

    fitted = run_cli(env, "predict", "fit", "--panel", "retail", "--json")
    assert fitted.returncode == 0, fitted.stderr
    fit = json.loads(fitted.stdout)
    assert fit["model"] == "bg/nbd" and fit["customers"] == 40 and fit["panel"] == "retail"

    twins = json.loads(run_cli(env, "twins", "--json").stdout)
    busiest = max(twins, key=lambda t: t["n_events"])["twin_id"]
    shown = run_cli(env, "show", busiest, "--json")
    assert shown.returncode == 0, shown.stderr
    p = json.loads(shown.stdout)["predictions"]
    assert p["available"] and p["simulated"] is True and p["model"] == "bg/nbd"
    assert 0 <= p["p_buy_again_90d"] <= 1 and p["expected_purchases_90d"] >= 0
    assert p["fitted_on"]["panel"] == "retail" and p["as_of"] <= "2011-12-09"
    assert p["evidence"]["purchases"] and all(
        e.startswith("retail-") for d in p["evidence"]["purchases"] for e in d["event_ids"]
    )
    assert {"value", "level"} <= set(p["churn_risk"]) and "level" in p["confidence"]
    plain = run_cli(env, "show", busiest)
    assert plain.returncode == 0 and "buys again in 90 days" in plain.stdout

    denied = run_cli(env, "consent", busiest, "--purpose", "marketing", "--deny")
    assert denied.returncode == 0, denied.stderr
    refused = json.loads(run_cli(env, "show", busiest, "--json").stdout)
    assert refused["predictions"]["available"] is False and "marketing" in refused["predictions"]["refused"]
    assert refused["profile"]["purchases"]["orders"] > 0  # the rest of the document is still shown
    audit = json.loads(run_cli(env, "audit", "--twin", busiest, "--json").stdout)
    assert any(e["action"] == "refused" and e["detail"].get("attempted") == "predict" for e in audit)
    assert any(e["action"] == "predict" and e["purpose"] == "marketing" and e["evidence"] for e in audit)
    assert_stayed_offline(env)
