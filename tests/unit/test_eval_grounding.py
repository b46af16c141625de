"""The grounding evaluation's pieces on tiny fixtures with known answers: questions, checks, ragas scoring, figures.

The whole run with real Chroma, MiniLM and SmolLM2: tests/integration/test_eval_grounding_real.py.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from evals.grounding import (
    ANSWERABLE,
    JUDGE_ENV,
    TYPES,
    UNANSWERABLE,
    Grounding,
    GroundingQuestion,
    Metric,
    abstains,
    ask,
    candidates,
    checks,
    denies,
    draw,
    judge_metrics,
    question_set,
    ragas_metrics,
    score,
)
from twinchat.domain.events import Event
from twinchat.testing import FakeChatModel, HashEmbedder, fake_service

ABSTAIN = "My history with you doesn't say anything about that, so I can't answer it honestly."

# One real-shaped retail customer (orders, a cancellation) and one synthetic customer (order, review, ticket, survey).
RETAIL = [
    {
        "event_id": "retail-100",
        "text": "Order 100 on 2011-01-05 (10.00 GBP): 2 x RED TEAPOT at 5.00 GBP each.",
        "timestamp": "2011-01-05T10:00:00",
        "source": "purchase",
        "kind": "order",
        "invoice": "100",
        "products": ["RED TEAPOT"],
        "total": 10.0,
    },
    {
        "event_id": "retail-200",
        "text": "Order 200 on 2011-03-07 (21.50 GBP): 1 x RED TEAPOT at 5.00 GBP each; 3 x BLUE MUG  at 5.50 GBP each.",
        "timestamp": "2011-03-07T11:00:00",
        "source": "purchase",
        "kind": "order",
        "invoice": "200",
        "products": ["RED TEAPOT", "BLUE MUG "],
        "total": 21.5,
    },
    {
        "event_id": "retail-C300",
        "text": "Cancelled order C300 on 2011-03-09 (5.50 GBP): 1 x BLUE MUG at 5.50 GBP each.",
        "timestamp": "2011-03-09T09:00:00",
        "source": "purchase",
        "kind": "cancellation",
        "invoice": "C300",
        "products": ["BLUE MUG"],
        "total": 5.5,
    },
]
SYNTHETIC = [
    {
        "event_id": "syn-1-order-1",
        "text": "Order S1-1 on 2011-02-01 (7.50 GBP): 3 x GREEN VASE at 2.50 GBP each.",
        "timestamp": "2011-02-01T10:00:00",
        "source": "purchase",
        "kind": "order",
        "invoice": "S1-1",
        "products": ["GREEN VASE"],
        "total": 7.5,
    },
    {
        "event_id": "syn-1-review-1",
        "text": "Really love the green vase: good value, would order again.",
        "timestamp": "2011-02-10T10:00:00",
        "source": "review",
        "invoice": "S1-1",
        "product": "GREEN VASE",
        "rating": 5,
    },
    {
        "event_id": "syn-1-ticket-1",
        "text": "The green vase from order S1-1 arrived damaged; I would like a replacement.",
        "timestamp": "2011-02-05T10:00:00",
        "source": "support",
        "invoice": "S1-1",
        "product": "GREEN VASE",
        "subject": "damaged item",
    },
    {
        "event_id": "syn-1-survey-delivery_day",
        "text": "Q: Which day do you prefer your deliveries? A: Saturday",
        "timestamp": "2011-03-01T10:00:00",
        "source": "survey",
        "question_id": "synth-delivery-day",
        "question": "Which day do you prefer your deliveries?",
        "answer": "Saturday",
    },
]


def events(records: list[dict[str, Any]], customer: str) -> list[Event]:
    return [Event.from_record({"customer_id": customer, **r}) for r in records]


def histories() -> dict[str, tuple[str, list[Event]]]:
    return {"c1": ("retail", events(RETAIL, "c1")), "syn-1": ("synthetic", events(SYNTHETIC, "syn-1"))}


def question(**fields: Any) -> GroundingQuestion:
    base = {
        "id": "q1",
        "twin_id": "c1",
        "family": "retail",
        "type": "purchase",
        "question": "?",
        "reference": "r",
    }
    return GroundingQuestion(**{**base, **fields})


def row(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "q1",
        "twin_id": "c1",
        "type": "purchase",
        "family": "retail",
        "answerable": True,
        "question": "Have you ever bought the red teapot?",
        "answer": "Yes.",
        "reference": "Yes.",
        "retrieved_contexts": [],
        "reference_contexts": [],
        "abstained_by_retrieval": False,
        "seconds": 1.0,
    }
    return {**base, **fields}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Metric]:
    return {m.name: m for m in ragas_metrics()}


# --- the question set ------------------------------------------------------------------------------------


def test_questions_from_a_retail_history_name_their_evidence_and_facts() -> None:
    import random

    found = candidates(
        "c1",
        events(RETAIL, "c1"),
        family="retail",
        catalogue=["RED TEAPOT", "BLUE MUG", "YELLOW LAMP", "PINK SPOON"],
        abstain=ABSTAIN,
        rng=random.Random(0),
    )
    assert set(found) == {
        "purchase",
        "last_order",
        "order_total",
        "cancellation",
        "never_bought",
        "off_history",
    }
    purchases = {q.question: q for q in found["purchase"]}
    teapot = purchases["Have you ever bought the red teapot?"]
    assert teapot.reference_ids == ("retail-100", "retail-200")  # both orders, oldest first
    assert (
        teapot.reference == "Yes, I bought the red teapot 2 times, most recently on 2011-03-07 (order 200)."
    )
    assert set(teapot.facts) == {"100", "2011-01-05", "200", "2011-03-07"}
    mug = purchases["Have you ever bought the blue mug?"]  # the trailing space of the raw description is gone
    assert mug.reference_ids == ("retail-200",) and mug.answerable

    (last,) = found["last_order"]
    assert last.reference_ids == ("retail-200",)  # the last order, not the later cancellation
    assert last.reference == "My last order was on 2011-03-07 (order 200, 21.50 GBP)."
    totals = {q.reference_ids: q for q in found["order_total"]}
    assert totals[("retail-200",)].question == "How much did you pay for order 200?"
    assert totals[("retail-200",)].facts == ("21.50",)
    (cancel,) = found["cancellation"]
    assert cancel.question == "Did you ever cancel or return the blue mug?"
    assert cancel.reference_ids == ("retail-C300",) and "C300" in cancel.facts and "300" in cancel.facts

    never = {q.question for q in found["never_bought"]}
    assert never == {"Have you ever bought the yellow lamp?", "Have you ever bought the pink spoon?"}
    for q in found["never_bought"] + found["off_history"]:
        assert not q.answerable and q.reference_contexts == () and q.reference == ABSTAIN
    assert len(found["off_history"]) == 3


def test_questions_from_a_synthetic_history_ask_about_reviews_tickets_and_surveys() -> None:
    import random

    found = candidates(
        "syn-1",
        events(SYNTHETIC, "syn-1"),
        family="synthetic",
        catalogue=[],
        abstain=ABSTAIN,
        rng=random.Random(0),
    )
    (review,) = found["review"]
    assert review.question == "What did you think of the green vase?"
    assert review.reference == SYNTHETIC[1]["text"] and review.reference_ids == ("syn-1-review-1",)
    (ticket,) = found["ticket"]
    assert ticket.question == "Did you have a problem with order S1-1?"
    assert ticket.reference_ids == ("syn-1-ticket-1",) and "damaged" in ticket.facts
    (survey,) = found["survey"]
    assert survey.question == "Which day do you prefer your deliveries?"
    assert survey.facts == ("Saturday",) and survey.reference_contexts == (SYNTHETIC[3]["text"],)
    assert "cancellation" not in found and "never_bought" not in found  # nothing to cancel; empty catalogue


def test_the_question_set_is_deterministic_and_spreads_the_types() -> None:
    first = question_set(histories(), per_twin=5, seed=3, abstain=ABSTAIN)
    again = question_set(histories(), per_twin=5, seed=3, abstain=ABSTAIN)
    assert first == again
    assert len(first) == 10 and len({q.id for q in first}) == 10
    for twin in ("c1", "syn-1"):
        kinds = [q.type for q in first if q.twin_id == twin]
        assert len(kinds) == len(set(kinds)) == 5  # one of a type before any type twice
    # Never-bought products come from the other twins' histories.
    never = [q for q in first if q.type == "never_bought"]
    assert all(("vase" in q.question) == (q.twin_id == "c1") for q in never)
    assert {q.type for q in question_set(histories(), per_twin=20, seed=3, abstain=ABSTAIN)} == set(TYPES)
    assert set(ANSWERABLE) | set(UNANSWERABLE) == set(TYPES)


# --- asking and the checks -------------------------------------------------------------------------------


def test_abstention_and_denial_are_read_from_the_answer() -> None:
    for text in (
        ABSTAIN,
        "I don't know.",
        "I do not remember that order.",
        "I’m not sure.",
        "There is no record.",
    ):
        assert abstains(text), text
    for text in ("Yes, I bought it on 2011-03-07.", "I loved the teapot.", "No, I never bought it."):
        assert not abstains(text), text
    assert denies("No, I have never bought the lamp.") and denies("I didn't cancel it.")
    assert not denies("Yes, twice.") and not denies("I know nothing about it.")


def test_checks_of_an_answer_with_a_marker_naming_unseen_evidence() -> None:
    q = question(reference_ids=("e2", "e9"), facts=("2011-03-07",))
    asked = {
        "answer": "Yes, on 2011-03-07.",
        "raw": "Yes, on 2011-03-07 [E2] [E4].",
        "abstained_by_retrieval": False,
        "retrieved_ids": ["e1", "e2", "e3"],
        "shown_ids": ["e1", "e2", "e3"],
        "cited_ids": ["e2"],
    }
    result = checks(q, asked)
    assert result["invalid_markers"] == ["E4"] and result["citations_valid"] is False
    assert result["explicit_citation"] and result["cites_reference"]
    assert result["evidence_hit"] and result["evidence_recall"] == 0.5 and result["reciprocal_rank"] == 0.5
    assert result["fact_in_answer"] and not result["abstained"] and not result["denied"]

    clean = checks(q, {**asked, "raw": "Yes, on 2011-03-07 [E2]."})
    assert clean["citations_valid"] and clean["invalid_markers"] == []
    outside = checks(q, {**asked, "raw": "Yes.", "cited_ids": ["e7"]})  # cited, but never retrieved
    assert (
        not outside["citations_valid"] and not outside["explicit_citation"] and not outside["cites_reference"]
    )
    missed = checks(
        q, {**asked, "retrieved_ids": ["e1"], "shown_ids": ["e1"], "cited_ids": ["e1"], "raw": "No."}
    )
    assert not missed["evidence_hit"] and missed["evidence_recall"] == 0 and missed["reciprocal_rank"] == 0


def test_checks_of_an_unanswerable_question_count_abstention_only() -> None:
    asked = {
        "answer": ABSTAIN,
        "raw": ABSTAIN,
        "abstained_by_retrieval": True,
        "retrieved_ids": [],
        "shown_ids": [],
        "cited_ids": [],
    }
    result = checks(question(type="off_history"), asked)
    assert result["abstained"] and result["citations_valid"]
    assert (
        result["evidence_hit"] is None
        and result["fact_in_answer"] is None
        and result["cites_reference"] is None
    )


def test_ask_records_retrieval_the_raw_markers_and_the_citations(tmp_path: Path) -> None:
    chat = FakeChatModel(["Yes, I bought the red teapot [E1] [E9]."])
    service = fake_service(tmp_path, chat_model=chat, min_relevance=0.0)
    records = [{"customer_id": "c1", **r} for r in RETAIL]
    from twinchat.domain.readers import RawRecord

    service.ingest_records([RawRecord("fixture", i, r) for i, r in enumerate(records)])
    q = question(question="Have you ever bought the red teapot?", reference_ids=("retail-100", "retail-200"))
    asked = ask(service, q)
    assert asked["answer"] == "Yes, I bought the red teapot." and "[E9]" in asked["raw"]
    assert asked["retrieved_ids"] and asked["shown_ids"] == asked["retrieved_ids"]
    assert asked["cited_ids"] == asked["shown_ids"][:1]
    result = checks(q, asked)
    assert result["invalid_markers"] == ["E9"] and not result["citations_valid"]


# --- ragas scoring ---------------------------------------------------------------------------------------


def test_identical_answer_and_reference_score_one(metrics: dict[str, Metric]) -> None:
    rows = [row(answer="Order 200 cost 21.50 GBP.", reference="Order 200 cost 21.50 GBP.")]
    assert score(rows, [metrics["string_similarity"], metrics["rouge_l"]]) == []
    assert rows[0]["string_similarity"] == 1.0 and rows[0]["rouge_l"] == 1.0


def test_context_precision_and_recall_have_known_values(metrics: dict[str, Metric]) -> None:
    a = "Order 100 on 2011-01-05 (10.00 GBP): 2 x RED TEAPOT at 5.00 GBP each."
    b = "Cancelled order C300 on 2011-03-09 (5.50 GBP): 1 x BLUE MUG at 5.50 GBP each."
    c = "Really love the green vase: good value, would order again."
    x = "Q: Which day do you prefer your deliveries? A: Saturday"
    rows = [row(retrieved_contexts=[a, x, b], reference_contexts=[a, b, c])]
    assert score(rows, [metrics["context_precision"], metrics["context_recall"]]) == []
    # Relevant at ranks 1 and 3: average precision (1/1 + 2/3) / 2; two of the three references retrieved.
    assert rows[0]["context_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert rows[0]["context_recall"] == pytest.approx(2 / 3, abs=1e-4)


def test_nothing_retrieved_scores_zero_and_unanswerable_questions_are_not_scored(
    metrics: dict[str, Metric],
) -> None:
    context = [metrics["context_precision"], metrics["context_recall"]]
    empty = [row(retrieved_contexts=[], reference_contexts=["Order 100 on 2011-01-05."])]
    assert score(empty, context) == []
    assert empty[0]["context_precision"] == 0.0 and empty[0]["context_recall"] == 0.0
    unanswerable = [row(answerable=False, retrieved_contexts=["Order 100."], reference_contexts=[])]
    assert score(unanswerable, context) == []  # not applicable: neither a value nor a failure
    assert unanswerable[0]["context_precision"] is None and unanswerable[0]["context_recall"] is None


def test_a_metric_that_gives_nan_or_raises_is_a_failure_not_a_nan(metrics: dict[str, Metric]) -> None:
    async def nan(r: dict[str, Any]) -> float:
        return float("nan") if r["id"] == "q2" else 0.5

    async def boom(r: dict[str, Any]) -> float:
        raise RuntimeError("the judge is down")

    async def nothing(r: dict[str, Any]) -> None:
        return None

    rows = [row(id="q1"), row(id="q2"), row(id="q3", type="off_history", answerable=False)]
    flaky = [Metric("flaky", nan), Metric("broken", boom), Metric("silent", nothing), metrics["rouge_l"]]
    failures = score(rows, flaky)
    assert {(f["metric"], f["question"]) for f in failures} == {
        ("flaky", "q2"),
        *(("broken", q) for q in ("q1", "q2", "q3")),
        *(("silent", q) for q in ("q1", "q2", "q3")),
    }
    assert all(f["reason"] for f in failures)
    assert next(f for f in failures if f["metric"] == "broken")["reason"] == "RuntimeError: the judge is down"
    assert [r["flaky"] for r in rows] == [0.5, None, 0.5] and all(r["broken"] is None for r in rows)

    for r in rows:
        r.update(checks(question(reference_ids=("e1",) if r["answerable"] else ()), _asked()))
    summary = Grounding()._summary(rows, flaky, failures, {"ask": 1.0}, time.perf_counter())
    assert summary["metrics"]["flaky"] == {"mean": 0.5, "n": 2, "failed": 1, "not_applicable": 0}
    assert summary["metrics"]["broken"] == {"mean": None, "n": 0, "failed": 3, "not_applicable": 0}
    json.dumps(summary, allow_nan=False)  # no NaN anywhere


def test_a_slow_metric_times_out_as_a_failure() -> None:
    import asyncio

    async def slow(r: dict[str, Any]) -> float:
        await asyncio.sleep(5)
        return 1.0

    rows = [row()]
    (failed,) = score(rows, [Metric("slow", slow)], timeout=0.05)
    assert failed["metric"] == "slow" and "TimeoutError" in failed["reason"] and rows[0]["slow"] is None


def test_judge_metrics_need_an_openai_judge_and_build_without_calling_it() -> None:
    with pytest.raises(ValueError, match="openai:MODEL"):
        judge_metrics("local:smollm2", base_url=None, api_key=None, embedder=HashEmbedder(8))
    built = judge_metrics(
        "openai:judge-model", base_url="http://127.0.0.1:9/v1", api_key="k", embedder=HashEmbedder(8)
    )
    faithfulness, relevancy = built
    assert (faithfulness.name, relevancy.name) == ("faithfulness", "answer_relevancy")
    assert not faithfulness.applies(row(abstained_by_retrieval=True)) and faithfulness.applies(row())
    # Against an endpoint that is not there, each question's judgement is a failure with its reason.
    rows = [row(summary="", shown_contexts=["Order 100."])]
    failures = score(rows, built, timeout=30)
    assert {f["metric"] for f in failures} == {"faithfulness", "answer_relevancy"}
    assert rows[0]["faithfulness"] is None and rows[0]["answer_relevancy"] is None


# --- options and figures ---------------------------------------------------------------------------------


def test_options_merge_the_defaults_and_the_judge_comes_from_the_environment(monkeypatch) -> None:
    assert Grounding(twins=2, judge=None).options["twins"] == 2
    assert Grounding().options["questions_per_twin"] == 4 and Grounding().options["judge"] is None
    monkeypatch.setenv(JUDGE_ENV, "openai:gpt-4o-mini")
    assert Grounding().options["judge"] == "openai:gpt-4o-mini"
    assert Grounding(judge="openai:other").options["judge"] == "openai:other"
    with pytest.raises(ValueError, match="unknown grounding options"):
        Grounding(twinz=3)
    parser = argparse.ArgumentParser()
    Grounding.add_arguments(parser)
    args = parser.parse_args(["--twins", "5", "--questions-per-twin", "3", "--judge", "openai:m"])
    assert (args.twins, args.questions_per_twin, args.judge, args.customers) == (5, 3, "openai:m", None)
    assert set(Grounding.quick_options()) <= set(Grounding().options)


def test_figures_are_drawn_from_a_summary(tmp_path: Path) -> None:
    rows = []
    for i, kind in enumerate(TYPES):
        answerable = kind in ANSWERABLE
        r = row(id=f"q{i}", type=kind, family="retail" if i % 2 else "synthetic", answerable=answerable)
        r.update(checks(question(reference_ids=("e1",) if answerable else ()), _asked()))
        r.update(context_precision=0.5 if answerable else None, context_recall=1.0 if answerable else None)
        r.update(string_similarity=0.25, rouge_l=0.75)
        rows.append(r)
    names = ["context_precision", "context_recall", "string_similarity", "rouge_l"]
    summary = Grounding()._summary(rows, [Metric(n, _never) for n in names], [], {}, time.perf_counter())
    assert summary["overall"]["evidence_hit"] == {"share": 1.0, "count": 7, "of": 7}
    assert summary["by_type"]["off_history"]["context_recall"] is None
    assert summary["by_type"]["purchase"]["context_recall"] == 1.0
    figures = draw(tmp_path, summary, names)
    for figure in figures:
        assert (tmp_path / figure.file).stat().st_size > 1000
    assert all(not isinstance(v, float) or math.isfinite(v) for v in summary["overall"].values())


def _asked() -> dict[str, Any]:
    return {
        "answer": "Yes [E1].",
        "raw": "Yes [E1].",
        "abstained_by_retrieval": False,
        "retrieved_ids": ["e1"],
        "shown_ids": ["e1"],
        "cited_ids": ["e1"],
    }


async def _never(r: dict[str, Any]) -> float:
    raise AssertionError("not called")
