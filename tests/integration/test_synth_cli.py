"""`twinchat synth` end to end in child processes: real embedder, Chroma, SmolLM2, the Online Retail sample."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_cli_e2e import assert_stayed_offline

pytestmark = pytest.mark.slow


def test_synth_makes_synthetic_twins_usable_without_consent(shared_data: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_DATA_DIR": str(shared_data),
        "TWINCHAT_DEFAULT_CONSENT": "[]",  # nobody consents to anything: only synthetic twins may be used
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "support" / "site"),
    }
    report = tmp_path / "synth.json"
    made = run_cli(env, "synth", "--n", "5", "--seed", "1", "--panel", "syn", "--report", str(report))
    assert made.returncode == 0, made.stderr
    assert (
        "generated 5 synthetic customers" in made.stdout and "privacy: nearest real customer" in made.stdout
    )
    privacy = json.loads(report.read_text())["privacy"]
    assert privacy["synthetic_customers"] == 5 and privacy["reproduced"] == 0
    assert privacy["min_distance"] > 0

    real = tmp_path / "real.jsonl"
    real.write_text(
        json.dumps({"customer_id": "C-1", "text": "Bought a red teapot", "source": "purchase"}) + "\n"
    )
    assert run_cli(env, "ingest", str(real)).returncode == 0

    twins = {t["twin_id"]: t for t in json.loads(run_cli(env, "twins", "--json").stdout)}
    synthetic = sorted(t for t in twins if t.startswith("syn-1-"))
    assert synthetic == [f"syn-1-{i:04d}" for i in range(5)]
    assert all(twins[t]["synthetic"] and twins[t]["panels"] == ["syn"] for t in synthetic)
    assert twins["C-1"]["synthetic"] is False
    assert "[synthetic]" in run_cli(env, "twins", "--panel", "syn").stdout

    question = "Which day do you prefer your deliveries?"
    asked = run_cli(env, "ask", synthetic[0], question, "--purpose", "marketing", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["simulated"] is True and answer["citations"]
    refused = run_cli(env, "ask", "C-1", "What did you buy?", "--purpose", "marketing")
    assert refused.returncode == 3 and "refused" in refused.stderr
    assert_stayed_offline(env)


def test_demo_offers_a_real_and_a_synthetic_panel(shared_data: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_DATA_DIR": str(shared_data),
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "support" / "site"),
    }
    built = run_cli(env, "demo", "--customers", "3", "--synthetic", "4", "--no-serve")
    assert built.returncode == 0, built.stderr
    assert "3 real customers' twins in panel 'online-retail'" in built.stdout
    assert "4 synthetic twins in panel 'synthetic'" in built.stdout
    panels = json.loads(run_cli(env, "panels", "--json").stdout)
    assert panels == {"online-retail": 3, "synthetic": 4}
    twins = json.loads(run_cli(env, "twins", "--json").stdout)
    assert sorted(t["synthetic"] for t in twins) == [False] * 3 + [True] * 4
    assert all(t["synthetic"] == (t["panels"] == ["synthetic"]) for t in twins)
    assert_stayed_offline(env)


def test_synth_with_llm_wording_on_the_local_model(shared_data: Path, tmp_path: Path) -> None:
    # The 135M model is asked to reword; whatever it says, every review and ticket still names its product.
    env = {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_DATA_DIR": str(shared_data),
        "TWINCHAT_SYNTH_WORDING": "llm",
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "support" / "site"),
    }
    made = run_cli(env, "synth", "--n", "2", "--seed", "5", "--panel", "syn")
    assert made.returncode == 0, made.stderr
    assert "reworded by local:smollm2" in made.stdout
    out = tmp_path / "export.json"
    assert run_cli(env, "export", "syn-5-0000", "--out", str(out)).returncode == 0
    events = json.loads(out.read_text())["events"]
    written = [e for e in events if e["source"] in ("review", "support")]
    assert written, "the customer has reviews or tickets"
    for e in written:
        assert e["product"].lower().split()[0] in e["text"].lower()
    assert_stayed_offline(env)
