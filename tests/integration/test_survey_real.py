"""`twinchat survey` over a panel of real GSS respondents, on the real embedder, Chroma and local LLM."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from twinchat.cli import main
from twinchat.config import Settings
from twinchat.importers.gss import GssPanel
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

VARIABLES = [
    "cappun",
    "gunlaw",
    "grass",
    "abany",
    "abrape",
    "homosex",
    "premarsx",
    "polviews",
    "trust",
    "fair",
    "helpful",
    "happy",
    "sex",
    "degree",
    "natpark",
    "natsci",
    "conarmy",
    "conbus",
    "postlife",
    "pray",
]


@pytest.fixture
def gss_panel(shared_data: Path, tmp_path: Path, embedder) -> tuple[TwinService, GssPanel]:
    gss = shared_data / "gss"
    panel = GssPanel.load(gss / "panel06_long.csv.gz", gss / "variable_doc.csv")
    persons = sorted(panel.rows["firstid"].unique())[:15]
    service = TwinService.from_settings(Settings(), embedder=embedder)  # TWINCHAT_HOME: the test's tmp folder
    records = panel.records(
        persons=persons, variables=VARIABLES, waves=(1, 2), withheld={persons[0]: {"grass"}}
    )
    report = service.ingest_records(records, panel="gss-sample")
    assert report.exit_code == 0 and report.stored > 100
    return service, panel


def test_survey_a_panel_to_csv_and_json(gss_panel, tmp_path: Path, capsys) -> None:
    service, panel = gss_panel
    questions = tmp_path / "questions.json"
    questions.write_text(
        json.dumps(
            [
                {"id": "gss:grass", "text": panel.wording["grass"], "options": ["Legal", "Not Legal"]},
                {
                    "id": "tv-news",
                    "text": "Which evening news programme do you watch?",
                    "options": ["ABC", "CBS", "NBC"],
                },
                {"id": "why", "text": "What do you think about the death penalty?"},
            ]
        )
    )
    out_csv = tmp_path / "answers.csv"
    assert main(["survey", str(questions), "--panel", "gss-sample", "--out", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 15 * 3
    assert set(rows[0]) >= {"twin_id", "question_id", "answer", "distribution", "citations"}

    grass = [r for r in rows if r["question_id"] == "gss:grass"]
    for row in grass:
        distribution = json.loads(row["distribution"])
        assert set(distribution) == {"Legal", "Not Legal"}
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-3)
        assert row["answer"] in distribution
    held_out_twin = f"gss-{sorted(panel.rows['firstid'].unique())[0]}"
    mine = next(r for r in grass if r["twin_id"] == held_out_twin)
    assert mine["evidence"] == "similar_twins"  # its own answer was withheld: it leans on twins like it

    # Nobody in the panel was asked this: the honest answer is a uniform distribution and says so.
    news = [r for r in rows if r["question_id"] == "tv-news"]
    assert all(
        json.loads(r["distribution"]) == pytest.approx({"ABC": 1 / 3, "CBS": 1 / 3, "NBC": 1 / 3}, abs=1e-4)
        for r in news
    )
    assert all(r["evidence"] == "panel_only" for r in news)

    free = [r for r in rows if r["question_id"] == "why"]
    assert all(r["answer"] and json.loads(r["distribution"]) == {} for r in free)

    out_json = tmp_path / "answers.json"
    assert (
        main(
            [
                "survey",
                str(questions),
                "--twins",
                f"{held_out_twin},gss-{sorted(panel.rows['firstid'].unique())[1]}",
                "--out",
                str(out_json),
            ]
        )
        == 0
    )
    records = json.loads(out_json.read_text())
    assert len(records) == 6 and all(r["simulated"] is True for r in records)
    choice = next(r for r in records if r["question_id"] == "gss:grass")
    assert {p["name"] for p in choice["parts"]} >= {"panel", "similar"} and choice["reason"]


def test_bad_questionnaires_are_refused_with_the_question_and_field(tmp_path: Path, capsys) -> None:
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"id": "a", "text": "Tea?", "options": ["Yes"]}]))
    assert main(["survey", str(questions), "--panel", "any", "--out", str(tmp_path / "o.json")]) == 2
    assert "question 0: options" in capsys.readouterr().err
