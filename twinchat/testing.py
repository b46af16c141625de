"""Fakes shipped with the library for fast unit tests: a scripted chat model, a hash embedder, an in-memory store.

They stand in for the real pieces only in unit tests; every feature is also tested against the real ones.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinchat.domain.events import Event
from twinchat.domain.models import Memory, Message
from twinchat.ports import ChatModel, Embedder, MemoryStore, TokenCounter

if TYPE_CHECKING:
    from twinchat.services import TwinService

_WORD = re.compile(r"[a-z0-9]+")


class FakeChatModel(ChatModel):
    """Replies from a queue, and records what it was asked.

    >>> model = FakeChatModel(["I bought mugs [E1]."])
    >>> model.complete([Message("user", "What did you buy?")], max_tokens=20)
    'I bought mugs [E1].'
    """

    name = "fake"

    def __init__(self, replies: Sequence[str] = (), *, default: str = "I don't know.") -> None:
        self.replies = deque(replies)
        self.default = default
        self.calls: list[list[Message]] = []

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        self.calls.append(list(messages))
        reply = self.replies.popleft() if self.replies else self.default
        yield from re.findall(r"\S+\s*", reply)


class HashEmbedder(Embedder):
    """Bag-of-words vectors from hashed tokens: texts sharing words are near, others are orthogonal."""

    name = "hash"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.calls = 0

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class WordCounter(TokenCounter):
    """Counts whitespace-separated words: close enough to tokens for tests."""

    def count(self, text: str) -> int:
        return len(text.split())


class InMemoryStore(MemoryStore):
    """Per-twin lists of events, searched by cosine similarity of the given embedder's vectors."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._data: dict[str, dict[str, tuple[Event, list[float]]]] = {}

    def add(self, twin_id: str, events: Sequence[Event]) -> None:
        collection = self._data.setdefault(twin_id, {})
        fresh = [e for e in events if e.event_id not in collection]
        for event, vector in zip(fresh, self.embedder.embed_batch([e.text for e in fresh]), strict=True):
            collection[event.event_id] = (event, vector)

    def stored_texts(self, twin_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        collection = self._data.get(twin_id, {})
        return {i: collection[i][0].text for i in event_ids if i in collection}

    def search(self, twin_id: str, query: str, *, k: int) -> list[Memory]:
        q = self.embedder.embed(query)
        scored = [
            Memory(event, sum(a * b for a, b in zip(q, vector, strict=True)))
            for event, vector in self._data.get(twin_id, {}).values()
        ]
        return sorted(scored, key=lambda m: m.score, reverse=True)[:k]

    def events(self, twin_id: str) -> list[Event]:
        return [event for event, _ in self._data.get(twin_id, {}).values()]

    def count(self, twin_id: str) -> int:
        return len(self._data.get(twin_id, {}))

    def delete_twin(self, twin_id: str) -> None:
        self._data.pop(twin_id, None)

    def delete_events(self, twin_id: str, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self._data.get(twin_id, {}).pop(event_id, None)


def fake_service(home: Path, *, chat_model: ChatModel | None = None, **settings: Any) -> TwinService:
    """A TwinService on fakes (hash embedder, in-memory store, word counts) with real SQLite metadata.

    >>> import tempfile
    >>> service = fake_service(Path(tempfile.mkdtemp()), chat_model=FakeChatModel(["Yes [E1]."]))
    >>> service.twins()
    []
    """
    from twinchat.adapters.sql_keys import SqlKeyStore
    from twinchat.adapters.sql_registry import SqlTwinRegistry
    from twinchat.config import Settings
    from twinchat.services import TwinService

    return TwinService(
        Settings(home=home, **settings),
        store=InMemoryStore(HashEmbedder()),
        registry=SqlTwinRegistry(f"sqlite:///{home / 'meta.db'}"),
        counter=WordCounter(),
        chat_model=chat_model or FakeChatModel(),
        keys=SqlKeyStore(f"sqlite:///{home / 'meta.db'}"),
    )
