"""Ingestion queues each batch's new texts on the encoder from a thread of its own while the batch before is
written (fakes; against the real encoder and Chroma: tests/integration/test_ingest_ahead_real.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from twinchat.domain.readers import RawRecord
from twinchat.ports import MemoryStore
from twinchat.services import LAST_BATCH_SPLIT, TwinService
from twinchat.testing import FakeChatModel, InMemoryStore, fake_service


class RecordingStore(InMemoryStore):
    """The in-memory store, noting what it was asked to encode ahead, and on which thread."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.ahead: list[tuple[str, list[str]]] = []

    def embed_ahead(self, texts: Sequence[str]) -> Future[None]:
        self.ahead.append((threading.current_thread().name, list(texts)))
        return super().embed_ahead(texts)


def rows(n: int) -> list[RawRecord]:
    return [
        RawRecord(
            "h.jsonl", i + 1, {"customer_id": f"C-{i % 3}", "event_id": f"e{i}", "text": f"Bought item {i}"}
        )
        for i in range(n)
    ]


def test_each_batch_is_encoded_ahead_on_its_own_thread_and_a_rerun_encodes_nothing(tmp_path: Path) -> None:
    service = fake_service(tmp_path, batch_size=4)
    store = RecordingStore(service.store.embedder)  # type: ignore[attr-defined]
    service.store = store

    report = service.ingest_records(rows(10))
    assert report.stored == 10 and not report.rejected
    assert [texts for _, texts in store.ahead] == [
        [f"Bought item {i}" for i in range(0, 4)],
        [f"Bought item {i}" for i in range(4, 8)],
        [f"Bought item {i}" for i in range(8, 10)],
    ]
    assert {thread for thread, _ in store.ahead} != {threading.current_thread().name}
    assert all(thread.startswith("twinchat-encode") for thread, _ in store.ahead)

    store.ahead.clear()
    again = service.ingest_records(rows(10))
    assert again.stored == 0 and again.duplicates == 10
    assert [texts for _, texts in store.ahead] == [[], [], []]  # all stored already: nothing to encode


def test_a_record_repeated_in_the_next_batch_is_stored_once(tmp_path: Path) -> None:
    # Batch 2 is looked at ahead before batch 1 is written: the look ahead misses the repeat, the write does not.
    service = fake_service(tmp_path, batch_size=3)
    records = rows(3) + [RawRecord("h.jsonl", 4, rows(1)[0].record)] + rows(6)[3:]
    report = service.ingest_records(records)
    assert report.stored == 6 and report.duplicates == 1
    assert sum(service.store.count(f"C-{i}") for i in range(3)) == 6


def test_an_error_while_writing_stops_the_import_and_leaves_the_batches_before_stored(tmp_path: Path) -> None:
    service = fake_service(tmp_path, batch_size=4)
    original = service.store.add_many
    calls = 0

    def fail_on_second(events_by_twin: dict) -> None:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")
        original(events_by_twin)

    service.store.add_many = fail_on_second  # type: ignore[method-assign]
    try:
        service.ingest_records(rows(12))
    except OSError as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    assert sum(service.store.count(f"C-{i}") for i in range(3)) == 4


def test_an_error_while_writing_cancels_the_encoding_queued_for_the_batches_after(tmp_path: Path) -> None:
    # An import that stops must not leave the encoder working through batches nobody will write.
    ahead: list[Future[None]] = []

    class QueuedStore(InMemoryStore):
        def embed_ahead(self, texts: Sequence[str]) -> Future[None]:
            queued: Future[None] = Future()
            if not ahead:
                queued.set_result(None)  # the first batch's vectors are ready; the later ones never finish
            ahead.append(queued)
            return queued

        def add_many(self, events_by_twin: dict) -> None:  # type: ignore[type-arg]
            raise OSError("disk full")

    service = fake_service(tmp_path, batch_size=4)
    service.store = QueuedStore(service.store.embedder)  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="disk full"):
        service.ingest_records(rows(12))
    assert len(ahead) == 2 and ahead[1].cancelled()


def lazily(base: TwinService, open_store: object, embed_ahead: object) -> TwinService:
    """``base``'s service with its store opened by ``open_store`` on first use, and ``embed_ahead`` encoding."""
    return TwinService(
        base.settings,
        store=open_store,  # type: ignore[arg-type]
        registry=base.registry,
        counter=base.counter,
        chat_model=FakeChatModel(),
        embed_ahead=embed_ahead,  # type: ignore[arg-type]
    )


def test_a_first_import_queues_its_first_batch_before_the_store_opens(tmp_path: Path) -> None:
    # Opening a store (importing Chroma, starting its client) takes a second, in which the encoder would wait.
    base = fake_service(tmp_path, batch_size=4)
    order: list[str] = []
    first_queued = threading.Event()

    def open_store() -> MemoryStore:
        order.append("store opens" if first_queued.wait(10) else "store opened with nothing queued")
        return base.store

    def embed_ahead(texts: Sequence[str]) -> Future[None]:
        order.append(f"queued {len(texts)}")
        first_queued.set()
        return base.store.embed_ahead(texts)

    service = lazily(base, open_store, embed_ahead)
    assert service.ingest_records(rows(10)).stored == 10
    assert order == ["queued 4", "store opens", "queued 4", "queued 2"]

    order.clear()
    again = service.ingest_records(rows(10))  # the twins are known now: the store is asked, nothing encoded
    assert again.duplicates == 10 and order == ["queued 0", "queued 0", "queued 0"]


def test_a_store_that_cannot_open_fails_the_import_at_once_and_cancels_its_encoding(tmp_path: Path) -> None:
    queued: list[Future[None]] = []

    def embed_ahead(texts: Sequence[str]) -> Future[None]:
        queued.append(Future())  # never done: the import must not wait for it
        return queued[-1]

    def cannot_open() -> MemoryStore:
        raise ConnectionError("no Chroma server at 127.0.0.1:9")

    service = lazily(fake_service(tmp_path, batch_size=4), cannot_open, embed_ahead)
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        service.ingest_records(rows(12))
    assert queued and all(f.cancelled() for f in queued)
    assert service.registry.list_twins() == []


def test_a_long_stream_writes_the_last_fifth_of_its_last_batch_as_a_batch_of_its_own(tmp_path: Path) -> None:
    # The last batch's write overlaps no encoding; its fifths go last, so that write is short.
    assert LAST_BATCH_SPLIT == 256  # the sizes below follow from it
    service = fake_service(tmp_path, batch_size=2048)
    store = RecordingStore(service.store.embedder)  # type: ignore[attr-defined]
    service.store = store

    report = service.ingest_records(rows(2048 + 1600))
    # 1,600 left: 1,280 and a fifth of 320, which is still long enough to split again: 256 and 64.
    assert [len(texts) for _, texts in store.ahead] == [2048, 1280, 256, 64]
    assert report.stored == 2048 + 1600 and not report.rejected


def test_a_short_last_batch_is_written_whole(tmp_path: Path) -> None:
    service = fake_service(tmp_path, batch_size=LAST_BATCH_SPLIT * 2)
    store = RecordingStore(service.store.embedder)  # type: ignore[attr-defined]
    service.store = store

    service.ingest_records(rows(LAST_BATCH_SPLIT * 2 + LAST_BATCH_SPLIT - 1))
    assert [len(texts) for _, texts in store.ahead] == [LAST_BATCH_SPLIT * 2, LAST_BATCH_SPLIT - 1]
