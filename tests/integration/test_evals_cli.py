"""`twinchat eval NAME --quick`, as a researcher runs it: real data, Chroma, the embedding model, the local LLM."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals import REGISTRY
from evals.report import flatten


def twinchat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinchat.cli", *args], capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture
def env(shared_data: Path, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_DATA_DIR": str(shared_data),
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "RAGAS_DO_NOT_TRACK": "true",
    }


def test_eval_lists_every_evaluator_with_its_quick_size(env: dict[str, str]) -> None:
    done = twinchat("eval", "--help", env=env)
    assert done.returncode == 0, done.stderr
    for name in REGISTRY:
        assert name in done.stdout
    done = twinchat("eval", "fidelity", "--help", env=env)
    assert "--quick" in done.stdout and "test-persons 10" in done.stdout


# twin2k and grounding have their own end-to-end tests through evaluate() (test_eval_*_real.py); the command
# line is the same for every evaluator, so two of them cover it without running those two twice in CI.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fidelity", "corrections"])
def test_quick_run_writes_results_report_and_figures(name: str, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / name
    done = twinchat("eval", name, "--quick", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads((out / "results.json").read_text())
    assert result["evaluator"] == name and result["options"]["seed"] == 0
    assert result["headline"], "the report and the CLI show the headline figures first"
    printed = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    flat = dict(flatten(result["summary"]))
    assert printed == {k: flat[k] for k in result["headline"] if k in flat}
    with (out / "results.csv").open() as handle:
        assert list(csv.DictReader(handle)), "one row per scored case"
    report = (out / "report.md").read_text()
    assert result["figures"], "every evaluator draws its figures"
    for figure in result["figures"]:
        assert (out / figure["file"]).read_bytes()[:4] == b"\x89PNG"
        assert f"]({figure['file']})" in report
    # Shares and accuracies are in [0, 1]; correlations in [-1, 1]; nothing is NaN (evaluate refuses it).
    for key, value in flat.items():
        share = value["share"] if isinstance(value, dict) else value
        leaf = key.rsplit(".", 1)[-1]
        if isinstance(share, float) and ("accuracy" in leaf or leaf.startswith("share")):
            assert 0.0 <= share <= 1.0, (key, share)
        if isinstance(share, float) and "correlation" in leaf:
            assert -1.0 <= share <= 1.0, (key, share)
    for item in result["failures"]:
        assert item["metric"] and item["reason"]
