"""The twin2k evaluator's arithmetic on fixtures with known answers, and its catalogue on the real data."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from evals.core import pearson
from evals.twin2k import (
    Data,
    accuracy,
    design,
    fisher_mean_weighted,
    leave_one_out,
    load,
    population_records,
    score,
)


def test_accuracy_is_one_minus_the_distance_over_the_range() -> None:
    assert accuracy(3, 5, 1, 7) == pytest.approx(1 - 2 / 6)
    assert accuracy(4, 4, 1, 5) == 1.0
    assert accuracy(1, 5, 1, 5) == 0.0  # the two ends of the scale
    assert accuracy(0, 1, 0, 1) == 0.0  # a binary measure


def test_leave_one_out_is_the_mean_of_the_others() -> None:
    assert leave_one_out({"a": 1.0, "b": 2.0, "c": 6.0}) == {"a": 4.0, "b": 3.5, "c": 1.5}
    with pytest.raises(ValueError, match="2 or more"):
        leave_one_out({"a": 1.0})


def test_fisher_mean_weights_each_correlation_by_its_persons() -> None:
    assert fisher_mean_weighted([(0.5, 10), (0.5, 30)]) == 0.5
    assert fisher_mean_weighted([(0.3, 7), (-0.3, 7)]) == 0.0
    # z = (1 * atanh(0.9) + 3 * atanh(0.1)) / 4 = (1.47222 + 3 * 0.10034) / 4 = 0.44331; tanh -> 0.41637
    assert fisher_mean_weighted([(0.9, 1), (0.1, 3)]) == pytest.approx(0.4164, abs=1e-4)
    assert fisher_mean_weighted([(1.0, 5)]) == pytest.approx(0.9999)  # clipped: finite
    assert fisher_mean_weighted([]) is None


def _row(measure: str, person: str, human: float, twin: float, llm: float, loo: float, pop: float) -> dict:
    return {
        "measure": measure,
        "study": "s1" if measure == "m1" else "s2",
        "person": person,
        "human_value": human,
        "twin_value": twin,
        "llm_value": llm,
        "loo_value": loo,
        "population_value": pop,
    }


def test_score_by_hand_with_a_constant_vector_reported_as_a_failure() -> None:
    # m1 (range 1-5): people 1, 2, 4, 5. Twins 2, 2, 4, 4: distances 1, 0, 0, 1 -> accuracy 0.875.
    # Published LLM twins all say 3 (a constant: no correlation): distances 2, 1, 1, 2 -> 0.625.
    # Leave-one-out means 11/3, 10/3, 8/3, 7/3: distances 8/3, 4/3, 4/3, 8/3 -> 1 - 2/4 = 0.5.
    people = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 5.0}
    twins = {"a": 2.0, "b": 2.0, "c": 4.0, "d": 4.0}
    loo = leave_one_out(people)
    rows = [_row("m1", p, people[p], twins[p], 3.0, loo[p], 3.0) for p in people]
    # m2 (range 0-1), two persons: the twins get one of two right; no correlation with two persons.
    rows += [_row("m2", "a", 0.0, 0.0, 0.0, 1.0, 0.5), _row("m2", "b", 1.0, 0.0, 1.0, 0.0, 0.5)]
    summary, per_measure, failures = score(rows, {"m1": (1.0, 5.0), "m2": (0.0, 1.0)})

    m1 = next(m for m in per_measure if m["measure"] == "m1")
    assert m1["accuracy_twins"] == 0.875 and m1["accuracy_published_llm"] == 0.625
    assert m1["accuracy_baseline_loo_mean"] == 0.5 and m1["accuracy_baseline_population_mean"] == 0.625
    # twins on m1: deviations (-2, -1, 1, 2) and (-1, -1, 1, 1): r = 6 / sqrt(10 * 4)
    assert m1["correlation_twins"] == pytest.approx(6 / math.sqrt(40), abs=1e-4)
    assert m1["correlation_published_llm"] is None
    assert summary["accuracy"]["twins"] == pytest.approx((0.875 + 0.5) / 2)
    assert summary["accuracy"]["published_llm"] == pytest.approx((0.625 + 1.0) / 2)
    assert summary["accuracy_over_pairs"]["twins"] == pytest.approx(4.5 / 6)
    assert summary["correlation"]["twins"] == pytest.approx(0.9487, abs=1e-4)
    assert summary["correlation"]["published_llm"] is None  # never a NaN: a failure says why
    assert summary["exact_match"]["twins"] == pytest.approx(3 / 6)
    assert summary["accuracy_by_study"]["s2"]["twins"] == 0.5

    reasons = {(f["metric"], f.get("measure")): f["reason"] for f in failures}
    assert "same for all 4 persons" in reasons[("correlation.published_llm", "m1")]
    assert "2 persons" in reasons[("correlation.twins", "m2")]
    assert ("correlation.published_llm", None) in reasons  # no measure left with a defined correlation
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in summary["accuracy"].values())


# --- the real data: the catalogue, the published figures reproduced, the design (no model) ---------------


@pytest.fixture(scope="module")
def data() -> Data:
    from tests.conftest import SHARED_DATA

    folder = SHARED_DATA / "twin2k"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (set TWINCHAT_DATA_DIR)")
    return load(folder)


def test_the_catalogue_asks_the_single_questions_and_says_why_not_the_rest(data: Data) -> None:
    askable = [m for m in data.measures if m.askable]
    assert len(data.measures) == 164 and len(askable) == 88
    by_study = {m.folder for m in askable}
    assert by_study == {
        "accuracy_nudges",
        "consumer_minimalism",
        "hiring_algorithms",
        "infotainment",
        "obedient_twins",
        "preference_redistribution",
        "targeting_fairness",
    }
    # A direct question whose codes are Qualtrics recode values (choice ids 7..13 -> 1..6).
    fake = data.measure("Fake1_3").versions[0]
    assert [(o.label, o.value) for o in fake.options][:2] == [
        ("Extremely unlikely", 1.0),
        ("Moderately unlikely", 2.0),
    ]
    assert fake.text.startswith("Rare Pink Bananas")  # the headline shown before it in its block
    # Recoded by the authors: a flexible schedule is 4, strict 9-to-5 hours 1; "Don't know" is no answer.
    q9 = {o.label: o.value for o in data.measure("Q9").versions[0].options}
    assert q9["Strict 9-to-5 hours"] == 1.0 and q9["Clear boundaries between work and personal time"] == 3.0
    assert {o.value for o in data.measure("Father education").versions[0].options} == {10, 12, 13, 14, 16, 18}
    assert len(data.measure("Work vs Luck").versions[0].options) == 3
    # One question per condition: each person answered the algorithm's or the hiring team's version.
    job = data.measure("job1_item1")
    assert [v.column for v in job.versions] == ["Q27_1", "Q22_1"]
    assert set(data.seen["job1_item1"].values()) == {"Q27_1", "Q22_1"}
    # The trash holds an unused Q38 (a comment box); the bedroom question is the one asked.
    assert "bedroom" in data.measure("Q38").versions[0].text
    assert any("DV range 1-8" in n for n in data.measure("Profile1").notes)

    reasons = {m.name: m.reason for m in data.measures if not m.askable}
    assert "mean" in reasons["gratitude"]
    assert "constant sum" in reasons["Achap1_val"]
    assert "pipes per-person data" in reasons["rating_1_1"]
    assert "not a column of combined_dv_human.csv" in reasons["creativity_rating_byhuman"]
    assert "no range" in reasons["log_WTP"]
    assert "loop and merge" in reasons["rating3"]
    assert all(reasons.values())


def test_every_asked_measure_codes_the_people_as_the_human_file_does(data: Data) -> None:
    for m in data.measures:
        if m.askable:
            values = {v[m.name] for v in data.human.values() if m.name in v}
            assert values <= m.values, m.name
            assert len(data.seen[m.name]) == len([v for v in data.human.values() if m.name in v]), m.name


def test_the_published_accuracy_and_correlation_are_reproduced(data: Data) -> None:
    """combined_dv_llm.csv is the 'with_reasoning' run: our metrics on all persons give its published figures."""
    joint = {
        r["variable_name"]: r
        for r in csv.DictReader((data.folder / "post_metric_calculation" / "joint_vector_metrics.csv").open())
        if r["specification_name"] == "with_reasoning_2025-08-01"
    }
    for name in ("Q6", "fair1", "Profile1", "Father education", "job2_item3"):
        m = data.measure(name)
        pairs = [
            (h[name], data.llm[p][name]) for p, h in data.human.items() if name in h and name in data.llm[p]
        ]
        published = joint[name]
        got = sum(accuracy(b, a, *m.bounds) for a, b in pairs) / len(pairs)
        assert got == pytest.approx(float(published["current_accuracy"]), abs=1e-9), name
        r = pearson([a for a, _ in pairs], [b for _, b in pairs])
        assert r == pytest.approx(float(published["correlation"]), abs=1e-4), name
    average = fisher_mean_weighted([(float(r["correlation"]), int(r["n_points"])) for r in joint.values()])
    assert average == pytest.approx(0.2156, abs=1e-4)  # average_metrics_by_specification.csv, with_reasoning


def test_the_design_draws_disjoint_persons_and_never_ingests_their_answers(data: Data) -> None:
    plan = design(data, persons=30, population=50, seed=3, measures=["hiring_algorithms", "Q33"])
    again = design(data, persons=30, population=50, seed=3, measures=["hiring_algorithms", "Q33"])
    assert plan.persons == again.persons and not set(plan.persons) & set(plan.population)
    assert {m.folder for m in plan.measures} <= {"hiring_algorithms", "consumer_minimalism"}
    assert all(person in plan.persons for person, _ in plan.pairs)
    ingested = {r.record["customer_id"] for r in population_records(data, plan)}
    assert ingested and ingested <= {f"twin2k-{p}" for p in plan.population}
    record = next(iter(population_records(data, plan))).record
    assert record["question_id"].startswith("twin2k:") and record["text"].startswith("Q: ")
    with pytest.raises(ValueError, match="not an askable measure"):
        design(data, persons=5, population=5, seed=0, measures=["gratitude"])
    with pytest.raises(ValueError, match="were asked for"):
        design(data, persons=2000, population=0, seed=0)


def test_importing_the_evaluator_stays_cheap() -> None:
    import subprocess
    import sys

    heavy = ("pandas", "torch", "chromadb", "twinchat.services", "matplotlib")
    code = f"import sys, evals.twin2k; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "[]"
