"""Retrieval ranking on the real pieces: MiniLM embeddings, Chroma on disk, BM25 over the stored events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinchat.importers.online_retail import OnlineRetailImport
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

PRODUCTS = """white hanging heart t-light holder, regency cakestand 3 tier, jumbo bag red retrospot,
party bunting, lunch bag red retrospot, assorted colour bird ornament, set of 3 cake tins pantry design,
pack of 72 retrospot cake cases, natural slate heart chalkboard, heart of wicker small, jam making set,
paper chain kit 50's christmas, spotty bunting, alarm clock bakelike red, set of 6 spice tins pantry design,
hot water bottle keep calm, lunch bag black skull, chocolate hot water bottle, vintage snap cards,
recipe box pantry yellow design""".replace("\n", " ").split(", ")


def order(i: int) -> dict[str, object]:
    """One of 28 similar orders: the invoice number is all that tells them apart."""
    items = f"6 x {PRODUCTS[i % 20]}; 2 x {PRODUCTS[(i * 3 + 1) % 20]}"
    return {
        "customer_id": "C-500",
        "event_id": f"o{i}",
        "source": "purchase",
        "kind": "order",
        "timestamp": f"2011-{1 + i % 12:02d}-{1 + i:02d}",
        "text": f"Order {536600 + i * 7} ({12 + i} GBP): {items}.",
    }


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dense_rank(service: TwinService, twin_id: str, question: str, event_id: str) -> int:
    everything = service.store.search(twin_id, question, k=service.store.count(twin_id))
    return [m.event.event_id for m in everything].index(event_id)


def test_an_order_number_the_embedding_ranks_poorly_is_found_by_its_words(
    real_service: TwinService, tmp_path: Path
) -> None:
    orders = write(tmp_path / "orders.jsonl", [order(i) for i in range(28)])
    real_service.ingest_files([orders], progress=False)
    questions = {f"o{i}": f"What did you buy in order {536600 + i * 7}?" for i in range(28)}
    ranks = {event_id: dense_rank(real_service, "C-500", q, event_id) for event_id, q in questions.items()}
    worst = max(ranks, key=lambda event_id: ranks[event_id])
    assert ranks[worst] >= 5  # the embedding alone would bury it

    evidence = real_service.retrieve("C-500", questions[worst])

    assert evidence[0].event.event_id == worst
    assert evidence[0].lexical > 0.5 and evidence[0].relevant_by == "dense"
    cosines = {m.event.event_id: m.score for m in real_service.store.search("C-500", questions[worst], k=28)}
    assert evidence[0].memory.score == pytest.approx(cosines[worst])  # a citation's score stays the cosine


def test_an_invoice_of_a_real_online_retail_customer_is_found_by_its_number(
    real_service: TwinService, shared_data: Path
) -> None:
    importer = OnlineRetailImport(shared_data / "online_retail" / "online_retail_sample.csv", customers=1)
    real_service.ingest_records(importer.records(), panel="online-retail")
    twin_id = real_service.twins()[0].twin_id
    events = real_service.store.events(twin_id)
    question = "What did you buy in order {}?"
    ranks = {
        e.event_id: dense_rank(real_service, twin_id, question.format(e.attributes["invoice"]), e.event_id)
        for e in events
    }
    worst = max(events, key=lambda e: ranks[e.event_id])
    assert ranks[worst.event_id] >= real_service.retrieval_policy.candidates  # beyond the dense candidates

    evidence = real_service.retrieve(twin_id, question.format(worst.attributes["invoice"]))

    assert evidence[0].event.event_id == worst.event_id


def test_the_newer_of_two_similar_events_ranks_first(real_service: TwinService, tmp_path: Path) -> None:
    rows = [
        {
            "customer_id": "C-600",
            "event_id": "new",
            "text": "Bought six blue ceramic mugs for the kitchen",
            "source": "purchase",
            "timestamp": "2011-09-01",
        },
        {
            "customer_id": "C-600",
            "event_id": "old",
            "text": "Bought six blue ceramic mugs",
            "source": "purchase",
            "timestamp": "2010-03-01",
        },
        {
            "customer_id": "C-600",
            "text": "Posted a photo of a garden party",
            "source": "social",
            "timestamp": "2011-09-02",
        },
    ]
    real_service.ingest_files([write(tmp_path / "mugs.jsonl", rows)], progress=False)

    evidence = real_service.retrieve("C-600", "Have you bought blue mugs?")

    assert [s.event.event_id for s in evidence[:2]] == ["new", "old"]
    new, old = evidence[:2]
    assert old.dense + 0.05 >= new.dense  # about as relevant (the older wording is closer, if anything)
    assert new.recency > 0.99 and old.recency < 0.4  # from the twin's newest event, 2011-09-02


def test_an_unrelated_question_still_abstains_without_the_llm(
    real_service: TwinService, history_file: Path
) -> None:
    real_service.ingest_files([history_file], progress=False)

    assert real_service.retrieve("C-100", "Which football club do you support?") == []
    answer = real_service.ask("C-100", "Which football club do you support?")

    assert answer.abstained and answer.citations == []
    assert "chat_model" not in vars(real_service)  # the LLM was never even loaded
