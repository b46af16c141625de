"""Chroma memory store: one collection per twin, used through LangChain's Chroma vector store.

``chroma:<path>`` is an embedded persistent client; ``chroma+http://host:port`` a Chroma server
(``chroma run``). Both behave the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import struct
import threading
import uuid
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from twinchat.adapters import require
from twinchat.adapters.embedders import CachedEmbeddings
from twinchat.domain.events import Event
from twinchat.domain.models import Memory
from twinchat.ports import MemoryStore


def collection_name(twin_id: str) -> str:
    """A valid, unique Chroma collection name for any twin id (3-512 chars of [a-zA-Z0-9._-])."""
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", twin_id).strip("-_")[:40] or "x"
    return f"twin-{slug}-{hashlib.sha1(twin_id.encode()).hexdigest()[:10]}"


def make_client(spec: str):  # type: ignore[no-untyped-def]
    """A chromadb client for ``chroma:<path>`` or ``chroma+http(s)://host:port``, telemetry off."""
    chromadb = require("chromadb", "chromadb")
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if spec.startswith("chroma+http"):
        url = urlparse(spec.removeprefix("chroma+"))
        if not url.hostname:
            raise ValueError(f"store {spec!r}: expected chroma+http://HOST:PORT")
        return chromadb.HttpClient(
            host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https", settings=settings
        )
    if spec.startswith("chroma:"):
        return chromadb.PersistentClient(path=spec.removeprefix("chroma:"), settings=settings)
    raise ValueError(f"unknown store {spec!r}: use chroma:<path> or chroma+http://HOST:PORT")


class ChromaMemoryStore(MemoryStore):
    def __init__(self, client: Any, embeddings: CachedEmbeddings) -> None:
        self.client = client
        self.embeddings = embeddings
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _store(self, twin_id: str, *, create: bool = True) -> Any | None:
        with self._lock:
            if twin_id in self._stores:
                return self._stores[twin_id]
            name = collection_name(twin_id)
            if not create and not self._exists(name):
                return None
            langchain_chroma = require("langchain_chroma", "langchain-chroma")
            store = langchain_chroma.Chroma(
                collection_name=name,
                embedding_function=self.embeddings,
                client=self.client,
                collection_metadata={"hnsw:space": "cosine", "twin_id": twin_id},
            )
            self._stores[twin_id] = store
            return store

    def add(self, twin_id: str, events: Sequence[Event]) -> None:
        self.add_many({twin_id: list(events)})

    def add_many(self, events_by_twin: dict[str, list[Event]]) -> None:
        # One encoder call for the whole batch; each twin's add_texts then finds its vectors in the cache.
        self.embeddings.embed_documents([e.text for events in events_by_twin.values() for e in events])
        for twin_id, events in events_by_twin.items():
            store = self._store(twin_id)
            if events and store is not None:
                with _WRITES:
                    store.add_texts(
                        [e.text for e in events],
                        metadatas=[_metadata(e) for e in events],
                        ids=[e.event_id for e in events],
                    )

    def stored_texts(self, twin_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        store = self._store(twin_id, create=False)
        if store is None or not event_ids:
            return {}
        found = store.get(ids=list(event_ids), include=["documents"])
        return dict(zip(found["ids"], found["documents"], strict=True))

    def search(self, twin_id: str, query: str, *, k: int) -> list[Memory]:
        store = self._store(twin_id, create=False)
        if store is None:
            return []
        k = min(k, _count(store))
        if k == 0:
            return []
        # Chroma's cosine space returns distances (1 - cosine); a memory's score is the cosine itself.
        results = store.similarity_search_with_score(query, k=k)
        return [
            Memory(_event(doc.id, doc.page_content, doc.metadata), 1.0 - distance)
            for doc, distance in results
        ]

    def events(self, twin_id: str) -> list[Event]:
        store = self._store(twin_id, create=False)
        if store is None:
            return []
        found = store.get(include=["documents", "metadatas"])
        events = [
            _event(i, d, m)
            for i, d, m in zip(found["ids"], found["documents"], found["metadatas"], strict=True)
        ]
        return sorted(events, key=lambda e: (e.timestamp is None, e.timestamp or datetime.min, e.event_id))

    def count(self, twin_id: str) -> int:
        store = self._store(twin_id, create=False)
        return 0 if store is None else _count(store)

    def delete_events(self, twin_id: str, event_ids: Sequence[str]) -> None:
        store = self._store(twin_id, create=False)
        if store is not None and event_ids:
            with _WRITES:
                store.delete(ids=list(event_ids))

    def delete_twin(self, twin_id: str) -> None:
        """Delete the twin's collection and, on a local Chroma, every byte of it left on disk."""
        with _WRITES:
            with self._lock:
                self._stores.pop(twin_id, None)
                name = collection_name(twin_id)
                if self._exists(name):
                    self.client.delete_collection(name)
            settings = self.client.get_settings()
            if settings.is_persistent:
                # Also when the collection is already gone: an erasure stopped after the delete ends here.
                scrub(Path(settings.persist_directory))

    def _exists(self, name: str) -> bool:
        # get_collection rather than list_collections: listing costs O(twins) on every call.
        try:
            self.client.get_collection(name)
        except Exception as exc:  # chromadb raises NotFoundError (1.x) or ValueError (older) here
            if "not exist" in str(exc).lower() or "not found" in str(exc).lower():
                return False
            raise
        return True


# Chroma writes a collection's HNSW files while adding and deleting; scrub rewrites parts of them. In one
# process (Chroma's local mode supports no other) this lock keeps the two apart, whichever store writes.
_WRITES = threading.RLock()


def scrub(persist_directory: Path) -> None:
    """Remove from a local Chroma folder every byte that deleted collections leave behind.

    Chroma deletes a collection's rows, but SQLite keeps their bytes in free pages, the full-text index keeps
    the deleted documents' trigrams in its segments until they merge, and the collection's vector segment
    folder stays. The merge and VACUUM change no row, and SQLite's locks make them safe beside an open
    client; both rewrite the whole file, so an erasure costs time in proportion to the store.
    """
    # Folders listed before the segments are read: a segment created meanwhile is in the table, so kept.
    folders = [p for p in persist_directory.iterdir() if p.is_dir() and _is_uuid(p.name)]
    database = persist_directory / "chroma.sqlite3"
    with closing(sqlite3.connect(database, timeout=60, isolation_level=None)) as db:
        live = {str(row[0]) for row in db.execute("SELECT id FROM segments")}
        db.execute("INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES('optimize')")
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode, old pages live on in the -wal file
    for folder in folders:
        if folder.name in live:
            _zero_unused_slots(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _zero_unused_slots(segment: Path) -> None:
    """Zero the slots of an HNSW segment that hold no vector yet.

    hnswlib mallocs room for 100 vectors when it creates an index and Chroma writes all of it to disk, so the
    unused slots hold whatever that memory held before: freed bytes of any text the process handled, an erased
    twin's included. A slot is written whole when a vector fills it, so nothing else is left uninitialized.
    """
    try:
        header = (segment / "header.bin").read_bytes()
    except FileNotFoundError:
        return  # no vector added yet
    # hnswlib's persisted header: int32 version, then size_t offsetLevel0, max_elements, count, slot size.
    version, _, max_elements, count, slot_size = struct.unpack_from("<i4Q", header)
    if version != 1 or count > max_elements:
        return  # a layout this code does not know: better left as it is than broken
    for name, used in (("data_level0.bin", count * slot_size), ("length.bin", count * 4)):
        path = segment / name
        if not path.exists() or path.stat().st_size <= used:
            continue
        with path.open("r+b") as file:
            file.seek(used)
            unused = file.read()
            if any(unused):
                file.seek(used)
                file.write(bytes(len(unused)))


def _is_uuid(name: str) -> bool:
    try:
        uuid.UUID(name)
    except ValueError:
        return False
    return True


def _count(store: Any) -> int:
    # langchain-chroma has no public count; its collection is Chroma's own object.
    return int(store._collection.count())


def _metadata(event: Event) -> dict[str, Any]:
    # Chroma metadata values are scalars, never None; the free-form attributes travel as one JSON string.
    meta: dict[str, Any] = {"customer_id": event.customer_id, "source": event.source}
    if event.kind:
        meta["kind"] = event.kind
    if event.timestamp:
        meta["timestamp"] = event.timestamp.isoformat()
        meta["ts"] = event.timestamp.timestamp()
    if event.attributes:
        meta["attributes"] = json.dumps(event.attributes, ensure_ascii=False, default=str)
    return meta


def _event(event_id: str | None, text: str, meta: dict[str, Any] | None) -> Event:
    meta = meta or {}
    timestamp = datetime.fromisoformat(meta["timestamp"]) if meta.get("timestamp") else None
    attributes = json.loads(meta["attributes"]) if meta.get("attributes") else {}
    return Event(
        customer_id=str(meta.get("customer_id", "")),
        text=text,
        event_id=str(event_id),
        timestamp=timestamp,
        source=str(meta.get("source", "unknown")),
        kind=meta.get("kind"),
        attributes=attributes,
    )
