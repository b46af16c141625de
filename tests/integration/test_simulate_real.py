"""A strategy test on real Online Retail customers through the real pipeline, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_cli_e2e import assert_stayed_offline, env  # noqa: F401 (env: a fixture)
from tests.integration.test_predictions_real import DATA, retail_slice

pytestmark = pytest.mark.slow
CAMPAIGN = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"


@pytest.mark.skipif(not DATA.is_file(), reason="the Online Retail sample is not in ../shared/data")
def test_simulate_the_example_campaign_on_real_twins_with_the_local_llm(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    # The local LLM scores the options too (its part is weighed in), so the whole pipeline runs.
    env = {
        **env,
        "TWINCHAT_DEFAULT_CONSENT": '["research", "product", "marketing"]',
        "TWINCHAT_SURVEY_LLM_WEIGHT": "0.2",
    }
    imported = run_cli(
        env, "import", "online_retail", str(retail_slice(tmp_path / "slice.csv", 25)), "--panel", "retail"
    )
    assert imported.returncode == 0, imported.stderr
    assert run_cli(env, "predict", "fit", "--panel", "retail").returncode == 0
    twins = json.loads(run_cli(env, "twins", "--json").stdout)
    withdrawn = twins[0]["twin_id"]
    assert run_cli(env, "consent", withdrawn, "--purpose", "marketing", "--deny").returncode == 0

    out = tmp_path / "run"
    ran = run_cli(env, "simulate", str(CAMPAIGN), "--panel", "retail", "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    assert "24 twins answered, 1 refused" in ran.stdout and f"left out: twin {withdrawn}" in ran.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["simulated"] is True and doc["model"]["llm"] == "local:smollm2"
    for v in doc["variants"].values():
        assert 0 <= v["interval"][0] <= v["rate"] <= v["interval"][1] <= 1
    assert "United Kingdom" in doc["segments"]["country"]
    assert set(doc["segments"]["churn_risk"]) <= {"low", "medium", "high"}
    records = [r for r in doc["records"] if r["evidence"]]
    assert records and all(e["event_id"].startswith("retail-") for r in records for e in r["evidence"])
    assert any(p["name"] == "llm" for r in doc["records"] for p in r["parts"])
    assert (out / "chart.png").stat().st_size > 1000 and "## B against A" in (out / "report.md").read_text()
    audit = json.loads(run_cli(env, "audit", "--json").stdout)
    assert any(e["action"] == "simulate" and e["purpose"] == "marketing" for e in audit)
    assert any(e["action"] == "refused" and e["twin_id"] == withdrawn for e in audit)
    assert_stayed_offline(env)
