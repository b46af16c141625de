"""The correction-adherence benchmark end to end: real GSS and Online Retail twins, MiniLM, Chroma, SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.corrections import FACTS_BY_VARIABLE, mentioned, run
from twinchat.config import Settings
from twinchat.ports import Embedder


def test_free_answers_are_read_for_the_value_they_state() -> None:
    marital = FACTS_BY_VARIABLE["marital"].mentions
    assert mentioned("I have never been married.", marital) == {"Never Married"}  # not also Married
    assert mentioned("We got divorced, I was married for ten years.", marital) == {"Divorced", "Married"}
    assert mentioned("How are you?", marital) == set()


@pytest.mark.slow
def test_a_small_run_follows_corrections_and_leaves_other_facts_alone(
    shared_data: Path, tmp_path: Path, embedder: Embedder
) -> None:
    result = run(
        seed=0,
        twins=4,
        population=10,
        facts_per_twin=2,
        unrelated_items=5,
        free_answers=1,
        customers=2,
        styles=("new",),  # the new value in the survey's words: the phrasing corrections are built for
        settings=Settings(home=tmp_path / "unused", data_dir=shared_data),
        embedder=embedder,
        progress=False,
    )

    assert {"config", "gss", "retail", "runtime", "corrections"} <= set(result)
    assert result["config"]["llm"] and result["config"]["embedder"] and result["config"]["correction_judge"]
    gss = result["gss"]
    assert gss["corrections"] == 8 and result["retail"]["corrections"] == 2
    for row in result["corrections"]:
        assert row["event_id"].startswith("corr_") and row["targets"] and len(row["evidence"]) >= 2
    free = [r["free"] for r in result["corrections"] if "free" in r]
    assert len(free) == 1 and free[0]["answer"]

    # Before, the twins answered the old value; after, they follow the correction. The bars sit below what
    # seed 0 measured (here 8 of 8; in the version-1 full run 13 of 14 for this phrasing, and 26
    # of 29 where a correction was read as the survey answer: the pooled answer can still outvote it).
    assert gss["choice_was_old_before"]["share"] >= 0.75
    assert gss["choice_follows_correction"]["share"] >= 0.75
    assert gss["choice_follows_when_understood"]["share"] >= 0.8
    assert gss["evidence"]["correction_retrieved"]["share"] >= 0.75
    # Unrelated facts: no memory about another question is superseded, and unrelated answers do not move.
    assert gss["false_supersessions"] == 0
    assert gss["unrelated_memories_valid"]["share"] >= 0.99
    assert gss["unrelated_choices_unchanged"]["share"] >= 0.95
    assert result["retail"]["unrelated_memories_valid"]["share"] >= 0.99
