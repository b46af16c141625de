"""The import's look-ahead encoding with the real pieces: the default ONNX encoder and an embedded Chroma in
both layouts. Each new text is encoded once, whether ahead or not, a re-run encodes nothing, and a first
import's first batch is on the encoder before the store has opened."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from twinchat import factory
from twinchat.config import Settings
from twinchat.domain.readers import RawRecord
from twinchat.ports import Embedder
from twinchat.services import TwinService


class Counting(Embedder):
    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed_batch(texts)


def records() -> list[RawRecord]:
    products = ["cake stand", "tea towel", "lantern", "doormat", "lunch bag", "alarm clock"]
    found = []
    for i in range(600):
        product = products[i % len(products)]
        # Every 10th line repeats an earlier line's text (real purchase lines repeat): encoded once.
        text = (
            f"Bought {1 + i % 4} x {product} on 2011-0{1 + i % 9}-1{i % 10}"
            if i % 10
            else "Bought 1 x cake stand"
        )
        found.append(
            RawRecord("lines.csv", i + 2, {"customer_id": f"C-{i % 40}", "event_id": f"L{i}", "text": text})
        )
    return found


@pytest.mark.parametrize("layout", ["per-twin", "sharded"])
def test_every_new_text_is_encoded_once_and_a_rerun_encodes_none(
    tmp_path: Path, embedder: Embedder, layout: str
) -> None:
    counting = Counting(embedder)
    settings = Settings(home=tmp_path / "home", store_layout=layout, batch_size=128)
    service = TwinService.from_settings(settings, embedder=counting)
    rows = records()
    report = service.ingest_records(rows)
    assert report.stored == 600 and not report.rejected
    assert counting.texts == len({r.record["text"] for r in rows})
    assert sum(t.n_events for t in service.twins()) == 600
    assert service.store.counts([f"C-{i}" for i in range(40)]) == {f"C-{i}": 15 for i in range(40)}
    found = service.retrieve("C-3", "Did you ever buy a doormat?")
    assert found and all(m.event.customer_id == "C-3" for m in found)

    counting.texts = 0
    again = TwinService.from_settings(settings, embedder=counting).ingest_records(rows)
    assert again.stored == 0 and again.duplicates == 600 and counting.texts == 0


def test_a_first_import_queues_its_first_batch_before_the_store_opens(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opening the store imports Chroma and starts its client (a second on the CI machine); the encoder does
    # not wait for it. The store's opening here waits until the first batch is queued, or fails the test.
    order: list[str] = []
    first_queued = threading.Event()
    make_store = factory.make_store

    def opening(*args: object, **kwargs: object) -> object:
        order.append("store opens" if first_queued.wait(60) else "store opened with nothing queued")
        return make_store(*args, **kwargs)  # type: ignore[arg-type]

    class Queuing(Counting):
        def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
            order.append(f"queued {len(texts)}")
            first_queued.set()
            self.texts += len(texts)
            return self.inner.start_batch(texts)

    monkeypatch.setattr(factory, "make_store", opening)
    queuing = Queuing(embedder)
    settings = Settings(home=tmp_path / "home", batch_size=128)
    service = TwinService.from_settings(settings, embedder=queuing)
    rows = records()
    report = service.ingest_records(rows)
    first = len({r.record["text"] for r in rows[:128]})  # a batch's repeated texts are encoded once
    assert order[:2] == [f"queued {first}", "store opens"]
    assert report.stored == 600 and queuing.texts == len({r.record["text"] for r in rows})
    found = service.retrieve("C-3", "Did you ever buy a doormat?")
    assert found and all(m.event.customer_id == "C-3" for m in found)
