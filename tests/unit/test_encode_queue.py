"""Texts queued on the encoder ahead of their write: the future that gathers a call's batches from the workers, and
the embeddings' cache that they fill (fakes; the real model: tests/integration/test_onnx_embedder.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from twinchat.adapters.embedders import CachedEmbeddings
from twinchat.adapters.onnx_embedder import gathered
from twinchat.ports import settled
from twinchat.testing import HashEmbedder


def test_the_parts_are_combined_in_the_order_given_whichever_finishes_first() -> None:
    release = threading.Event()

    def slow(value: int) -> int:
        release.wait(5)
        return value

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(slow, 1)
        second = pool.submit(lambda: 2)
        whole = gathered([first, second], list)
        second.result()
        assert not whole.done()  # one part still runs
        release.set()
        assert whole.result(timeout=5) == [1, 2]


def test_the_first_failure_fails_the_whole_and_cancels_the_parts_not_started() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(release.wait, 5)
        failing: Future[int] = Future()
        waiting = pool.submit(lambda: 3)  # queued behind the blocked part
        whole = gathered([blocked, failing, waiting], sum)
        failing.set_exception(OSError("encoder gone"))
        with pytest.raises(OSError, match="encoder gone"):
            whole.result(timeout=5)
        assert waiting.cancelled()
        release.set()


def test_cancelling_the_whole_cancels_the_parts_not_started() -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(release.wait, 5)
        queued = pool.submit(lambda: 3)
        whole = gathered([running, queued], list)
        assert whole.cancel()
        assert queued.cancelled()
        release.set()
        assert running.result(timeout=5) is True  # what had started finishes; its result is not used


def test_nothing_to_gather_is_done_at_once() -> None:
    assert gathered([], list).result(timeout=0) == []


class QueuedEmbedder(HashEmbedder):
    """Encodes each started call on a worker of its own, counting the texts it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []
        self.pool = ThreadPoolExecutor(1)

    def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        self.encoded.extend(texts)
        return self.pool.submit(self.embed_batch, texts)


def test_texts_encoded_ahead_are_in_the_cache_when_the_future_is_done_and_not_encoded_again() -> None:
    embedder = QueuedEmbedder()
    cache = CachedEmbeddings(embedder)
    cache.embed_documents(["cached already"])
    ahead = cache.embed_ahead(["a", "b", "a", "cached already"])
    assert ahead.result(timeout=5) is None
    assert embedder.encoded == ["a", "b"]  # each text once, and none cached before
    calls = embedder.embed_batch
    embedder.embed_batch = lambda texts: pytest.fail(f"encoded again: {texts}")  # type: ignore[method-assign]
    assert cache.embed_documents(["b", "a"]) == calls(["b", "a"])
    assert cache.embed_ahead(["a"]).result(timeout=0) is None  # all cached: done at once


class QueueFails(HashEmbedder):
    """Encodes at once when asked to, but every batch queued on it fails."""

    def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        return settled(self._fail)

    def _fail(self) -> list[list[float]]:
        raise RuntimeError("model file unreadable")


def test_an_encoder_failure_reaches_the_writer_that_waits_for_the_vectors() -> None:
    with pytest.raises(RuntimeError, match="model file unreadable"):
        CachedEmbeddings(QueueFails()).embed_ahead(["a"]).result(timeout=5)


def test_an_embedder_without_a_queue_encodes_at_once_on_the_callers_thread() -> None:
    embedder = HashEmbedder()
    started = embedder.start_batch(["a", "b"])
    assert started.done() and started.result() == embedder.embed_batch(["a", "b"])


def test_a_text_queued_by_an_earlier_call_is_encoded_once_and_a_writer_waits_for_its_vector() -> None:
    # An import queues batch 2 before batch 1's vectors are back: a text in both is batch 1's to encode.
    release = threading.Event()

    class Held(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.encoded: list[str] = []
            self.pool = ThreadPoolExecutor(1)

        def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
            self.encoded.extend(texts)
            return super().embed_batch(texts)

        def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
            return self.pool.submit(lambda: release.wait(5) and self.embed_batch(texts))  # type: ignore[return-value]

    embedder = Held()
    cache = CachedEmbeddings(embedder)
    first = cache.embed_ahead(["a", "b"])
    second = cache.embed_ahead(["b", "c"])
    with ThreadPoolExecutor(1) as writer:
        written = writer.submit(cache.embed_documents, ["b", "a"])  # waits for the first call's vectors
        release.set()
        assert written.result(timeout=5) == HashEmbedder().embed_batch(["b", "a"])
    assert first.result(timeout=5) is None and second.result(timeout=5) is None
    assert sorted(embedder.encoded) == ["a", "b", "c"]


def test_a_text_whose_queued_encoding_failed_is_encoded_by_the_writer() -> None:
    cache = CachedEmbeddings(QueueFails())
    assert isinstance(cache.embed_ahead(["a"]).exception(timeout=5), RuntimeError)
    assert cache.embed_documents(["a"]) == HashEmbedder().embed_batch(["a"])
