"""The whole flow on the real pieces: MiniLM embeddings, Chroma on disk, SmolLM2 in process via llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinchat.config import Settings
from twinchat.domain.events import Event
from twinchat.importers.online_retail import OnlineRetailImport
from twinchat.services import TwinService

pytestmark = pytest.mark.slow


def test_a_twin_answers_from_its_own_history_with_the_local_llm(
    real_service: TwinService, history_file: Path
) -> None:
    report = real_service.ingest_files([history_file], panel="pilot", progress=False)
    assert (report.stored, report.exit_code) == (7, 0)

    answer = real_service.ask("C-100", "How did you find the cake stand you bought?")

    assert not answer.abstained and answer.simulated
    assert answer.model == "local:smollm2"
    assert answer.answer.strip()
    own = {e.event_id: e for e in real_service.store.events("C-100")}
    assert answer.citations and all(c.event_id in own for c in answer.citations)
    assert any("cake stand" in c.text for c in answer.citations)


def test_a_question_the_history_does_not_cover_is_answered_honestly(
    real_service: TwinService, history_file: Path
) -> None:
    real_service.ingest_files([history_file], progress=False)
    answer = real_service.ask("C-200", "Which football club do you support?")
    assert answer.abstained
    assert answer.citations == []
    assert "doesn't say" in answer.answer


def test_answers_never_cite_another_customers_events(real_service: TwinService, history_file: Path) -> None:
    real_service.ingest_files([history_file], progress=False)
    questions = [
        "What did you buy?",
        "Tell me about the cake stand",
        "Do you like gardening?",
        "How do you pay?",
    ]
    owners = {
        t.twin_id: {e.event_id for e in real_service.store.events(t.twin_id)} for t in real_service.twins()
    }
    for twin_id, own in owners.items():
        for question in questions:
            # Retrieval is where isolation must hold; the LLM is not needed to check it.
            for memory in real_service.store.search(twin_id, question, k=20):
                assert memory.event.event_id in own and memory.event.customer_id == twin_id
    answer = real_service.ask("C-300", "Tell me about the cake stand")
    assert all(c.event_id in owners["C-300"] for c in answer.citations)


def test_history_persists_and_reingesting_adds_nothing(tmp_path: Path, embedder, history_file: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    first = TwinService.from_settings(settings, embedder=embedder)
    first.ingest_files([history_file], progress=False)
    # A new service on the same folder is a new process's view: the data is on disk, in Chroma and SQLite.
    second = TwinService.from_settings(settings, embedder=embedder)
    assert {t.twin_id: t.n_events for t in second.twins()} == {"C-100": 3, "C-200": 2, "C-300": 2}
    again = second.ingest_files([history_file], progress=False)
    assert (again.stored, again.duplicates, again.exit_code) == (0, 7, 0)
    assert second.store.count("C-100") == 3


@pytest.mark.parametrize("layout", ["sharded", "per-twin"])
def test_an_event_repeated_inside_one_batch_is_stored_once(
    tmp_path: Path, embedder, history_file: Path, layout: str
) -> None:
    # The whole file is one batch: its repeats are checked against Chroma together with the first copies.
    lines = history_file.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    changed = first | {"text": "Another text", "event_id": Event.from_record(first).event_id}
    history_file.write_text("".join(lines + lines[:2] + [json.dumps(changed) + "\n"]))
    service = TwinService.from_settings(
        Settings(home=tmp_path / "home", store_layout=layout), embedder=embedder
    )
    report = service.ingest_files([history_file], progress=False)
    assert (report.stored, report.duplicates, len(report.rejected)) == (7, 2, 1)
    assert report.rejected[0].field == "event_id" and report.rejected[0].line == len(lines) + 3
    assert {t.twin_id: t.n_events for t in service.twins()} == {"C-100": 3, "C-200": 2, "C-300": 2}
    assert service.store.count("C-100") == 3


def test_real_online_retail_customers_become_twins(real_service: TwinService, shared_data: Path) -> None:
    path = shared_data / "online_retail" / "online_retail_sample.csv"
    importer = OnlineRetailImport(path, customers=5)
    report = real_service.ingest_records(importer.records(), panel="online-retail")
    assert report.exit_code == 0 and report.stored > 0
    assert importer.skipped["guest checkout (no CustomerID)"] > 0
    twins = real_service.twins(panel="online-retail")
    assert len(twins) == 5
    biggest = max(twins, key=lambda t: t.n_events)
    events = real_service.store.events(biggest.twin_id)
    product = events[0].attributes["products"][0]
    memories = real_service.store.search(biggest.twin_id, f"Did you buy {product.lower()}?", k=3)
    assert any(product in m.event.text for m in memories)
