"""The grounding evaluation end to end: demo twins in real Chroma, MiniLM, SmolLM2, ragas (no judge)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evals.core import evaluate
from evals.grounding import TYPES, Grounding
from twinchat.config import Settings


@pytest.mark.slow
def test_the_quick_run_writes_its_folder_with_figures_in_range(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "grounding"
    options = Grounding.quick_options()
    result = evaluate(
        Grounding(**options, seed=0),
        out,
        Settings(home=tmp_path / "unused", data_dir=shared_data),
        progress=False,
    )

    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(result, default=str))
    assert result["evaluator"] == "grounding" and result["version"] == Grounding.version
    for name in ("report.md", "results.csv", "questions.jsonl", *(f["file"] for f in result["figures"])):
        assert (out / name).stat().st_size > 0, name
    questions = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    expected = 2 * options["twins"] * options["questions_per_twin"]
    assert len(questions) == expected and {q["type"] for q in questions} <= set(TYPES)
    assert any(q["answerable"] for q in questions) and any(not q["answerable"] for q in questions)
    for q in questions:
        assert bool(q["reference_ids"]) == q["answerable"] == bool(q["reference_contexts"])
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [q["id"] for q in questions] and all(r["answer"] for r in rows)

    summary = result["summary"]
    metrics = summary["metrics"]
    assert set(metrics) == {"context_precision", "context_recall", "string_similarity", "rouge_l"}
    assert any("not run: no judge configured" in note for note in result["notes"])
    for name, figures in metrics.items():
        assert figures["n"] + figures["failed"] + figures["not_applicable"] == expected, name
        assert figures["mean"] is not None and 0.0 <= figures["mean"] <= 1.0, name
    unanswerable = sum(not q["answerable"] for q in questions)
    assert metrics["context_recall"]["not_applicable"] == unanswerable
    for key, value in summary["overall"].items():
        share = value["share"] if isinstance(value, dict) else value
        if key not in ("questions", "answerable") and share is not None:
            assert 0.0 <= share <= 1.0, key
    # Retrieval is the part that does not depend on the 135M model: most reference evidence is found, and every
    # citation names an event retrieval returned (the model may still write a marker of evidence it was not shown).
    assert summary["overall"]["evidence_hit"]["share"] >= 0.5
    for r in rows:
        assert set(json.loads(r["cited_ids"])) <= set(json.loads(r["retrieved_ids"])), r["id"]
    for failure in result["failures"]:
        assert failure["metric"] and failure["reason"] and failure["question"]
