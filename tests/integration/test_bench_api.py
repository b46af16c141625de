"""A tiny run of the API load benchmark (evals/bench_api.py): the results file has its shape and no 5xx."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import PYTHON, ROOT

pytestmark = pytest.mark.slow


def test_a_tiny_load_run_writes_its_figures_and_meets_no_server_error(tmp_path: Path) -> None:
    out = tmp_path / "bench-api.json"
    log = tmp_path / "netguard.log"
    env = {
        **os.environ,
        "TWINCHAT_NETGUARD_LOG": str(log),  # the bench, its twinchat commands and the server stay offline
        "PYTHONPATH": str(ROOT / "tests" / "support" / "site"),
        "TWINCHAT_MAX_ANSWER_TOKENS": "32",  # answered asks stay quick; recorded in the results' settings
    }
    command = [PYTHON, "-m", "evals.bench_api", "--out", str(out), "--clients", "2", "--requests", "10"]
    command += ["--seconds", "60", "--grace", "60", "--baseline", "1", "--customers", "3", "--synthetic"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["format"] == "twinchat-bench-api/1" and results["twins"] == 3
    load = results["load"]
    assert load["server_errors"] == 0 and results["server_log_internal_errors"] == 0, load
    assert load["errors"] == 0 and load["errors_transport"] == {}, load
    assert load["issued"] == 10 and load["count"] + load["cut_off"] == 10
    operations = load["operations"]
    assert set(operations) == {"ask", "ask_answered", "ask_abstained", "ingest"}
    asks, ingests = operations["ask"], operations["ingest"]
    assert asks["count"] + ingests["count"] == load["count"] and asks["count"] and ingests["count"]
    assert operations["ask_answered"]["ok"] + operations["ask_abstained"]["ok"] == asks["ok"]
    assert ingests["events_stored"] == 10 * ingests["ok"]  # every batch is new events
    for op in operations.values():
        assert set(op) >= {
            "count",
            "ok",
            "errors_by_status",
            "server_errors",
            "latency_s",
            "throughput_per_s",
        }
        assert set(op["latency_s"]) == {"p50", "p95", "max", "mean"}
        if op["ok"]:
            assert 0 < op["latency_s"]["p50"] <= op["latency_s"]["p95"] <= op["latency_s"]["max"]
    assert set(results["baseline"]) >= {"healthz", "ask_answered", "ask_abstained", "ingest"}
    assert set(results["loaded_over_unloaded_p50"]) == {"ask_answered", "ask_abstained", "ingest"}
    config = results["config"]
    assert config["clients"] == 2 and config["llm"] == "local:smollm2"
    assert config["machine"]["cpu_count"] >= 1 and config["settings"]["TWINCHAT_MAX_ANSWER_TOKENS"] == "32"
    assert set(results["timings_s"]) == {"seed", "server_start", "baseline", "load"}

    assert Path(f"{log}.active").exists(), "the network guard was not active in the child processes"
    assert not log.exists() or not log.read_text().strip(), f"network use beyond loopback: {log.read_text()}"
