"""The evaluation frame: its arithmetic on fixtures with known answers, and the folder every evaluator writes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from evals import evaluators
from evals.core import Evaluator, Figure, Outcome, evaluate, failure, fisher_mean, pearson
from evals.fidelity import ordinal_correlations
from evals.gss_scales import SCALES, scale_of
from evals.plots import calibration
from evals.report import flatten, markdown
from twinchat.config import Settings


class Tiny(Evaluator):
    name = "tiny"
    version = 3
    title = "A tiny evaluation"
    protocol = "this test"

    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        from evals import plots

        rows = [{"case": 1, "hit": True, "detail": {"a": 1}}, {"case": 2, "hit": False, "extra": "x"}]
        plots.bars(out / "bars.png", {"twins": 0.5, "baseline": 0.25}, title="t", ylabel="y", ceiling=0.75)
        return Outcome(
            summary={"accuracy": 0.5, "share": {"share": 0.5, "count": 1, "of": 2}, "by": {"x": 1}},
            rows=rows,
            figures=[Figure("bars.png", "Bars", "a caption")],
            notes=["a note"],
            failures=[failure("correlation", "constant vector", item="q1")],
            headline=("accuracy",),
        )


class Broken(Tiny):
    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        return Outcome(summary={"accuracy": math.nan})


def test_evaluate_writes_json_csv_report_and_figures(tmp_path: Path) -> None:
    result = evaluate(Tiny(seed=1), tmp_path / "out", Settings(home=tmp_path / "home"), progress=False)

    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["evaluator"] == "tiny" and on_disk["version"] == 3 and on_disk["options"] == {"seed": 1}
    assert on_disk["machine"] and on_disk["date"] and on_disk["code"]
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["case"] for r in rows] == ["1", "2"]
    assert rows[0]["detail"] == '{"a": 1}' and rows[1]["extra"] == "x" and rows[0]["extra"] == ""
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| **accuracy** | 0.5 |" in report
    assert "| share | 0.500 (1/2) |" in report
    assert "![Bars](bars.png)" in report and "a caption" in report and "a note" in report
    assert "`correlation`: constant vector; item q1" in report
    assert (tmp_path / "out" / "bars.png").read_bytes()[:4] == b"\x89PNG"


def test_a_nan_figure_is_refused_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"summary.accuracy is nan"):
        evaluate(Broken(), tmp_path / "out", Settings(home=tmp_path / "home"), progress=False)
    assert not (tmp_path / "out" / "results.json").exists()


def test_every_registered_evaluator_is_a_versioned_class_with_a_quick_size() -> None:
    found = evaluators()
    assert set(found) == {"fidelity", "twin2k", "grounding", "corrections", "backtest"}
    for name, cls in found.items():
        assert issubclass(cls, Evaluator) and cls.name == name
        assert isinstance(cls.version, int) and cls.title and cls.protocol
        assert cls.quick_options(), f"{name} has no --quick size for CI"


def test_calibration_bins_and_expected_calibration_error_by_hand() -> None:
    # Bin [0.2, 0.3): 0.25 twice, one hit. Bin [0.9, 1.0]: 0.9 and 1.0, both hits.
    table, ece = calibration([0.25, 0.25, 0.9, 1.0], [True, False, True, True])
    assert [(round(r["low"], 1), r["count"]) for r in table] == [(0.2, 2), (0.9, 2)]
    assert table[0]["frequency"] == 0.5 and table[1]["confidence"] == pytest.approx(0.95)
    # |0.25 - 0.5| * 2/4 + |0.95 - 1| * 2/4
    assert ece == pytest.approx(0.15)
    with pytest.raises(ValueError):
        calibration([0.5], [True, False])


def test_pearson_and_fisher_mean_by_hand() -> None:
    assert pearson([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert pearson([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert pearson([1, 2], [1, 2]) is None  # too few pairs
    assert fisher_mean([]) is None
    assert fisher_mean([1.0, 1.0]) == pytest.approx(0.9999)  # clipped, finite
    assert fisher_mean([0.3, -0.3]) == 0.0


def test_ordered_scales_cover_their_labels_once() -> None:
    for scale in SCALES:
        assert len(set(scale)) == len(scale), scale
    assert scale_of(["Too Much", "About Right", "Too Little"]) == {
        "Too Much": 1.0,
        "About Right": 0.5,
        "Too Little": 0.0,
    }
    assert scale_of(["Mentioned", "Not Mentioned", "Other"]) is None


def test_ordinal_correlation_pools_pairs_on_their_scales() -> None:
    options = json.dumps(["Too Little", "About Right", "Too Much"])

    def row(actual: str, prediction: str, retest: str) -> dict[str, str]:
        return {
            "item": "natspac",
            "options": options,
            "actual": actual,
            "prediction": prediction,
            "retest": retest,
            "demographic": "About Right",
        }

    rows = [
        row("Too Little", "Too Little", "Too Little"),
        row("About Right", "About Right", "Too Little"),
        row("Too Much", "Too Much", "Too Much"),
        {**row("Yes", "No", "Yes"), "item": "binary", "options": json.dumps(["Yes", "No"])},
    ]
    figures, failures = ordinal_correlations(rows)
    assert figures["items"] == 1 and figures["pairs"] == 3
    assert figures["correlation_twins"] == 1.0
    # Retest positions 0, 0, 1 against 0, 0.5, 1: r = 0.866.
    assert figures["correlation_retest"] == pytest.approx(0.866, abs=1e-3)
    # The demographic baseline answers the same for everyone: undefined, reported as a failure.
    assert figures["correlation_demographic"] is None
    assert [f["metric"] for f in failures] == [
        "ordinal.correlation_demographic",
        "ordinal.per_item_fisher_demographic",
    ]
    assert (
        figures["per_item_fisher_twins"] == pytest.approx(0.9999) and figures["per_item_defined_twins"] == 1
    )


def test_flatten_keeps_shares_whole_and_leaves_record_lists_to_the_json() -> None:
    summary = {"a": {"b": 1, "c": {"share": 0.5, "count": 1, "of": 2}}, "rows": [{"x": 1}], "n": None}
    assert flatten(summary) == [("a.b", 1), ("a.c", {"share": 0.5, "count": 1, "of": 2}), ("n", None)]
    text = markdown(
        {
            "title": "T",
            "evaluator": "t",
            "version": 1,
            "protocol": "p",
            "date": "d",
            "machine": "m",
            "code": "c",
            "models": {"llm": "l", "embedder": "e"},
            "options": {},
            "seconds": 1,
            "summary": summary,
            "failures": [],
        }
    )
    assert "| n | n/a |" in text and "None: every metric was computed" in text
