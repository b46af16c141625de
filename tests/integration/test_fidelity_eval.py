"""The fidelity protocol on a tiny panel with a known answer, and on a sample of the real GSS panel."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import pytest

from evals.fidelity import Protocol, design, run
from twinchat.config import Settings
from twinchat.importers.gss import GssPanel


def write_panel(folder: Path, persons: int = 40) -> tuple[Path, Path]:
    """A GSS-format panel: 'mood' in wave 3 equals 'signal' (and its copy 'echo'); 'noise' is random; 'sex' is
    a profile field. With two items held out per person, 'signal' or 'echo' always stays visible.

    Wave 2 'mood' equals wave 3 'mood' for two thirds of persons, so the retest ceiling is known.
    Person 39 did not take part in wave 3 (placeholders only), and wave 2 of 'vote' is a placeholder 0.
    """
    rng = random.Random(7)
    rows = []
    for p in range(persons):
        signal = "Happy" if p % 2 else "Sad"
        for wave in (1, 2, 3):
            row = {
                "firstid": f"{p:04d}",
                "wave": f"{wave}.0",
                "ballot": "Ballot a",
                "sex": "Male" if p % 3 else "Female",
            }
            row["signal"] = signal
            row["echo"] = signal
            row["noise"] = rng.choice(["Left", "Right"])
            row["vote"] = "0" if wave == 2 else rng.choice(["Voted", "Did not Vote"])
            if wave == 3:
                row["mood"] = signal
            elif wave == 2:
                row["mood"] = signal if p % 3 else ("Sad" if signal == "Happy" else "Happy")
            else:
                row["mood"] = signal
            if p == persons - 1 and wave == 3:
                row = {
                    "firstid": row["firstid"],
                    "wave": "3.0",
                    "ballot": "Ballot a",
                    "signal": "0",
                    "noise": "-1",
                }
            rows.append(row)
    columns = ["firstid", "wave", "ballot", "sex", "signal", "echo", "noise", "vote", "mood"]
    panel = folder / "panel.csv.gz"
    with gzip.open(panel, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    doc = folder / "doc.csv"
    doc.write_text(
        "variable,var_doc_label,var_text,var_type\n"
        "ballot,ballot used for interview,1659. Ballot Administered.,numeric\n"
        "sex,respondents sex,23. Code respondent's sex,numeric\n"
        "signal,signal,1. Are you happy or sad?,numeric\n"
        "echo,echo,1b. Happy or sad once more?,numeric\n"
        "noise,noise,2. Left or right?,numeric\n"
        "vote,vote,3. Did you vote?,numeric\n"
        "mood,mood,4. Generally happy or sad these days?,numeric\n"
    )
    return panel, doc


def test_the_protocol_selects_persons_items_and_held_out_pairs_as_specified(tmp_path: Path) -> None:
    panel_path, doc = write_panel(tmp_path)
    plan = design(
        GssPanel.load(panel_path, doc), Protocol(test_persons=10, train_persons=20, items_per_person=3)
    )
    assert "0039" not in plan.test + plan.train  # no wave 3: never selected
    assert set(plan.items) == {
        "signal",
        "echo",
        "noise",
        "vote",
        "mood",
    }  # no admin (ballot), no profile (sex)
    assert len(plan.test) == 10 and len(plan.train) == 20 and not set(plan.test) & set(plan.train)
    for items in plan.held_out.values():
        assert "vote" not in items  # wave 2 holds a placeholder, not an answer
        assert len(items) == 3


def test_twins_reach_the_known_answer_and_scores_are_exact(tmp_path: Path) -> None:
    panel_path, doc = write_panel(tmp_path)
    settings = Settings(embedder="hash", home=tmp_path / "unused")
    protocol = Protocol(test_persons=10, train_persons=25, items_per_person=2, seed=0)
    summary, rows = run(panel_path, doc, protocol=protocol, settings=settings, progress=False)

    assert set(rows[0]) >= {"person_id", "item", "options", "prediction", "actual", "retest"}
    mood = [r for r in rows if r["item"] == "mood"]
    assert mood, "the seed should hold out 'mood' for some test person"
    # 'mood' in wave 3 is 'signal', which every twin's history holds: the similar-twins model must find it.
    assert all(r["prediction"] == r["actual"] for r in mood)
    held = {}
    for r in rows:
        held.setdefault(r["person_id"], set()).add(r["item"])
    # 'signal' and 'echo' are copies: either one predicts the other exactly, when it is not held out too.
    copies = [
        r for r in rows if r["item"] in ("signal", "echo") and not {"signal", "echo"} <= held[r["person_id"]]
    ]
    assert copies and all(r["prediction"] == r["actual"] for r in copies)
    expected_retest = sum(r["retest"] == r["actual"] for r in rows) / len(rows)
    assert summary["retest"] == pytest.approx(expected_retest, abs=1e-4)
    assert summary["normalized_accuracy"] == pytest.approx(summary["accuracy"] / summary["retest"], abs=1e-3)
    assert summary["n_pairs"] == len(rows) == 20
    # 'mood' is ordinal on no known scale and the others are binary: no correlation, and that is reported.
    assert summary["ordinal"]["items"] == 0
    assert {f["metric"] for f in summary["failures"]} == {
        f"ordinal.{figure}_{who}"
        for figure in ("correlation", "per_item_fisher")
        for who in ("twins", "retest", "demographic")
    }


@pytest.mark.slow
def test_quick_fidelity_on_the_real_panel_beats_nothing_silently(shared_data: Path, tmp_path: Path) -> None:
    """The real GSS panel through the real embedder and Chroma; figures are reported, not asserted high."""
    gss = shared_data / "gss"
    protocol = Protocol(test_persons=8, train_persons=30, items_per_person=4, seed=0)
    summary, rows = run(
        gss / "panel06_long.csv.gz",
        gss / "variable_doc.csv",
        protocol=protocol,
        settings=Settings(home=tmp_path / "unused"),
        progress=False,
    )
    assert summary["n_pairs"] == 32
    assert 0.3 < summary["retest"] <= 1.0
    for key in ("accuracy", "majority_baseline", "demographic_baseline", "tvd_twins_mean", "brier"):
        assert 0.0 <= summary[key] <= 2.0
    assert len(rows) == 32 and summary["ordinal"]["pairs"] > 0
    assert -1.0 <= summary["ordinal"]["correlation_retest"] <= 1.0
