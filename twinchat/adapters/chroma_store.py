"""Chroma memory stores, used through LangChain's Chroma vector store, in one of two layouts.

``per-twin`` (:class:`ChromaMemoryStore`) keeps one collection per twin; ``sharded``
(:class:`ShardedChromaMemoryStore`) spreads twins over a fixed number of collections, each record carrying its
``twin_id`` and every read filtering on it. The store records its layout (:func:`check_layout`).

``chroma:<path>`` is an embedded persistent client; ``chroma+http://host:port`` a Chroma server
(``chroma run``). Both behave the same.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import shutil
import sqlite3
import struct
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
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


LAYOUTS = ("per-twin", "sharded")
# A collection holding no records: its metadata says how the store is laid out, so that a store is never read
# with the other layout (which would silently show no twins).
LAYOUT_COLLECTION = "twinchat-store-layout"
REBUILD_SUFFIX = "-rebuild"
# How much memory one loaded collection takes, for turning a memory budget into a count of collections: a
# small twin's HNSW index measured 2.6 MiB in chromadb 1.5.9; a larger one takes more.
COLLECTION_MIB = 5


class StoreLayoutError(RuntimeError):
    """The store on disk (or on the server) is laid out otherwise than the settings say."""


def shard_of(twin_id: str, shards: int) -> int:
    """The shard holding a twin: a stable hash of its id (never Python's ``hash``, which varies by process).

    >>> shard_of("C-100", 16), shard_of("C-100", 16) == shard_of("C-100", 16)
    (5, True)
    """
    return int.from_bytes(hashlib.sha256(twin_id.encode()).digest()[:8], "big") % shards


def shard_name(index: int, shards: int) -> str:
    """The collection of one shard; the count is in the name, so that two shardings never share one."""
    return f"shard-{index:04d}-of-{shards:04d}"


def read_layout(client: Any) -> tuple[str, int] | None:
    """The layout recorded in the store, as (layout, shards); None where none is recorded."""
    return _layout_of(_layout_record(client))


def _layout_record(client: Any) -> dict[str, Any] | None:
    """The layout record's metadata: None where there is no record, without "layout" where it is bare (created,
    not yet described, by an earlier twinchat that wrote the two in separate calls)."""
    try:
        return dict(client.get_collection(LAYOUT_COLLECTION).metadata or {})
    except Exception as exc:
        if _not_found(exc):
            return None
        raise


def _layout_of(metadata: dict[str, Any] | None) -> tuple[str, int] | None:
    if not metadata or "layout" not in metadata:
        return None
    return str(metadata["layout"]), int(metadata.get("shards", 0))


def _layout_metadata(layout: str, shards: int) -> dict[str, Any]:
    return {"layout": layout, "shards": shards if layout == "sharded" else 0}


def write_layout(client: Any, layout: str, shards: int) -> None:
    """Record the layout, replacing any recorded (a migration's last step)."""
    metadata = _layout_metadata(layout, shards)
    client.get_or_create_collection(LAYOUT_COLLECTION, metadata=metadata).modify(metadata=metadata)


def _claim_layout(client: Any, layout: str, shards: int) -> tuple[str, int]:
    """Record the layout in a store that has none; what the store then records. The record is created with its
    metadata in one call, and a described record is never changed here: of several instances claiming an empty
    store at once, the first one's layout is recorded and every other one gets it back."""
    metadata = _layout_metadata(layout, shards)
    record = client.get_or_create_collection(LAYOUT_COLLECTION, metadata=metadata)
    recorded = _layout_of(record.metadata)  # an existing record's own metadata, not the one asked for
    if recorded is None:  # a bare record: nobody's yet
        record.modify(metadata=metadata)
        recorded = (layout, metadata["shards"])
    return recorded


def _layout_without_record(client: Any) -> tuple[str, int] | None:
    """For a store in which no layout record was read: per-twin if it was written before layouts were recorded
    (it holds collections), None if it is empty, or the record another instance wrote meanwhile.

    The record is read again after the collections are counted. Every instance records its layout before it
    creates a collection, so a collection another instance created meanwhile means a record is there to read:
    instances starting at once over an empty store never take one another's collections for an old store.
    """
    collections = client.count_collections()
    record = _layout_record(client)
    recorded = _layout_of(record)
    if recorded is not None:
        return recorded
    if record is not None:
        collections -= 1  # a bare record is no twin's collection
    return ("per-twin", 0) if collections else None


def resolve_layout(client: Any, configured: str, shards: int) -> tuple[str, int]:
    """The layout to open the store with, as (layout, shards): the configured one, or under ``auto`` the one the
    store records; a store written before layouts were recorded is per-twin, a new one sharded in ``shards``.
    """
    if configured != "auto":
        return configured, shards if configured == "sharded" else 0
    return read_layout(client) or _layout_without_record(client) or ("sharded", shards)


def check_layout(client: Any, layout: str, shards: int) -> None:
    """Record the layout in a store that has none yet, or refuse a store laid out otherwise."""
    want = (layout, shards if layout == "sharded" else 0)
    recorded = read_layout(client)
    if recorded is None:
        # An old per-twin store, or an empty one, takes the layout configured if it is its own.
        recorded = _layout_without_record(client) or want
        if recorded == want:
            recorded = _claim_layout(client, *want)
    if recorded != want:
        raise StoreLayoutError(layout_mismatch(recorded, want))


def layout_mismatch(recorded: tuple[str, int], want: tuple[str, int]) -> str:
    def describe(layout: str, shards: int) -> str:
        return f"sharded ({shards} shards)" if layout == "sharded" else layout

    def settings(layout: str, shards: int) -> str:
        return f"TWINCHAT_STORE_LAYOUT={layout}" + (f" TWINCHAT_STORE_SHARDS={shards}" if shards else "")

    migrate = f"twinchat store migrate --to {want[0]}" + (f" --shards {want[1]}" if want[1] else "")
    return (
        f"the store is {describe(*recorded)} but the settings say {describe(*want)}: set "
        f"{settings(*recorded)} to use it as it is, or convert it with `{migrate}` (then keep "
        f"{settings(*want)})"
    )


def make_client(spec: str, *, memory_mib: int | None = None, resident: int = 0):  # type: ignore[no-untyped-def]
    """A chromadb client for ``chroma:<path>`` or ``chroma+http(s)://host:port``, telemetry off.

    ``memory_mib`` bounds an embedded store's loaded collections (a server has its own settings); the
    ``resident`` collections (a sharded store's shards) stay loaded whatever the bound.
    """
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
        path = spec.removeprefix("chroma:")
        if memory_mib is not None:
            try:
                _start_bounded(path, settings, cache_capacity(memory_mib, resident))
            except (ImportError, AttributeError) as exc:  # chromadb's internals moved: run unbounded, say so
                warnings.warn(
                    f"TWINCHAT_STORE_MEMORY_MIB not applied with this chromadb: {exc}", stacklevel=2
                )
        return chromadb.PersistentClient(path=path, settings=settings)
    raise ValueError(f"unknown store {spec!r}: use chroma:<path> or chroma+http://HOST:PORT")


def cache_capacity(memory_mib: int, resident: int = 0) -> int:
    """How many HNSW indexes an embedded store's Chroma may keep loaded, for a memory budget and a number of
    ``resident`` collections that must all stay loaded (see :func:`make_client`)."""
    # Chroma's cache evicts within each of its parts: room for all resident collections in any one part keeps
    # them all, and they are all there is to keep.
    return max(16, memory_mib // COLLECTION_MIB, CACHE_PARTS * resident)


def _start_bounded(path: str, settings: Any, collections: int) -> None:
    """Start the embedded Chroma of ``path`` keeping at most ``collections`` HNSW indexes loaded.

    chromadb 1.5.9's Rust client ignores ``chroma_segment_cache_policy`` and ``chroma_memory_limit_bytes`` (only
    the retired Python segment manager read them); its one bound is the HNSW cache's capacity, a count set to
    RLIMIT_NOFILE / 5 when the client starts, with no setting. So the client's system is started here with a
    smaller capacity, and PersistentClient then finds it (chromadb shares one system per folder).
    """
    from chromadb.api import ServerAPI
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import System
    from chromadb.telemetry.product import ProductTelemetryClient

    settings.persist_directory, settings.is_persistent = path, True  # as PersistentClient sets them
    with SharedSystemClient._refcount_lock:
        if path in SharedSystemClient._identifier_to_system:
            return
        system = System(settings)
        # chromadb resolves these abstract types to the implementations its settings name (as it does itself)
        system.instance(ProductTelemetryClient)  # type: ignore[type-abstract]
        api = system.instance(ServerAPI)  # type: ignore[type-abstract]
        if hasattr(api, "hnsw_cache_size"):  # the Rust bindings; files stay the other bound
            api.hnsw_cache_size = min(api.hnsw_cache_size, collections)
        system.start()
        SharedSystemClient._identifier_to_system[path] = system


def local_directory(client: Any) -> Path | None:
    """The folder of an embedded store on disk; None for a Chroma server or an in-memory store."""
    settings = client.get_settings()
    return Path(settings.persist_directory) if settings.is_persistent else None


def _not_found(exc: Exception) -> bool:
    # chromadb raises NotFoundError (1.x) or ValueError (older) for a missing collection
    text = str(exc).lower()
    return "not exist" in text or "not found" in text


Method = TypeVar("Method", bound=Callable[..., Any])


def _reopening(method: Method) -> Method:
    """Run a store method again, once, on freshly opened collections when a collection it had open is gone.

    An open collection is a handle on a collection id. Another client can delete that collection (a twin
    erased in the per-twin layout, a shard rebuilt by an embedded store's erasure, a migration), and every call
    through the old handle then fails with Chroma's "does not exist", though a collection of that name may be
    there again. The methods are safe to run twice: writes are upserts or deletes by id.
    """

    @functools.wraps(method)
    def run(self: _ChromaStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if not _not_found(exc):
                raise
        self._forget_all()
        return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class _ChromaStore(MemoryStore):
    """What both layouts share: the client, the embeddings, and a bounded set of open LangChain stores."""

    def __init__(self, client: Any, embeddings: CachedEmbeddings, *, max_open: int = 256) -> None:
        self.client = client
        self.embeddings = embeddings
        self.max_open = max_open
        self._stores: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _open(self, name: str, metadata: dict[str, Any], *, create: bool = True) -> Any | None:
        """LangChain's Chroma on collection ``name``, the least recently used beyond ``max_open`` dropped."""
        with self._lock:
            if name in self._stores:
                self._stores.move_to_end(name)
                return self._stores[name]
            finish_rebuild(self.client, name)  # a rebuild (erasure, `store compact`) stopped before its swap
            if not create and not self._exists(name):
                return None
            langchain_chroma = require("langchain_chroma", "langchain-chroma")
            store = langchain_chroma.Chroma(
                collection_name=name,
                embedding_function=self.embeddings,
                client=self.client,
                # The client's own: otherwise LangChain builds Chroma's settings anew from the environment for
                # every collection it opens, unused beside a client: 14 ms each, 59 s of a 102 s per-twin import.
                client_settings=self.client.get_settings(),
                collection_metadata={**INDEX_METADATA, **metadata},
            )
            _lower_sync_threshold(store._collection)  # a collection made before SYNC_THRESHOLD was set
            self._stores[name] = store
            while len(self._stores) > self.max_open:
                self._stores.popitem(last=False)
            return store

    def embed_ahead(self, texts: Sequence[str]) -> Future[None]:
        return self.embeddings.embed_ahead(texts)

    def warm(self) -> None:
        # The encoder loads its model on first use; every search needs it.
        self.embeddings.embedder.embed_batch(["warm-up"])

    def _forget(self, name: str) -> None:
        with self._lock:
            self._stores.pop(name, None)

    def _forget_all(self) -> None:
        with self._lock:
            self._stores.clear()

    def _exists(self, name: str) -> bool:
        # get_collection rather than list_collections: listing costs O(twins) on every call.
        try:
            self.client.get_collection(name)
        except Exception as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def _exact_search(
        self, collection: Any, fetch: Callable[[], dict[str, Any]], query: str, k: int
    ) -> list[Memory] | None:
        """The ``k`` records ``fetch`` returns (a get with embeddings of ``collection``) nearest the query by exact
        cosine; None when it returned more than :data:`EXACT_SEARCH_LIMIT` records, for the index to search.

        The query is encoded on another thread while Chroma fetches the records: the encoder releases the GIL
        while it runs, so the two overlap. Its vector stays cached for the index search if one follows.
        """
        encoding = _query_encoder().submit(self.embeddings.embed_query, query)
        found = read_vectors(collection, fetch)
        query_vector = encoding.result()
        if len(found["ids"]) > EXACT_SEARCH_LIMIT:
            return None
        if not found["ids"]:
            return []
        np = require("numpy", "numpy")
        vectors = np.asarray(found["embeddings"], dtype=np.float32)
        wanted = np.asarray(query_vector, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(wanted)
        scores = (vectors @ wanted) / np.where(norms == 0, 1.0, norms)
        best = np.argsort(-scores, kind="stable")[:k]
        return [
            Memory(_event(found["ids"][i], found["documents"][i], found["metadatas"][i]), float(scores[i]))
            for i in best
        ]

    def _scrub_if_local(self) -> None:
        directory = local_directory(self.client)
        if directory is not None:
            scrub(directory)


class ChromaMemoryStore(_ChromaStore):
    """The per-twin layout: one Chroma collection per twin."""

    layout = "per-twin"

    def __init__(self, client: Any, embeddings: CachedEmbeddings, *, max_open: int = 256) -> None:
        super().__init__(client, embeddings, max_open=max_open)
        check_layout(client, self.layout, 0)

    def _store(self, twin_id: str, *, create: bool = True) -> Any | None:
        return self._open(collection_name(twin_id), {"twin_id": twin_id}, create=create)

    def add(self, twin_id: str, events: Sequence[Event]) -> None:
        self.add_many({twin_id: list(events)})

    @_reopening
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

    @_reopening
    def stored_texts(self, twin_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        store = self._store(twin_id, create=False)
        if store is None or not event_ids:
            return {}
        found = store.get(ids=_unique(event_ids), include=["documents"])
        return dict(zip(found["ids"], found["documents"], strict=True))

    @_reopening
    def search(self, twin_id: str, query: str, *, k: int) -> list[Memory]:
        store = self._store(twin_id, create=False)
        if store is None or k <= 0:
            return []
        exact = self._exact_search(
            store,
            lambda: store.get(include=["embeddings", "documents", "metadatas"], limit=EXACT_SEARCH_LIMIT + 1),
            query,
            k,
        )
        if exact is not None:
            return exact
        # Chroma's cosine space returns distances (1 - cosine); a memory's score is the cosine itself.
        results = read_vectors(
            store, lambda: store.similarity_search_with_score(query, k=k), reload_first=True
        )
        return [
            Memory(_event(doc.id, doc.page_content, doc.metadata), 1.0 - distance)
            for doc, distance in results
        ]

    @_reopening
    def events(self, twin_id: str) -> list[Event]:
        store = self._store(twin_id, create=False)
        if store is None:
            return []
        return _sorted_events(store.get(include=["documents", "metadatas"]))

    @_reopening
    def count(self, twin_id: str) -> int:
        store = self._store(twin_id, create=False)
        return 0 if store is None else _count(store)

    @_reopening
    def delete_events(self, twin_id: str, event_ids: Sequence[str]) -> None:
        store = self._store(twin_id, create=False)
        if store is not None and event_ids:
            with _WRITES:
                store.delete(ids=list(event_ids))

    @_reopening
    def delete_twin(self, twin_id: str) -> None:
        """Delete the twin's collection and, on a local Chroma, every byte of it left on disk."""
        with _WRITES:
            name = collection_name(twin_id)
            self._forget(name)
            with self._lock:
                if self._exists(name):
                    self.client.delete_collection(name)
            # Also when the collection is already gone: an erasure stopped after the delete ends here.
            self._scrub_if_local()


class ShardedChromaMemoryStore(_ChromaStore):
    """The sharded layout: twins spread over a fixed number of collections, each record carrying its twin.

    Every read filters on ``twin_id``, so a twin still sees only its own memories; Chroma keeps ``shards``
    collections loaded however many twins there are. Example::

        store = ShardedChromaMemoryStore(make_client("chroma:/tmp/store"), CachedEmbeddings(embedder), shards=16)
        store.add("C-100", events)
        store.search("C-100", "cake stand", k=5)  # only C-100's events
    """

    layout = "sharded"

    def __init__(
        self, client: Any, embeddings: CachedEmbeddings, *, shards: int = 16, max_open: int = 256
    ) -> None:
        super().__init__(client, embeddings, max_open=max_open)
        check_layout(client, self.layout, shards)
        self.shards = shards

    def _shard(self, twin_id: str) -> Any | None:
        """The twin's shard to read; None if it does not exist yet (a read creates no collection)."""
        return self._shard_at(shard_of(twin_id, self.shards), create=False)

    def _shard_at(self, index: int, *, create: bool = True) -> Any:
        """Shard ``index``; None if it does not exist and not ``create`` (a chromadb collection through LangChain's
        Chroma, or None: typed Any for the callers that create it)."""
        return self._open(
            shard_name(index, self.shards), {"shard": index, "shards": self.shards}, create=create
        )

    def add(self, twin_id: str, events: Sequence[Event]) -> None:
        self.add_many({twin_id: list(events)})

    @_reopening
    def warm(self) -> None:
        """Load the encoder and every shard's index: a shard's first read in a process loads its index (about
        150 ms at 19,000 records), which the first search of a twin in it would otherwise wait for."""
        super().warm()
        for index in range(self.shards):
            shard = self._shard_at(index, create=False)
            if shard is not None:
                read_vectors(shard, partial(shard.get, limit=1, include=["embeddings"]))

    @_reopening
    def add_many(self, events_by_twin: dict[str, list[Event]]) -> None:
        # One encoder call for the whole batch, then one add per shard, its vectors found in the cache.
        self.embeddings.embed_documents([e.text for events in events_by_twin.values() for e in events])
        for twins in self._by_shard(t for t, events in events_by_twin.items() if events):
            pairs = [(t, e) for t in twins for e in events_by_twin[t]]
            store = self._shard_at(shard_of(twins[0], self.shards))
            for start in range(0, len(pairs), ADD_BATCH):
                part = pairs[start : start + ADD_BATCH]
                with _WRITES:
                    store.add_texts(
                        [e.text for _, e in part],
                        metadatas=[{**_metadata(e), "twin_id": t, "event_id": e.event_id} for t, e in part],
                        ids=[record_id(t, e.event_id) for t, e in part],
                    )

    @_reopening
    def stored_texts(self, twin_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        shard = self._shard(twin_id)
        if shard is None or not event_ids:
            return {}
        found = shard.get(
            ids=[record_id(twin_id, e) for e in _unique(event_ids)],
            where={"twin_id": twin_id},
            include=["documents", "metadatas"],
        )
        return {m["event_id"]: d for d, m in zip(found["documents"], found["metadatas"], strict=True)}

    @_reopening
    def stored_texts_many(self, event_ids_by_twin: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        # One get per shard for a whole batch, rather than one per twin.
        found: dict[str, dict[str, str]] = {t: {} for t in event_ids_by_twin}
        for twins in self._by_shard(event_ids_by_twin):
            shard = self._shard(twins[0])
            if shard is None:
                continue
            ids = [record_id(t, e) for t in twins for e in _unique(event_ids_by_twin[t])]
            for start in range(0, len(ids), ADD_BATCH):
                got = shard.get(ids=ids[start : start + ADD_BATCH], include=["documents", "metadatas"])
                for document, meta in zip(got["documents"], got["metadatas"], strict=True):
                    found[meta["twin_id"]][meta["event_id"]] = document
        return found

    @_reopening
    def counts(self, twin_ids: Sequence[str]) -> dict[str, int]:
        # One get of the ids per shard (twin_id $in the shard's twins), each id counted to the twin its prefix
        # names (record_id): no metadata is read.
        counted = dict.fromkeys(twin_ids, 0)
        for twins in self._by_shard(twin_ids):
            shard = self._shard(twins[0])
            if shard is None:
                continue
            for start in range(0, len(twins), ADD_BATCH):
                part = twins[start : start + ADD_BATCH]
                by_prefix = {record_prefix(t): t for t in part}
                got = shard.get(where={"twin_id": {"$in": part}}, include=[])
                for found in got["ids"]:
                    counted[by_prefix[found.partition(":")[0]]] += 1
        return counted

    def _by_shard(self, twin_ids: Iterable[str]) -> list[list[str]]:
        """The twins grouped by shard."""
        groups: dict[int, list[str]] = {}
        for twin_id in twin_ids:
            groups.setdefault(shard_of(twin_id, self.shards), []).append(twin_id)
        return list(groups.values())

    @_reopening
    def search(self, twin_id: str, query: str, *, k: int) -> list[Memory]:
        shard = self._shard(twin_id)
        if shard is None or k <= 0:
            return []

        def fetch() -> dict[str, Any]:
            found = shard.get(
                where={"twin_id": twin_id},
                include=["embeddings", "documents", "metadatas"],
                limit=EXACT_SEARCH_LIMIT + 1,
            )
            found["ids"] = [m["event_id"] for m in found["metadatas"]]
            return found

        exact = self._exact_search(shard, fetch, query, k)
        if exact is not None:
            return exact
        # A filtered query asking for more than the twin holds returns what it holds: no count first.
        results = read_vectors(
            shard,
            lambda: shard.similarity_search_with_score(query, k=k, filter={"twin_id": twin_id}),
            reload_first=True,
        )
        return [
            Memory(_event(doc.metadata.get("event_id"), doc.page_content, doc.metadata), 1.0 - distance)
            for doc, distance in results
        ]

    @_reopening
    def events(self, twin_id: str) -> list[Event]:
        shard = self._shard(twin_id)
        if shard is None:
            return []
        found = shard.get(where={"twin_id": twin_id}, include=["documents", "metadatas"])
        found["ids"] = [m["event_id"] for m in found["metadatas"]]
        return _sorted_events(found)

    @_reopening
    def count(self, twin_id: str) -> int:
        shard = self._shard(twin_id)
        return 0 if shard is None else len(shard.get(where={"twin_id": twin_id}, include=[])["ids"])

    @_reopening
    def delete_events(self, twin_id: str, event_ids: Sequence[str]) -> None:
        shard = self._shard(twin_id)
        if shard is not None and event_ids:
            with _WRITES:
                shard.delete(ids=[record_id(twin_id, e) for e in event_ids])

    @_reopening
    def delete_twin(self, twin_id: str) -> None:
        """Remove the twin's records and, on a local Chroma, every byte of them left on disk.

        On disk, Chroma and hnswlib only mark deleted records, so the twin's shard is rebuilt without them: the
        other twins' records (embeddings included) are copied into a fresh collection, which replaces the shard.
        That needs the shard to itself, which one process has (Chroma's local mode supports no other). A Chroma
        server is shared by every API worker writing to the shard, and twinchat cannot reach its files: there
        the records are deleted in place, in one call, and no other client's write can be lost.
        """
        if local_directory(self.client) is None:
            shard = self._shard(twin_id)
            if shard is not None:
                shard._collection.delete(where={"twin_id": twin_id})
            return
        name = shard_name(shard_of(twin_id, self.shards), self.shards)
        with _WRITES:
            self._forget(name)
            finish_rebuild(self.client, name)
            if self._exists(name):
                rebuild_without(self.client, name, twin_id)
            self._forget(name)
            self._scrub_if_local()


# A twin with at most this many records is searched exactly: its records (embeddings included) are fetched by
# its id and ranked here. That is faster than Chroma's HNSW search filtered on the twin in a shared shard (4 ms
# against 15 ms in a shard of 19,000 records, benchmarks/RESULTS.md) and never misses a nearer record, as a
# filtered graph search can. Larger histories are searched through Chroma's index.
EXACT_SEARCH_LIMIT = 2000

_QUERY_ENCODER: ThreadPoolExecutor | None = None
_QUERY_ENCODER_LOCK = threading.Lock()


def _query_encoder() -> ThreadPoolExecutor:
    """The threads that encode search queries beside Chroma's fetch (made on first use)."""
    global _QUERY_ENCODER
    with _QUERY_ENCODER_LOCK:
        if _QUERY_ENCODER is None:
            _QUERY_ENCODER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="twinchat-query")
    return _QUERY_ENCODER


# Chroma writes a collection's HNSW index to disk once this many records were added since it last did (its
# default: 1000); until then they are in its write-ahead log only. Read between two writes, such a collection makes
# the next write cost as much again per record still in the log: an import's duplicate checks and counts, read
# between its batches, doubled Chroma's CPU (a batch of 1,330 records over 16 shards: 5.7 CPU-seconds with the
# default, 0.4 at 100; benchmarks/RESULTS.md, ninth pass). At 100, the index is written about ten times as often.
SYNC_THRESHOLD = 100

# How Chroma indexes the collections twinchat creates: a memory's score is the cosine (1 - Chroma's distance).
INDEX_METADATA = {"hnsw:space": "cosine", "hnsw:sync_threshold": SYNC_THRESHOLD}

# Records per Chroma call when adding or copying: under chromadb's largest batch (5461) for any client.
ADD_BATCH = 2000


def record_id(twin_id: str, event_id: str) -> str:
    """A record's id in a shard: event ids are unique within a twin only, so the twin's digest prefixes it."""
    return f"{record_prefix(twin_id)}:{event_id}"


def record_prefix(twin_id: str) -> str:
    """What every record id of this twin starts with, before the ``:``."""
    return hashlib.sha1(twin_id.encode()).hexdigest()[:16]


def rebuild_without(client: Any, name: str, twin_id: str) -> None:
    """Replace collection ``name`` by a copy holding every record but the twin's."""
    rebuild(client, name, where={"twin_id": {"$ne": twin_id}})


def _lower_sync_threshold(collection: Any) -> None:
    """Give a collection made with a larger HNSW sync threshold (Chroma's default) twinchat's :data:`SYNC_THRESHOLD`."""
    hnsw = (getattr(collection, "configuration_json", None) or {}).get("hnsw") or {}
    if hnsw.get("sync_threshold", 0) > SYNC_THRESHOLD:
        collection.modify(configuration={"hnsw": {"sync_threshold": SYNC_THRESHOLD}})


def rebuild(client: Any, name: str, *, where: dict[str, Any] | None = None) -> int:
    """Replace collection ``name`` by a fresh copy of its records (those ``where`` selects), leaving behind what
    Chroma and hnswlib only marked deleted; how many records the copy holds. Stopped midway, it is finished by
    :func:`finish_rebuild` or started again."""
    old = client.get_collection(name)
    temp = name + REBUILD_SUFFIX
    with contextlib.suppress(Exception):
        client.delete_collection(temp)  # a rebuild stopped before its swap: start it again
    # No embedding function: records come with their vectors (chromadb's default would be its own model).
    metadata = {**(old.metadata or {}), "hnsw:sync_threshold": SYNC_THRESHOLD}
    new = client.create_collection(temp, metadata=metadata, embedding_function=None)
    kept = copy_records(old, new, where=where)
    if new.count() != kept:
        raise RuntimeError(f"rebuilding {name}: copied {kept} records but {new.count()} arrived")
    client.delete_collection(name)
    new.modify(name=name)
    return kept


def copy_records(source: Any, target: Any, *, where: dict[str, Any] | None = None) -> int:
    """Copy records (ids, documents, metadatas, embeddings) page by page; how many."""
    copied = 0
    while True:
        page = read_vectors(
            source,
            partial(
                source.get,
                where=where,
                include=["embeddings", "documents", "metadatas"],
                limit=ADD_BATCH,
                offset=copied,
            ),
        )
        if not page["ids"]:
            return copied
        target.add(
            ids=page["ids"],
            embeddings=page["embeddings"],
            documents=page["documents"],
            metadatas=page["metadatas"],
        )
        copied += len(page["ids"])


def finish_rebuild(client: Any, name: str) -> None:
    """A rebuild stopped between deleting the old shard and renaming its copy: finish it."""
    try:
        client.get_collection(name)
    except Exception as exc:
        if not _not_found(exc):
            raise
        try:
            client.get_collection(name + REBUILD_SUFFIX).modify(name=name)
        except Exception as exc2:
            if not _not_found(exc2):
                raise


def _sorted_events(found: dict[str, Any]) -> list[Event]:
    events = [
        _event(i, d, m) for i, d, m in zip(found["ids"], found["documents"], found["metadatas"], strict=True)
    ]
    return sorted(events, key=lambda e: (e.timestamp is None, e.timestamp or datetime.min, e.event_id))


# Chroma writes a collection's HNSW files while adding and deleting; scrub rewrites parts of them. In one
# process (Chroma's local mode supports no other) this lock keeps the two apart, whichever store writes.
_WRITES = threading.RLock()

# chromadb 1.5.9 (embedded, and `chroma run` alike) keeps collections' HNSW indexes in an LRU cache split into
# CACHE_PARTS parts, each holding 1/CACHE_PARTS of the capacity, so an index can be dropped long before the cache
# is full. The next read loads the dropped index from disk without the records added since Chroma last persisted
# it (every 1000 records, so a small twin's index was never persisted): a get with embeddings then fails ("Error
# creating hnsw segment reader: Nothing found on disk", "Error finding id") and a query silently leaves those
# records out. Any write reloads the index and replays them, so every read of vectors goes through read_vectors.
CACHE_PARTS = 64
# The id of a record that cannot exist (an event id is stripped and holds no NUL): deleting it is a write that
# changes nothing.
RELOAD_ID = "\x00twinchat: reload the index"
_STALE_INDEX = ("Error creating hnsw segment reader", "Error finding id")

T = TypeVar("T")


def read_vectors(collection: Any, read: Callable[[], T], *, reload_first: bool = False) -> T:
    """``read`` (a get with embeddings, or a query, of ``collection``) against the collection's whole index.

    A get fails rather than return a stale index's vectors, so it is retried once after a reload; a query
    (``reload_first``) cannot tell, so the index is reloaded before it. ``collection`` is a chromadb collection
    or LangChain's Chroma over one.
    """
    if not reload_first:
        try:
            return read()
        except Exception as exc:
            if not any(sign in str(exc) for sign in _STALE_INDEX):
                raise
    reload_index(collection)
    return read()


def reload_index(collection: Any) -> None:
    """Make Chroma reload the collection's HNSW index with every record in it (see :data:`CACHE_PARTS`)."""
    with _WRITES:
        collection.delete(ids=[RELOAD_ID])


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


def _unique(ids: Iterable[str]) -> list[str]:
    """The ids once each, in order: Chroma refuses a get that names an id twice (a batch may hold a repeat)."""
    return list(dict.fromkeys(ids))


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
