"""The memory store's behaviour, the same in every mode: an embedded Chroma or a `chroma run` server, each in
the per-twin and the sharded layout; and `twinchat store migrate` moving a real store between layouts."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import HISTORY, run_cli, running_chroma
from twinchat.adapters import chroma_store
from twinchat.adapters.chroma_migrate import migrate, store_info
from twinchat.adapters.chroma_store import (
    ChromaMemoryStore,
    ShardedChromaMemoryStore,
    collection_name,
    make_client,
    read_layout,
    shard_name,
    shard_of,
)
from twinchat.adapters.embedders import CachedEmbeddings
from twinchat.domain.events import Event
from twinchat.ports import Embedder, MemoryStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (`chroma run`), one per module; each test gets a database of its own."""
    with running_chroma(tmp_path_factory.mktemp("chroma")) as port:
        yield "127.0.0.1", port


def server_client(host: str, port: int) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    database = f"db{uuid.uuid4().hex[:12]}"
    settings = ChromaSettings(anonymized_telemetry=False)
    chromadb.AdminClient(
        ChromaSettings(
            anonymized_telemetry=False,
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=host,
            chroma_server_http_port=port,
        )
    ).create_database(database)
    return chromadb.HttpClient(host=host, port=port, database=database, settings=settings)


MakeStore = Callable[[], MemoryStore]


@pytest.fixture(params=["embedded", "server"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "embedded":
        return make_client(f"chroma:{tmp_path / 'chroma'}", memory_mib=256)
    return server_client(*request.getfixturevalue("chroma_server"))


@pytest.fixture(params=["per-twin", "sharded"])
def make_store(request: pytest.FixtureRequest, client: Any, embedder: Embedder) -> MakeStore:
    def build() -> MemoryStore:
        if request.param == "sharded":
            # Two shards for three twins: twins share a shard, which is what the filter has to get right.
            return ShardedChromaMemoryStore(client, CachedEmbeddings(embedder), shards=2)
        return ChromaMemoryStore(client, CachedEmbeddings(embedder))

    return build


def history_events() -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for i, row in enumerate(HISTORY):
        event = Event.from_record({**row, "event_id": f"e{i % 2}-{i}", "kind": "note", "channel": "web"})
        found.setdefault(event.customer_id, []).append(event)
    # The same event id in two twins: ids are unique within a twin only.
    for twin in ("C-100", "C-300"):
        found[twin].append(Event(twin, f"Shared id: {twin} asked about opening hours", "same-id"))
    return found


def test_the_store_behaves_the_same_in_every_mode(make_store: MakeStore) -> None:
    store = make_store()
    events = history_events()
    store.add_many(events)  # across twins, in one batch

    assert {t: store.count(t) for t in events} == {"C-100": 4, "C-200": 2, "C-300": 3}
    assert store.count("C-999") == 0 and store.events("C-999") == [] and store.search("C-999", "x", k=3) == []

    # Search stays within the twin, even for another twin's exact words, and ranks by meaning.
    garden = "Bought a child's garden rake and a watering can"
    assert {m.event.customer_id for m in store.search("C-100", garden, k=10)} == {"C-100"}
    best = store.search("C-300", "gardening tools for children", k=2)
    assert best[0].event.text == garden and 0.3 < best[0].score <= 1.0
    assert len(store.search("C-200", "anything", k=10)) == 2  # fewer than k: what the twin holds

    # Events come back whole and in time order; a twin's ids only.
    listed = store.events("C-100")
    assert [e.text for e in listed][:3] == [r["text"] for r in HISTORY[:3]]
    assert listed[0].timestamp == datetime(2011, 3, 2, tzinfo=UTC) and listed[0].kind == "note"
    assert listed[0].attributes == {"channel": "web"} and listed[0].source == "purchase"
    c100_id = listed[0].event_id
    assert store.stored_texts("C-100", [c100_id, "same-id", "missing"]) == {
        c100_id: HISTORY[0]["text"],
        "same-id": "Shared id: C-100 asked about opening hours",
    }
    assert store.stored_texts("C-200", [c100_id, "same-id"]) == {}
    # An id named twice (a batch holding a repeat of an event) is looked up once.
    assert store.stored_texts("C-100", [c100_id, c100_id]) == {c100_id: HISTORY[0]["text"]}
    assert store.stored_texts_many({"C-100": ["same-id", "same-id"], "C-300": ["same-id", "same-id"]}) == {
        "C-100": {"same-id": "Shared id: C-100 asked about opening hours"},
        "C-300": {"same-id": "Shared id: C-300 asked about opening hours"},
    }

    # A second store over the same collections sees the same (a fresh process, a server's other client).
    again = make_store()
    assert again.count("C-100") == 4 and again.stored_texts("C-300", ["same-id"])

    store.delete_events("C-100", ["same-id"])
    assert store.count("C-100") == 3 and store.stored_texts("C-300", ["same-id"])

    store.delete_twin("C-300")
    assert (
        store.count("C-300") == 0 and store.events("C-300") == [] and store.search("C-300", garden, k=3) == []
    )
    assert {t: store.count(t) for t in ("C-100", "C-200")} == {"C-100": 3, "C-200": 2}
    assert store.search("C-100", "cake stand", k=1)[0].event.customer_id == "C-100"
    store.delete_twin("C-300")  # erasing twice is harmless

    store.add("C-300", events["C-300"][:1])  # the twin can come back
    assert store.count("C-300") == 1 and store.count("C-100") == 3

    # The other client, opened before the erasure (another API worker), keeps working on the collections it
    # had open: it reads and writes what is there now, the erased twin included when it comes back.
    assert (
        again.count("C-100") == 3 and again.search("C-100", "cake stand", k=1)[0].event.customer_id == "C-100"
    )
    again.add("C-200", [Event("C-200", "Asked again about delivery times", "late")])
    again.delete_twin("C-300")
    again.add("C-300", events["C-300"][1:2])
    assert {t: store.count(t) for t in events} == {"C-100": 3, "C-200": 3, "C-300": 1}
    assert store.events("C-300")[0].text == events["C-300"][1].text


def test_reading_creates_no_collection(make_store: MakeStore, client: Any) -> None:
    # An import's first duplicate check, a search for an unknown twin: no collection is made before a write
    # (making a shard costs about 30 ms, on the path of an import's first encoding).
    store = make_store()
    before = client.count_collections()
    assert (
        store.count("C-100") == 0 and store.events("C-100") == [] and store.search("C-100", "tea", k=3) == []
    )
    assert store.stored_texts("C-100", ["e1"]) == {} and store.stored_texts_many({"C-100": ["e1"]}) == {
        "C-100": {}
    }
    store.delete_events("C-100", ["e1"])
    assert client.count_collections() == before
    store.add("C-100", [Event("C-100", "Bought a teapot", "e1")])
    assert client.count_collections() == before + 1 and store.count("C-100") == 1


def test_collections_write_their_index_every_hundred_records_even_those_made_before(
    make_store: MakeStore, client: Any
) -> None:
    # Chroma's default (1000 records in its log before the index is written) made every write after a read cost
    # as much again: twinchat's collections are made with SYNC_THRESHOLD, and older ones are given it when opened.
    def threshold(name: str) -> int:
        return int(client.get_collection(name).configuration_json["hnsw"]["sync_threshold"])

    store = make_store()
    sharded = isinstance(store, ShardedChromaMemoryStore)
    name = (lambda t: shard_name(shard_of(t, 2), 2)) if sharded else collection_name
    client.create_collection(name("C-100"), metadata={"hnsw:space": "cosine"})
    assert threshold(name("C-100")) == 1000  # Chroma's default
    events = history_events()
    store.add_many(events)
    assert {threshold(name(t)) for t in events} == {chroma_store.SYNC_THRESHOLD} == {100}
    assert (
        store.count("C-100") == 4 and client.get_collection(name("C-100")).metadata["hnsw:space"] == "cosine"
    )
    # A rebuild (an erasure in the sharded layout, `twinchat store compact`) keeps it.
    chroma_store.rebuild(client, name("C-200"))
    assert threshold(name("C-200")) == 100 and store.count("C-200") == 2


def test_a_twin_searched_exactly_or_through_chromas_index_gets_the_same_evidence(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    store.add_many(history_events())
    questions = ("gardening tools for children", "cake stand", "opening hours", "a refund for a late parcel")
    exact = {(t, q): store.search(t, q, k=3) for t in ("C-100", "C-300") for q in questions}
    # Past EXACT_SEARCH_LIMIT records a twin is searched through Chroma's HNSW index instead.
    monkeypatch.setattr(chroma_store, "EXACT_SEARCH_LIMIT", 1)
    for (twin, question), want in exact.items():
        got = store.search(twin, question, k=3)
        assert [m.event.event_id for m in got] == [m.event.event_id for m in want], (twin, question)
        assert [m.event.customer_id for m in got] == [twin] * len(want)
        assert max(abs(a.score - b.score) for a, b in zip(got, want, strict=True)) < 1e-4


# --- Chroma dropping indexes from its cache ----------------------------------------------------------------------
# chromadb 1.5.9 drops HNSW indexes from a cache split into 64 parts and reloads a dropped one from disk without
# the records it has not persisted yet (see chroma_store.CACHE_PARTS). A client with room for 16 indexes drops
# them all the time.


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "index"])
@pytest.mark.parametrize("layout", ["per-twin", "sharded"])
def test_every_twin_is_searched_whole_while_chroma_drops_indexes_from_its_cache(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, layout: str, exact: bool
) -> None:
    if not exact:
        monkeypatch.setattr(chroma_store, "EXACT_SEARCH_LIMIT", 0)  # through the HNSW index
    client = make_client(f"chroma:{tmp_path / 'chroma'}", memory_mib=16)
    embeddings = CachedEmbeddings(embedder)
    store: MemoryStore = (
        ShardedChromaMemoryStore(client, embeddings, shards=40)
        if layout == "sharded"
        else ChromaMemoryStore(client, embeddings)
    )
    twins = [f"C-{i}" for i in range(40)]
    for twin in twins:
        store.add(twin, [Event(twin, f"{twin} bought a {item}", item) for item in ("kettle", "lamp", "rug")])
        # Read once, so that Chroma holds this index (the reload it misses is of an index it read before).
        assert len(store.search(twin, "kettle", k=3)) == 3
    for twin in twins:
        found = store.search(twin, "a kettle for the kitchen", k=3)
        assert [m.event.event_id for m in found][0] == "kettle", twin
        assert sorted(m.event.event_id for m in found) == ["kettle", "lamp", "rug"], twin
        assert {m.event.customer_id for m in found} == {twin}


def test_vectors_read_after_chroma_reloads_an_index_include_records_it_had_not_persisted(
    tmp_path: Path,
) -> None:
    """A collection past Chroma's persist threshold (1000 records): after a drop, Chroma's reload from disk lacks
    the last 500, a plain query misses them without a word; read_vectors gets them all."""
    import numpy as np

    client = make_client(f"chroma:{tmp_path / 'chroma'}", memory_mib=16)
    vectors = np.random.default_rng(7).random((1500, 16))
    big = client.create_collection("big-one", metadata={"hnsw:space": "cosine"})
    for start in range(0, 1500, 500):
        ids = [f"r{i}" for i in range(start, start + 500)]
        big.add(ids=ids, embeddings=vectors[start : start + 500].tolist(), documents=ids)
    assert len(big.get(include=["embeddings"])["ids"]) == 1500

    def others(name: str) -> None:  # collections written and read: Chroma drops the big one's index meanwhile
        for i in range(100):
            other = client.create_collection(f"{name}-{i}", metadata={"hnsw:space": "cosine"})
            other.add(ids=["a", "b"], embeddings=vectors[:2].tolist(), documents=["a", "b"])
            other.get(include=["embeddings"])

    others("other")
    got = chroma_store.read_vectors(big, lambda: big.get(include=["embeddings"]))
    assert len(got["ids"]) == 1500
    others("more")
    nearest = chroma_store.read_vectors(
        big, lambda: big.query(query_embeddings=vectors[-1:].tolist(), n_results=1), reload_first=True
    )
    assert nearest["ids"] == [["r1499"]]
    assert big.count() == 1500  # the reload wrote nothing


# --- twinchat store migrate, end to end ------------------------------------------------------------------------


def answer(env: dict[str, str], twin: str, question: str) -> tuple[str, list[str]]:
    asked = run_cli(env, "ask", twin, question, "--json")
    assert asked.returncode == 0, asked.stderr
    found = json.loads(asked.stdout)
    return found["twin_id"], sorted(c["event_id"] for c in found["citations"])


def test_a_store_migrated_to_sharded_answers_the_same_even_after_an_interrupted_run(
    tmp_path: Path, embedder: Embedder
) -> None:
    import os

    data = tmp_path / "history.csv"
    with data.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["customer_id", "text", "source", "timestamp"])
        writer.writeheader()
        writer.writerows(HISTORY)
    env = {**os.environ, "TWINCHAT_HOME": str(tmp_path / "home"), "TWINCHAT_STORE_LAYOUT": "per-twin"}
    ingested = run_cli(env, "ingest", str(data))
    assert ingested.returncode == 0, ingested.stderr
    question = ("C-100", "Was the cake stand you bought damaged?")
    before = answer(env, *question)
    shown = run_cli(env, "show", "C-100", "--json")
    assert before[1] and shown.returncode == 0

    # Interrupted after its first collection: nothing of the old layout is touched, the marker unchanged.
    client = make_client(f"chroma:{tmp_path / 'home' / 'chroma'}")

    def crash(name: str, records: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(client, to="sharded", shards=2, progress=crash)
    assert read_layout(client) == ("per-twin", 0)
    assert store_info(client).twins == 3 and len(store_info(client).leftovers) >= 1
    sharded = {**env, "TWINCHAT_STORE_LAYOUT": "sharded", "TWINCHAT_STORE_SHARDS": "2"}
    refused = run_cli(sharded, "ask", *question)
    assert refused.returncode == 1 and "twinchat store migrate --to sharded --shards 2" in refused.stderr
    del client  # the migration below runs in its own process, as a user would run it

    moved = run_cli(env, "store", "migrate", "--to", "sharded", "--shards", "2")
    assert moved.returncode == 0, moved.stderr
    assert "moved 3 twins and 7 events from per-twin to sharded (2 shards)" in moved.stdout
    assert "removed 3 collections" in moved.stdout
    assert "TWINCHAT_STORE_LAYOUT=sharded TWINCHAT_STORE_SHARDS=2" in moved.stdout

    info = json.loads(run_cli(sharded, "store", "info", "--json").stdout)
    assert {k: info[k] for k in ("layout", "shards", "collections", "twins", "events", "leftovers")} == {
        "layout": "sharded",
        "shards": 2,
        "collections": 2,
        "twins": 3,
        "events": 7,
        "leftovers": [],
    }
    assert answer(sharded, *question) == before
    assert json.loads(run_cli(sharded, "show", "C-100", "--json").stdout) == json.loads(shown.stdout)
    old = run_cli(env, "ask", *question)
    assert old.returncode == 1 and "TWINCHAT_STORE_LAYOUT=sharded" in old.stderr

    again = run_cli(sharded, "store", "migrate", "--to", "sharded", "--shards", "2")
    assert again.returncode == 0 and "already sharded (2 shards): 3 twins, 7 events" in again.stdout

    back = run_cli(sharded, "store", "migrate", "--to", "per-twin")
    assert back.returncode == 0 and "from sharded (2 shards) to per-twin" in back.stdout
    assert answer(env, *question) == before
