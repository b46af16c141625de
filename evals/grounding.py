"""Grounding: ../shared/BENCHMARKS.md section 3, "answers against their retrieved evidence" (ragas).

The twins are ``twinchat demo``'s, built with the code a user runs in a temporary TWINCHAT_HOME: the most active
Online Retail customers and synthetic customers (seed 0, the spec's templated reviews and tickets). The question
set is drawn with the seed from each asked twin's stored history (:func:`question_set`), each question with its
reference evidence (the event ids that answer it) and a reference answer; questions the history cannot answer
have no reference evidence and an honest "my history does not say" as their reference. Written to
OUT/questions.jsonl. Each question is asked through ``TwinService.ask_stream``, the free answer users get.

Scores, per question, overall, by question type and by family (real or synthetic customers):

- ragas without an LLM, always: context precision and recall against the reference evidence (string matching of
  texts), string similarity and ROUGE-L of the answer against the reference answer;
- ragas with an LLM judge, when ``--judge openai:MODEL`` names an OpenAI-compatible endpoint (OPENAI_BASE_URL,
  OPENAI_API_KEY): faithfulness and answer relevancy, the latter with twinchat's own embedder;
- twinchat's own checks: citations valid (cited ids among those retrieved, no marker naming evidence that was not
  shown), reference evidence retrieved (hit@k, recall@k by id, reciprocal rank), the key fact in the answer, and
  abstention (on unanswerable questions: right; on answerable ones: false).

A metric that raises or gives NaN for a question is a failure, listed with its reason and left out of its mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evals.core import Evaluator, Figure, Outcome, failure, mean

if TYPE_CHECKING:
    from twinchat.config import Settings
    from twinchat.domain.events import Event
    from twinchat.ports import Embedder
    from twinchat.services import TwinService

ANSWERABLE = ("purchase", "last_order", "order_total", "cancellation", "review", "ticket", "survey")
UNANSWERABLE = ("never_bought", "off_history")
TYPES = ANSWERABLE + UNANSWERABLE
# Things no demo history touches: asked of every kind of twin, the honest answer is that it does not know.
OFF_HISTORY = (
    "Which football team do you support?",
    "What car do you drive?",
    "How many children do you have?",
    "Where did you go on holiday last year?",
    "What do you do for a living?",
    "Do you have a dog or a cat?",
    "Which newspaper do you read?",
    "What was the last film you saw at the cinema?",
)
TICKET_FACTS = {  # a ticket's subject (synth_default.yaml) and the words by which an answer states it
    "damaged item": ("damaged", "broken"),
    "missing item": ("missing", "without"),
    "late delivery": ("late", "longer", "delay"),
    "wrong quantity": ("fewer", "quantity", "wrong"),
}
JUDGE_ENV = "TWINCHAT_EVAL_JUDGE"  # the judge when --judge is not given, e.g. openai:gpt-4o-mini
JUDGE_TIMEOUT_S = 180.0
DEFAULTS: dict[str, Any] = {
    "customers": 60,  # `twinchat demo`'s defaults: the twins a user of the demo sees
    "synthetic": 20,
    "twins": 15,  # asked per family: this many real and this many synthetic twins, drawn with the seed
    "questions_per_twin": 4,
    "judge": None,
    "judge_base_url": None,
    "seed": 0,
}
# The citation markers PersonaPrompter.citations reads, before it strips them from the answer.
_MARKER = re.compile(r"\[\s*(E\d+(?:\s*,\s*E\d+)*)\s*\]")
_ABSTAIN = re.compile(
    r"\b(?:do not|don't|dont|can't|cannot|can not|couldn't|could not) (?:know|remember|recall|say|tell|answer)\b"
    r"|\bnot sure\b|\bno idea\b|\bno (?:record|information|mention|memory)\b|\bunable to (?:answer|say)\b"
    r"|\b(?:doesn't|does not|didn't|did not) (?:say|mention|tell|show)\b|\bnot (?:mentioned|recorded)\b",
    re.IGNORECASE,
)
_DENY = re.compile(
    r"^\W*no\b|\bnever (?:bought|ordered|purchased|cancelled|returned)\b"
    r"|\b(?:did not|didn't|have not|haven't) (?:buy|bought|order|ordered|purchase|purchased|cancel|return)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GroundingQuestion:
    """One question for one twin, with what answers it: the reference evidence (event ids and their texts), a
    reference answer, and the key facts of which any one in an answer states it (empty: no such check)."""

    id: str
    twin_id: str
    family: str  # "retail" (a real Online Retail customer) or "synthetic"
    type: str
    question: str
    reference: str
    reference_ids: tuple[str, ...] = ()
    reference_contexts: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.reference_ids)


@dataclass(frozen=True)
class Metric:
    """A score of one asked question (a row); ``applies`` says which rows it is defined for."""

    name: str
    score: Callable[[Mapping[str, Any]], Awaitable[float | None]]
    applies: Callable[[Mapping[str, Any]], bool] = lambda row: True
    not_applicable: str = ""  # why it is not defined for the other rows, for the notes


# --- the question set ------------------------------------------------------------------------------------


def candidates(
    twin_id: str,
    events: Sequence[Event],
    *,
    family: str,
    catalogue: Sequence[str],
    abstain: str,
    rng: random.Random,
) -> dict[str, list[GroundingQuestion]]:
    """Every question of each type this history supports, in an order drawn with ``rng``.

    ``catalogue``: product names of all demo twins, from which never-bought products are drawn.
    """
    found: dict[str, list[GroundingQuestion]] = defaultdict(list)
    # A store returns events in no promised order; the draw must not depend on it.
    events = sorted(events, key=_when)

    def add(kind: str, question: str, reference: str, refs: Sequence[Event] = (), facts: Sequence[str] = ()):
        n = len(found[kind]) + 1
        found[kind].append(
            GroundingQuestion(
                f"{twin_id}:{kind}:{n}",
                twin_id,
                family,
                kind,
                question,
                reference,
                tuple(e.event_id for e in refs),
                tuple(e.text for e in refs),
                tuple(facts),
            )
        )

    orders = [e for e in events if e.kind == "order"]
    cancelled = [e for e in events if e.kind == "cancellation"]
    by_product: dict[str, list[Event]] = defaultdict(list)
    for order in orders:
        for product in dict.fromkeys(_products(order)):
            by_product[product].append(order)
    # Products in one to three orders: their reference evidence fits in the k items retrieval returns.
    for product, refs in _drawn(by_product.items(), rng, 3, lambda kv: 1 <= len(kv[1]) <= 3):
        last = refs[-1]
        times = "" if len(refs) == 1 else f" {len(refs)} times, most recently"
        add(
            "purchase",
            f"Have you ever bought the {product.lower()}?",
            f"Yes, I bought the {product.lower()}{times} on {_day(last)} (order {_invoice(last)}).",
            refs,
            [f for r in refs for f in (_invoice(r), _day(r))],
        )
    if orders:
        last = orders[-1]
        add(
            "last_order",
            "When did you last order from us?",
            f"My last order was on {_day(last)} (order {_invoice(last)}, {_money(last)} GBP).",
            [last],
            [_day(last), _invoice(last)],
        )
    for order in _drawn(orders, rng, 3, lambda e: "total" in e.attributes and "invoice" in e.attributes):
        add(
            "order_total",
            f"How much did you pay for order {_invoice(order)}?",
            f"Order {_invoice(order)} cost {_money(order)} GBP.",
            [order],
            [_money(order)],
        )
    returned: dict[str, list[Event]] = defaultdict(list)
    for event in cancelled:
        for product in dict.fromkeys(_products(event)):
            returned[product].append(event)
    for product, refs in _drawn(returned.items(), rng, 3, lambda kv: len(kv[1]) <= 3):
        add(
            "cancellation",
            f"Did you ever cancel or return the {product.lower()}?",
            f"Yes, I cancelled order {_invoice(refs[-1])} on {_day(refs[-1])}, which had the {product.lower()}.",
            refs,
            [f for r in refs for f in (_invoice(r), _invoice(r).lstrip("C"), _day(r))],
        )
    for review in _drawn(
        [e for e in events if e.source == "review"], rng, 3, lambda e: "product" in e.attributes
    ):
        product = _name(str(review.attributes["product"])).lower()
        add("review", f"What did you think of the {product}?", review.text, [review])
    for ticket in _drawn(
        [e for e in events if e.source == "support"], rng, 3, lambda e: "invoice" in e.attributes
    ):
        subject = str(ticket.attributes.get("subject", ""))
        add(
            "ticket",
            f"Did you have a problem with order {_invoice(ticket)}?",
            f"Yes. {ticket.text}",
            [ticket],
            TICKET_FACTS.get(subject, ()),
        )
    surveys = [
        e
        for e in events
        if e.source == "survey" and e.attributes.get("question") and e.attributes.get("answer")
    ]
    for survey in _drawn(surveys, rng, 3):
        answer = str(survey.attributes["answer"])
        add("survey", str(survey.attributes["question"]), f"My answer is: {answer}.", [survey], [answer])

    said = " ".join(_name(e.text).lower() for e in events)
    never = sorted({p for p in catalogue if p.lower() not in said})
    for product in rng.sample(never, min(3, len(never))):
        add("never_bought", f"Have you ever bought the {product.lower()}?", abstain)
    for question in rng.sample(OFF_HISTORY, 3):
        add("off_history", question, abstain)
    return dict(found)


def question_set(
    histories: Mapping[str, tuple[str, Sequence[Event]]],
    *,
    per_twin: int,
    seed: int,
    abstain: str,
    catalogue: Sequence[str] | None = None,
) -> list[GroundingQuestion]:
    """``per_twin`` questions for each twin (``histories``: twin id -> (family, its events)), deterministic for a
    seed. Types are spread over the whole set: each twin takes the types used least so far first, at most one
    of a type until it has asked every type it can, so a small run still covers every type."""
    rng = random.Random(seed)
    if catalogue is None:
        catalogue = sorted({p for _, events in histories.values() for e in events for p in _products(e)})
    used: Counter[str] = Counter()
    chosen: list[GroundingQuestion] = []
    for twin_id in sorted(histories):
        family, events = histories[twin_id]
        pool = candidates(twin_id, events, family=family, catalogue=catalogue, abstain=abstain, rng=rng)
        mine: list[GroundingQuestion] = []
        while len(mine) < per_twin and any(pool.values()):
            kinds = [k for k in TYPES if pool.get(k)]
            rng.shuffle(kinds)
            kinds.sort(key=lambda k: used[k])  # stable: ties stay in the shuffled order
            for kind in kinds[: per_twin - len(mine)]:
                mine.append(pool[kind].pop(0))
                used[kind] += 1
        chosen.extend(mine)
    return chosen


def abstains(text: str) -> bool:
    """Whether an answer says the twin does not know, rather than answering.

    >>> abstains("I don’t remember buying that."), abstains("Yes, I bought it in May.")
    (True, False)
    """
    return bool(_ABSTAIN.search(text.replace("\u2019", "'")))


def denies(text: str) -> bool:
    """Whether an answer says no: "No, I never bought it" claims a fact the history does not hold either.

    >>> denies("No, I have never bought the lantern."), denies("I don't know."), denies("Yes, in May.")
    (True, False, False)
    """
    return bool(_DENY.search(text.replace("\u2019", "'")))


# --- asking and the checks that need no LLM ----------------------------------------------------------------


def ask(service: TwinService, question: GroundingQuestion) -> dict[str, Any]:
    """Ask one question as a user does (``ask_stream``), and record what retrieval returned, what the LLM was
    shown, what it wrote (citation markers included) and what the answer cites."""
    from twinchat.domain.models import Answer

    twin_id = question.twin_id
    retrieved = [s.memory for s in service.retrieve(twin_id, question.question)]
    # The same prompt ask_stream builds: the evidence shown is what fits in the context, best first.
    shown = service.prompter.build(
        twin_id, question.question, retrieved, summary=service.profile(twin_id).summary
    ).evidence
    started = time.perf_counter()
    pieces: list[str] = []
    answer: Answer | None = None
    for part in service.ask_stream(twin_id, question.question):
        if isinstance(part, Answer):
            answer = part
        else:
            pieces.append(part)
    assert answer is not None
    return {
        "answer": answer.answer,
        "raw": "".join(pieces),
        "abstained_by_retrieval": answer.abstained,
        "retrieved_ids": [m.event.event_id for m in retrieved],
        "retrieved_contexts": [m.event.text for m in retrieved],
        "shown_ids": [item.memory.event.event_id for item in shown],
        "cited_ids": [c.event_id for c in answer.citations],
        "seconds": round(time.perf_counter() - started, 2),
    }


def checks(question: GroundingQuestion, asked: Mapping[str, Any]) -> dict[str, Any]:
    """twinchat's own checks of one answer; None where a check does not apply to the question."""
    retrieved, cited, shown = asked["retrieved_ids"], asked["cited_ids"], asked["shown_ids"]
    aliases = {f"E{i}" for i in range(1, len(shown) + 1)}
    markers = [a.strip() for group in _MARKER.findall(asked["raw"]) for a in group.split(",")]
    explicit = [a for a in markers if a in aliases]
    invalid = [a for a in markers if a not in aliases]
    abstained = asked["abstained_by_retrieval"] or abstains(asked["answer"])
    row: dict[str, Any] = {
        "abstained": abstained,
        "denied": not abstained and denies(asked["answer"]),
        "citations_valid": set(cited) <= set(retrieved) and not invalid,
        "explicit_citation": bool(explicit),
        "invalid_markers": invalid,
        "evidence_hit": None,
        "evidence_recall": None,
        "reciprocal_rank": None,
        "cites_reference": None,
        "fact_in_answer": None,
    }
    if question.answerable:
        refs = set(question.reference_ids)
        ranks = [i for i, e in enumerate(retrieved, start=1) if e in refs]
        explicit_ids = {shown[int(a[1:]) - 1] for a in explicit}
        row.update(
            evidence_hit=bool(ranks),
            evidence_recall=round(len(refs & set(retrieved)) / len(refs), 4),
            reciprocal_rank=round(1 / ranks[0], 4) if ranks else 0.0,
            cites_reference=bool(explicit_ids & refs),
        )
        if question.facts:
            text = asked["answer"].lower()
            row["fact_in_answer"] = any(f.lower() in text for f in question.facts)
    return row


# --- ragas ---------------------------------------------------------------------------------------------


def ragas_metrics() -> list[Metric]:
    """ragas' metrics that need no LLM. Context metrics are defined for answerable questions only: with no
    reference evidence there is nothing to be precise or complete about (retrieval on unanswerable questions is
    reported as the share that retrieved nothing)."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from ragas.dataset_schema import SingleTurnSample
    from ragas.metrics.collections import NonLLMStringSimilarity, RougeScore

    with warnings.catch_warnings():
        # ragas 0.4.3 has its non-LLM context metrics only in the older API (ragas.metrics.collections has none),
        # whose import warns that the module path is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall

    precision, recall = NonLLMContextPrecisionWithReference(), NonLLMContextRecall()
    similarity, rouge = NonLLMStringSimilarity(), RougeScore(rouge_type="rougeL", mode="fmeasure")

    def sample(row: Mapping[str, Any]) -> Any:
        return SingleTurnSample(
            retrieved_contexts=list(row["retrieved_contexts"]),
            reference_contexts=list(row["reference_contexts"]),
        )

    # Nothing retrieved for an answerable question: no reference was found, so recall and average precision are
    # 0 (as trec_eval counts them); ragas' recall would raise on the empty list.
    async def context_precision(row: Mapping[str, Any]) -> float | None:
        return await precision.single_turn_ascore(sample(row)) if row["retrieved_contexts"] else 0.0

    async def context_recall(row: Mapping[str, Any]) -> float | None:
        return await recall.single_turn_ascore(sample(row)) if row["retrieved_contexts"] else 0.0

    async def string_similarity(row: Mapping[str, Any]) -> float | None:
        return (await similarity.ascore(reference=row["reference"], response=row["answer"])).value

    async def rouge_l(row: Mapping[str, Any]) -> float | None:
        return (await rouge.ascore(reference=row["reference"], response=row["answer"])).value

    def answerable(row: Mapping[str, Any]) -> bool:
        return bool(row["answerable"])

    why = "unanswerable questions have no reference evidence"
    return [
        Metric("context_precision", context_precision, answerable, why),
        Metric("context_recall", context_recall, answerable, why),
        Metric("string_similarity", string_similarity),
        Metric("rouge_l", rouge_l),
    ]


def judge_metrics(
    judge: str, *, base_url: str | None, api_key: str | None, embedder: Embedder
) -> list[Metric]:
    """Faithfulness and answer relevancy, judged by ``openai:MODEL`` at an OpenAI-compatible ``base_url``.

    ragas 0.4.3's current metrics take an LLM made by ``llm_factory`` over an OpenAI client (they refuse its
    deprecated LangChain wrappers); relevancy embeds with twinchat's own embedder.
    """
    kind, _, model = judge.partition(":")
    if kind != "openai" or not model:
        raise ValueError(f"judge {judge!r}: use openai:MODEL, served at OPENAI_BASE_URL (OPENAI_API_KEY)")
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory
    from ragas.metrics.collections import AnswerRelevancy, Faithfulness

    client = AsyncOpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=JUDGE_TIMEOUT_S, max_retries=1
    )
    llm = llm_factory(model, client=client)
    faithfulness = Faithfulness(llm=llm)
    relevancy = AnswerRelevancy(llm=llm, embeddings=_ragas_embeddings(embedder))

    async def faithful(row: Mapping[str, Any]) -> float | None:
        contexts = [row["summary"], *row["shown_contexts"]] if row["summary"] else list(row["shown_contexts"])
        result = await faithfulness.ascore(
            user_input=row["question"], response=row["answer"], retrieved_contexts=contexts
        )
        return result.value

    async def relevant(row: Mapping[str, Any]) -> float | None:
        return (await relevancy.ascore(user_input=row["question"], response=row["answer"])).value

    def generated(row: Mapping[str, Any]) -> bool:
        return not row["abstained_by_retrieval"]

    return [
        Metric(
            "faithfulness",
            faithful,
            generated,
            "the twin abstained before generating: no evidence, no claims",
        ),
        Metric("answer_relevancy", relevant),
    ]


def score(
    rows: Sequence[dict[str, Any]], metrics: Sequence[Metric], *, timeout: float | None = None
) -> list[dict[str, Any]]:
    """Put each metric's value into each row it applies to (None where it failed or does not apply), and
    return the failures: a metric that raised, timed out, or gave NaN or no value."""
    import asyncio

    failures: list[dict[str, Any]] = []

    async def one(metric: Metric, row: dict[str, Any]) -> None:
        row[metric.name] = None
        if not metric.applies(row):
            return
        try:
            value = await asyncio.wait_for(metric.score(row), timeout)
        except Exception as exc:  # noqa: BLE001 - any error of a metric is reported, never a crash or a NaN
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            failures.append(failure(metric.name, reason, question=row["id"]))
            return
        if value is None or not math.isfinite(float(value)):
            failures.append(failure(metric.name, f"returned {value}", question=row["id"]))
            return
        row[metric.name] = round(float(value), 4)

    async def every() -> None:
        for row in rows:
            for metric in metrics:
                await one(metric, row)

    asyncio.run(every())
    return failures


def _ragas_embeddings(embedder: Embedder) -> Any:
    from ragas.embeddings.base import BaseRagasEmbedding

    class ProjectEmbedding(BaseRagasEmbedding):
        """twinchat's embedder (the one its retrieval uses) behind ragas' embedding interface."""

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return embedder.embed(text)

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return embedder.embed(text)

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return embedder.embed_batch(texts)

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return embedder.embed_batch(texts)

    return ProjectEmbedding()


# --- the figures -----------------------------------------------------------------------------------------


def summarize(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """The figures of a set of answered rows: each metric's mean over the rows it has a value for, and the
    shares of the checks over the rows they apply to."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    generated = [r for r in rows if not r["abstained_by_retrieval"]]
    figures: dict[str, Any] = {"questions": len(rows), "answerable": len(answerable)}
    for name in metrics:
        figures[name] = mean([r[name] for r in rows if r.get(name) is not None])
    figures.update(
        evidence_hit=_share(answerable, "evidence_hit"),
        evidence_recall=mean([r["evidence_recall"] for r in answerable]),
        mrr=mean([r["reciprocal_rank"] for r in answerable]),
        citations_valid=_share(generated, "citations_valid"),
        explicit_citation=_share(generated, "explicit_citation"),
        cites_reference=_share(answerable, "cites_reference"),
        fact_in_answer=_share(answerable, "fact_in_answer"),
        abstained_on_unanswerable=_share(unanswerable, "abstained"),
        abstained_on_answerable=_share(answerable, "abstained"),
        no_evidence=_share(rows, "abstained_by_retrieval"),
        denied=_share(rows, "denied"),
    )
    return figures


def _share(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    known = [r[key] for r in rows if r.get(key) is not None]
    hits = sum(bool(v) for v in known)
    return {"share": round(hits / len(known), 4) if known else None, "count": hits, "of": len(known)}


def _flat(figures: Mapping[str, Any]) -> dict[str, float | None]:
    return {k: v["share"] if isinstance(v, Mapping) else v for k, v in figures.items()}


def draw(out: Path, summary: Mapping[str, Any], metrics: Sequence[str]) -> list[Figure]:
    from evals import plots

    overall, by_type, by_family = _flat(summary["overall"]), summary["by_type"], summary["by_family"]
    shown = [*metrics, "evidence_hit", "citations_valid", "fact_in_answer"]
    plots.grouped_bars(
        out / "metrics.png",
        {m: {"all": overall[m], **{f: _flat(by_family[f])[m] for f in by_family}} for m in shown},
        title="Grounding metrics: all questions and by customer family",
        ylabel="mean or share",
    )
    answerable = [t for t in TYPES if t in by_type and t in ANSWERABLE]
    retrieval = ("evidence_hit", "evidence_recall", "context_recall", "context_precision")
    plots.grouped_bars(
        out / "retrieval_by_type.png",
        {t: {m: _flat(by_type[t])[m] for m in retrieval} for t in answerable},
        title="Retrieval by question type (answerable questions)",
        ylabel="mean or share",
    )
    answers = [
        m
        for m in ("string_similarity", "rouge_l", "fact_in_answer", "faithfulness", "answer_relevancy")
        if m in overall
    ]
    plots.grouped_bars(
        out / "answers_by_type.png",
        {t: {m: _flat(by_type[t])[m] for m in answers} for t in TYPES if t in by_type},
        title="Answers by question type",
        ylabel="mean or share",
    )
    plots.grouped_bars(
        out / "abstention_by_type.png",
        {
            t: {
                "abstained (text or no evidence)": _flat(by_type[t])[
                    "abstained_on_answerable" if t in ANSWERABLE else "abstained_on_unanswerable"
                ],
                "no evidence retrieved": _flat(by_type[t])["no_evidence"],
                "denied (no, never)": _flat(by_type[t])["denied"],
            }
            for t in TYPES
            if t in by_type
        },
        title="Abstention by question type",
        ylabel="share of questions",
    )
    return [
        Figure(
            "metrics.png",
            "Grounding metrics",
            "ragas (context metrics over answerable questions only) and twinchat's checks, all questions and "
            "per family of customers.",
        ),
        Figure(
            "retrieval_by_type.png",
            "Retrieval by question type",
            "hit@k and recall@k by event id (exact); ragas' context recall and precision match texts by string "
            "similarity (>= 0.5 counts).",
        ),
        Figure(
            "answers_by_type.png",
            "Answers by question type",
            "Against the reference answer; the key fact (an invoice, a date, an amount, a survey answer) found "
            "in the answer where the type has one.",
        ),
        Figure(
            "abstention_by_type.png",
            "Abstention by question type",
            "On never_bought and off_history abstaining is right; on the other types it is a false abstention. "
            "Denied: the answer says no (never bought, did not cancel), a claim the history does not support "
            "on never_bought and contradicts on purchase and cancellation.",
        ),
    ]


# --- the evaluator ---------------------------------------------------------------------------------------


class Grounding(Evaluator):
    """Free answers of demo twins against their evidence.

    >>> Grounding(twins=2).options["questions_per_twin"]
    4
    """

    name: ClassVar[str] = "grounding"
    version: ClassVar[int] = 1
    title: ClassVar[str] = "Grounding: free answers against their retrieved evidence (ragas)"
    protocol: ClassVar[str] = "../shared/BENCHMARKS.md section 3 (grounding)"

    def __init__(self, **options: Any) -> None:
        given = {k: v for k, v in options.items() if v is not None}
        if "judge" not in given and os.environ.get(JUDGE_ENV):
            given["judge"] = os.environ[JUDGE_ENV]
        unknown = set(given) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown grounding options {sorted(unknown)}; accepted: {sorted(DEFAULTS)}")
        super().__init__(**{**DEFAULTS, **given})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        d = DEFAULTS
        parser.add_argument("--customers", type=int, help=f"real demo twins built (default {d['customers']})")
        parser.add_argument(
            "--synthetic", type=int, help=f"synthetic demo twins built (default {d['synthetic']})"
        )
        parser.add_argument("--twins", type=int, help=f"twins asked per family (default {d['twins']})")
        parser.add_argument(
            "--questions-per-twin", type=int, help=f"questions per twin (default {d['questions_per_twin']})"
        )
        parser.add_argument(
            "--judge",
            metavar="openai:MODEL",
            help=f"LLM judge for faithfulness and answer relevancy (default ${JUDGE_ENV}; none: not run)",
        )
        parser.add_argument("--judge-base-url", help="the judge's endpoint (default OPENAI_BASE_URL)")

    @classmethod
    def quick_options(cls) -> dict[str, Any]:
        return {"customers": 4, "synthetic": 4, "twins": 3, "questions_per_twin": 2}

    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        from tqdm import tqdm

        from twinchat import factory
        from twinchat.services import TwinService

        o = self.options
        started = time.perf_counter()
        timings: dict[str, float] = {}
        embedder = factory.make_embedder(settings)
        metrics = ragas_metrics()
        notes: list[str] = []
        if o["judge"]:
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            base_url = o["judge_base_url"] or settings.openai_base_url
            metrics += judge_metrics(o["judge"], base_url=base_url, api_key=key, embedder=embedder)
            notes.append(f"LLM-judged metrics by {o['judge']} at {base_url or 'the OpenAI API'}.")
        else:
            notes.append(
                "faithfulness and answer_relevancy: not run: no judge configured "
                f"(--judge openai:MODEL or ${JUDGE_ENV}, with OPENAI_BASE_URL and OPENAI_API_KEY)."
            )

        with tempfile.TemporaryDirectory(prefix="twinchat-grounding-") as home:
            service = TwinService.from_settings(
                settings.model_copy(update={"home": Path(home)}), embedder=embedder
            )
            mark = time.perf_counter()
            families = self._build(service, settings, progress=progress)
            timings["build"] = time.perf_counter() - mark

            rng = random.Random(o["seed"])
            asked_twins = []
            for family in ("retail", "synthetic"):
                twins = sorted(t for t, f in families.items() if f == family)
                asked_twins += rng.sample(twins, min(o["twins"], len(twins)))
            # Never-bought products come from every demo twin's history, not only the asked ones'.
            catalogue = sorted(
                {_name(p) for t in families for e in service.store.events(t) for p in _products(e)}
            )
            histories = {t: (families[t], service.store.events(t)) for t in asked_twins}
            questions = question_set(
                histories,
                per_twin=o["questions_per_twin"],
                seed=o["seed"],
                abstain=service.prompter.abstain_text,
                catalogue=catalogue,
            )
            with (out / "questions.jsonl").open("w", encoding="utf-8") as handle:
                for q in questions:
                    handle.write(
                        json.dumps({**asdict(q), "answerable": q.answerable}, ensure_ascii=False) + "\n"
                    )

            mark = time.perf_counter()
            rows: list[dict[str, Any]] = []
            for q in tqdm(questions, desc="asking twins", unit="answer", disable=None if progress else True):
                asked = ask(service, q)
                persona = service.profile(q.twin_id).summary
                texts = dict(zip(asked["retrieved_ids"], asked["retrieved_contexts"], strict=True))
                rows.append(
                    {
                        **{k: v for k, v in asdict(q).items() if k != "facts"},
                        "answerable": q.answerable,
                        **asked,
                        "n_retrieved": len(asked["retrieved_ids"]),
                        "shown_contexts": [texts[i] for i in asked["shown_ids"]],
                        "summary": persona,
                        **checks(q, asked),
                    }
                )
            timings["ask"] = time.perf_counter() - mark

        mark = time.perf_counter()
        failures = score(rows, metrics, timeout=JUDGE_TIMEOUT_S if o["judge"] else None)
        timings["score"] = time.perf_counter() - mark
        names = [m.name for m in metrics]
        summary = self._summary(rows, metrics, failures, timings, started)
        figures = draw(out, summary, names)
        notes += self._notes(questions, metrics, summary)
        headline = [f"metrics.{m}.mean" for m in names] + [
            "overall.evidence_hit",
            "overall.citations_valid",
            "overall.fact_in_answer",
            "overall.abstained_on_unanswerable",
            "overall.abstained_on_answerable",
        ]
        return Outcome(summary, [_csv_row(r, names) for r in rows], figures, notes, failures, headline)

    def _build(self, service: TwinService, settings: Settings, *, progress: bool) -> dict[str, str]:
        """``twinchat demo``'s twins: the most active Online Retail customers, then synthetic customers (seed 0).
        Returns twin id -> family."""
        from twinchat.cli import DEMO_PANEL, SYNTHETIC_DEMO_PANEL
        from twinchat.domain.readers import RawRecord
        from twinchat.importers.online_retail import OnlineRetailImport
        from twinchat.synth.catalogue import read_catalogue
        from twinchat.synth.population import generate, records
        from twinchat.synth.spec import load_spec

        path = settings.data_dir / "online_retail" / "online_retail_sample.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the Online Retail sample the demo twins are built from (TWINCHAT_DATA_DIR)"
            )
        report = service.ingest_records(
            OnlineRetailImport(path, customers=self.options["customers"]).records(),
            panel=DEMO_PANEL,
            progress=progress,
            label=path.name,
        )
        families = dict.fromkeys(report.twins_touched, "retail")
        if self.options["synthetic"] > 0:
            # The spec's templates, as the demo words them with the local model: a rewording LLM is not asked.
            customers = generate(load_spec(), read_catalogue(path), n=self.options["synthetic"], seed=0)
            rows = [RawRecord("synth:seed=0", i + 1, r) for i, r in enumerate(records(customers))]
            report = service.ingest_records(
                rows,
                panel=SYNTHETIC_DEMO_PANEL,
                synthetic=True,
                progress=progress,
                report=report,
                label="synthetic",
            )
            families.update(dict.fromkeys((c.twin_id for c in customers), "synthetic"))
        if report.rejected:
            raise RuntimeError(f"the demo histories did not ingest cleanly: {report.rejected[:3]}")
        return families

    def _summary(
        self,
        rows: Sequence[dict[str, Any]],
        metrics: Sequence[Metric],
        failures: Sequence[Mapping[str, Any]],
        timings: Mapping[str, float],
        started: float,
    ) -> dict[str, Any]:
        names = [m.name for m in metrics]
        failed = Counter(f["metric"] for f in failures)
        return {
            "metrics": {
                m.name: {
                    "mean": mean([r[m.name] for r in rows if r[m.name] is not None]),
                    "n": sum(r[m.name] is not None for r in rows),
                    "failed": failed[m.name],
                    "not_applicable": sum(not m.applies(r) for r in rows),
                }
                for m in metrics
            },
            "overall": summarize(rows, names),
            "by_type": {
                t: summarize([r for r in rows if r["type"] == t], names)
                for t in TYPES
                if any(r["type"] == t for r in rows)
            },
            "by_family": {
                f: summarize([r for r in rows if r["family"] == f], names)
                for f in sorted({r["family"] for r in rows})
            },
            "twins": len({r["twin_id"] for r in rows}),
            "seconds": {
                **{k: round(v, 1) for k, v in timings.items()},
                "per_answer": mean([r["seconds"] for r in rows]),
                "total": round(time.perf_counter() - started, 1),
            },
        }

    def _notes(
        self, questions: Sequence[GroundingQuestion], metrics: Sequence[Metric], summary: Mapping[str, Any]
    ) -> list[str]:
        counts = Counter(q.type for q in questions)
        notes = [
            f"{len(questions)} questions to {summary['twins']} twins ({self.options['questions_per_twin']} each): "
            + ", ".join(f"{t} {counts[t]}" for t in TYPES if counts[t])
            + "; the set, with reference evidence and answers, is in questions.jsonl.",
            "Unanswerable questions (never_bought: a product of another demo customer; off_history: a topic no "
            "history touches) have the persona's abstention as reference answer and no reference evidence.",
            "Abstained: the twin retrieved no evidence (no generation), or its answer says it does not know "
            "(evals.grounding.abstains).",
            "ragas' context precision and recall match texts by Levenshtein similarity >= 0.5, so a templated text "
            "(a synthetic review of another product, an order of the same shape) can count as the reference; "
            "evidence_hit and evidence_recall match event ids exactly.",
        ]
        for m in metrics:
            n = summary["metrics"][m.name]["not_applicable"]
            if n:
                noun = "question" if n == 1 else "questions"
                notes.append(f"{m.name}: not applicable to {n} {noun} ({m.not_applicable}).")
        return notes


def _csv_row(row: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """The per-question row of results.csv: ids rather than texts (the texts are in questions.jsonl)."""
    keep = (
        "id", "twin_id", "family", "type", "answerable", "question", "reference", "answer", "abstained", "denied",
        "abstained_by_retrieval", "n_retrieved", "citations_valid", "explicit_citation", "invalid_markers",
        "evidence_hit", "evidence_recall", "reciprocal_rank", "cites_reference", "fact_in_answer",
        *metrics, "seconds", "reference_ids", "retrieved_ids", "cited_ids",
    )  # fmt: skip
    return {k: row.get(k) for k in keep}


# --- reading events --------------------------------------------------------------------------------------


def _drawn(items: Any, rng: random.Random, n: int, keep: Callable[[Any], bool] = lambda _: True) -> list[Any]:
    """Up to ``n`` of ``items`` that ``keep`` accepts, drawn with ``rng`` (in the items' given order first, so
    that the draw depends on the seed alone)."""
    pool = [item for item in items if keep(item)]
    return rng.sample(pool, min(n, len(pool)))


def _products(event: Event) -> list[str]:
    value = event.attributes.get("products")
    return [_name(str(p)) for p in value] if isinstance(value, list) else []


def _name(text: str) -> str:
    return " ".join(text.split())


def _when(event: Event) -> Any:
    return (event.timestamp is not None, event.timestamp, event.event_id)


def _day(event: Event) -> str:
    return event.timestamp.date().isoformat() if event.timestamp else "an unknown date"


def _invoice(event: Event) -> str:
    return str(event.attributes.get("invoice", event.event_id))


def _money(event: Event) -> str:
    return f"{float(event.attributes.get('total', 0.0)):.2f}"
