"""The twin2k evaluator end to end at its --quick size: real embedder, Chroma and local LLM, real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evals.core import evaluate
from evals.twin2k import Twin2k


@pytest.mark.slow
def test_quick_twin2k_writes_its_folder_with_figures_in_range(shared_data: Path, tmp_path: Path) -> None:
    """Figures are reported, not asserted high: the test checks the folder's shape and the ranges."""
    out = tmp_path / "out"
    result = evaluate(Twin2k(**Twin2k.quick_options(), seed=0), out, progress=False)

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["evaluator"] == "twin2k" and on_disk["summary"] == result["summary"]
    summary = result["summary"]
    assert summary["persons"] == Twin2k.quick_options()["persons"] and summary["measures_asked"] > 50
    for series in ("twins", "published_llm", "baseline_loo_mean", "baseline_population_mean"):
        assert 0.0 <= summary["accuracy"][series] <= 1.0, series
    for series in ("twins", "published_llm"):
        assert -1.0 <= summary["correlation"][series] <= 1.0, series
        assert 0 < summary["correlation_defined"][series] <= summary["measures_asked"]
    assert 0.0 <= summary["calibration"]["ece"] <= 1.0

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == summary["pairs"] > 0
    first = rows[0]
    assert first["twin_answer"] in json.loads(first["options"])
    assert first["question_id"].startswith("twin2k:") and first["evidence"]
    assert all(0.0 <= float(r["p_human"]) <= 1.0 for r in rows)

    report = (out / "report.md").read_text()
    assert "**accuracy.twins**" in report and "with_reasoning" in report
    for figure in result["figures"]:
        assert (out / figure["file"]).read_bytes()[:4] == b"\x89PNG", figure["file"]
    assert {"accuracy.png", "reliability.png", "correlation.png"} <= {f["file"] for f in result["figures"]}
    catalogue = json.loads((out / "catalogue.json").read_text())
    assert len(catalogue) == 164 and sum("reason" not in m for m in catalogue) == 88
    assert not (out / "home").exists()  # the twins' home is temporary: no copy of the data stays behind
