"""The store's layouts: which shard a twin lands in, and a store refusing the layout it was not written in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from twinchat import factory
from twinchat.adapters.chroma_store import (
    ChromaMemoryStore,
    ShardedChromaMemoryStore,
    StoreLayoutError,
    copy_records,
    make_client,
    read_layout,
    record_id,
    resolve_layout,
    shard_of,
)
from twinchat.adapters.embedders import CachedEmbeddings
from twinchat.config import Settings
from twinchat.domain.events import Event
from twinchat.testing import HashEmbedder


def test_a_twin_always_lands_in_the_same_shard() -> None:
    # Fixed values: a change of hash would move every twin of every sharded store.
    assert [shard_of(t, 16) for t in ("C-100", "C-200", "bench-00042")] == [5, 9, 9]
    assert shard_of("C-100", 1) == 0
    # Not Python's hash(), which differs between processes.
    code = "from twinchat.adapters.chroma_store import shard_of; print(shard_of('C-100', 16))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "5"


def test_twins_spread_over_the_shards() -> None:
    counts = Counter(shard_of(f"twin-{i}", 16) for i in range(1600))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 2 * min(counts.values())


def test_record_ids_keep_twins_apart_that_share_an_event_id() -> None:
    assert record_id("a", "ev-1") != record_id("b", "ev-1")
    assert record_id("a", "ev-1").endswith(":ev-1")


def embeddings() -> CachedEmbeddings:
    return CachedEmbeddings(HashEmbedder())


def test_a_new_store_records_the_layout_it_is_opened_with(tmp_path: Path) -> None:
    client = make_client(f"chroma:{tmp_path / 'a'}")
    ShardedChromaMemoryStore(client, embeddings(), shards=4)
    assert read_layout(client) == ("sharded", 4)
    client = make_client(f"chroma:{tmp_path / 'b'}")
    ChromaMemoryStore(client, embeddings())
    assert read_layout(client) == ("per-twin", 0)


def test_opening_a_store_with_the_other_layout_fails_naming_the_migration(tmp_path: Path) -> None:
    client = make_client(f"chroma:{tmp_path}")
    ChromaMemoryStore(client, embeddings()).add("C-1", [Event("C-1", "bought a mug", "e1")])

    with pytest.raises(StoreLayoutError) as refused:
        ShardedChromaMemoryStore(client, embeddings(), shards=16)
    message = str(refused.value)
    assert "the store is per-twin" in message
    assert "twinchat store migrate --to sharded --shards 16" in message
    assert "TWINCHAT_STORE_LAYOUT=sharded" in message and "TWINCHAT_STORE_LAYOUT=per-twin" in message


def test_a_sharded_store_refuses_the_per_twin_layout_and_another_shard_count(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, store_layout="sharded", store_shards=4)
    factory.make_store(settings, HashEmbedder()).add("C-1", [Event("C-1", "bought a mug", "e1")])

    with pytest.raises(StoreLayoutError, match=r"twinchat store migrate --to per-twin`"):
        factory.make_store(settings.model_copy(update={"store_layout": "per-twin"}), HashEmbedder())
    with pytest.raises(StoreLayoutError, match=r"sharded \(4 shards\).*TWINCHAT_STORE_SHARDS=4"):
        factory.make_store(settings.model_copy(update={"store_shards": 8}), HashEmbedder())


def test_by_default_a_new_store_is_sharded_and_an_existing_one_opens_in_the_layout_it_records(
    tmp_path: Path,
) -> None:
    assert Settings(home=tmp_path).store_layout == "auto"
    new = factory.make_store(Settings(home=tmp_path / "new", store_shards=4), HashEmbedder())
    assert isinstance(new, ShardedChromaMemoryStore) and new.shards == 4
    new.add("C-1", [Event("C-1", "bought a mug", "e1")])
    # Its shard count is the store's from now on, whatever the settings say.
    again = factory.make_store(Settings(home=tmp_path / "new", store_shards=8), HashEmbedder())
    assert isinstance(again, ShardedChromaMemoryStore) and again.shards == 4 and again.count("C-1") == 1

    per_twin = Settings(home=tmp_path / "old", store_layout="per-twin")
    factory.make_store(per_twin, HashEmbedder()).add("C-1", [Event("C-1", "bought a mug", "e1")])
    old = factory.make_store(Settings(home=tmp_path / "old"), HashEmbedder())
    assert isinstance(old, ChromaMemoryStore) and old.count("C-1") == 1


def test_a_store_from_before_layouts_were_recorded_is_per_twin(tmp_path: Path) -> None:
    client = make_client(f"chroma:{tmp_path}")
    store = ChromaMemoryStore(client, embeddings())
    store.add("C-1", [Event("C-1", "bought a mug", "e1")])
    client.delete_collection("twinchat-store-layout")  # as a store written by an earlier twinchat

    with pytest.raises(StoreLayoutError, match="the store is per-twin"):
        ShardedChromaMemoryStore(client, embeddings())
    assert ChromaMemoryStore(client, embeddings()).count("C-1") == 1
    assert resolve_layout(client, "auto", 16) == ("per-twin", 0)
    assert read_layout(client) == ("per-twin", 0)


def test_a_layout_record_left_without_its_layout_is_claimed_by_the_next_start(tmp_path: Path) -> None:
    # Earlier twinchat created the record, then described it in a second call: one stopped between left it bare.
    client = make_client(f"chroma:{tmp_path}")
    client.get_or_create_collection("twinchat-store-layout")
    assert read_layout(client) is None and resolve_layout(client, "auto", 4) == ("sharded", 4)
    store = factory.make_store(
        Settings(home=tmp_path, store=f"chroma:{tmp_path}", store_shards=4), HashEmbedder()
    )
    assert isinstance(store, ShardedChromaMemoryStore) and read_layout(client) == ("sharded", 4)


def test_the_open_stores_are_bounded(tmp_path: Path) -> None:
    store = ChromaMemoryStore(make_client(f"chroma:{tmp_path}"), embeddings(), max_open=3)
    for i in range(6):
        store.add(f"C-{i}", [Event(f"C-{i}", f"bought mug {i}", f"e{i}")])
    assert len(store._stores) == 3
    assert [store.count(f"C-{i}") for i in range(6)] == [1] * 6  # reopened when needed


def test_opening_a_collection_reuses_the_clients_settings(tmp_path: Path, monkeypatch) -> None:
    # LangChain otherwise builds Chroma's settings from the environment for each collection it opens.
    import langchain_chroma.vectorstores

    def built(*args: object, **kwargs: object) -> None:
        raise AssertionError("Chroma's settings built again for a collection")

    store = ChromaMemoryStore(make_client(f"chroma:{tmp_path}"), embeddings(), max_open=2)
    monkeypatch.setattr(langchain_chroma.vectorstores, "Settings", built)
    for i in range(4):
        store.add(f"C-{i}", [Event(f"C-{i}", f"bought mug {i}", f"e{i}")])
    assert [store.count(f"C-{i}") for i in range(4)] == [1] * 4


def test_an_embedded_store_keeps_a_bounded_number_of_collections_loaded(tmp_path: Path) -> None:
    # chromadb 1.5.9 ignores chroma_memory_limit_bytes; its HNSW cache holds a count of collections.
    client = make_client(f"chroma:{tmp_path}", memory_mib=100)
    assert client._server.hnsw_cache_size == 20
    assert make_client(f"chroma:{tmp_path / 'b'}", memory_mib=16)._server.hnsw_cache_size == 16


def test_a_sharded_stores_shards_all_fit_in_any_one_part_of_chromas_cache(tmp_path: Path) -> None:
    # Chroma's cache evicts within each of its 64 parts, so 17 collections need room for 17 in every part.
    client = make_client(f"chroma:{tmp_path}", memory_mib=100, resident=17)
    assert client._server.hnsw_cache_size == 64 * 17


def test_migrating_copies_embeddings_and_finishes_after_an_interruption(tmp_path: Path) -> None:
    from twinchat.adapters.chroma_migrate import migrate, store_info

    client = make_client(f"chroma:{tmp_path}")
    store = ChromaMemoryStore(client, embeddings())
    twins = {
        f"C-{i}": [Event(f"C-{i}", f"bought mug {j} of {i}", f"e{j}") for j in range(i + 1)] for i in range(5)
    }
    store.add_many(twins)
    vector = store._store("C-3")._collection.get(ids=["e2"], include=["embeddings"])["embeddings"][0]

    def stop_after_two(name: str, records: int, seen: list[str] = []) -> None:  # noqa: B006
        seen.append(name)
        if len(seen) == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        migrate(client, to="sharded", shards=3, progress=stop_after_two)
    assert (
        read_layout(client) == ("per-twin", 0) and ChromaMemoryStore(client, embeddings()).count("C-4") == 5
    )

    report = migrate(client, to="sharded", shards=3)
    assert (report.twins, report.events, len(report.removed)) == (5, 15, 5)
    assert store_info(client).to_dict() == {
        "layout": "sharded",
        "shards": 3,
        "collections": 3,
        "twins": 5,
        "events": 15,
        "leftovers": [],
    }
    sharded = ShardedChromaMemoryStore(client, CachedEmbeddings(HashEmbedder()), shards=3)
    assert {t: sharded.count(t) for t in twins} == {t: len(e) for t, e in twins.items()}
    assert sharded.stored_texts("C-3", ["e2"]) == {"e2": "bought mug 2 of 3"}
    copied = sharded._shard("C-3").get(ids=[record_id("C-3", "e2")], include=["embeddings"])["embeddings"][0]
    assert list(copied) == list(vector)  # the same vector, not encoded again

    back = migrate(client, to="per-twin")
    assert (back.source, back.target, back.events) == ("sharded", "per-twin", 15)
    assert [e.text for e in ChromaMemoryStore(client, embeddings()).events("C-2")] == [
        f"bought mug {j} of 2" for j in range(3)
    ]


def test_an_erasure_stopped_between_its_delete_and_its_swap_is_finished_on_next_use(tmp_path: Path) -> None:
    client = make_client(f"chroma:{tmp_path}")
    store = ShardedChromaMemoryStore(client, embeddings(), shards=1)
    store.add_many({t: [Event(t, f"bought a mug for {t}", "e1")] for t in ("gone", "kept")})
    # What rebuild_without does, stopped after deleting the old shard, before renaming its copy.
    old = client.get_collection("shard-0000-of-0001")
    copy = client.create_collection(
        "shard-0000-of-0001-rebuild", metadata=old.metadata, embedding_function=None
    )
    copy_records(old, copy, where={"twin_id": {"$ne": "gone"}})
    client.delete_collection("shard-0000-of-0001")

    reopened = ShardedChromaMemoryStore(client, embeddings(), shards=1)
    assert (reopened.count("kept"), reopened.count("gone")) == (1, 0)
    assert {c.name for c in client.list_collections()} == {"twinchat-store-layout", "shard-0000-of-0001"}


def test_a_compaction_stopped_midway_leaves_every_twin_whole_and_runs_again(tmp_path: Path) -> None:
    from twinchat.adapters.chroma_migrate import compact
    from twinchat.adapters.chroma_store import collection_name

    client = make_client(f"chroma:{tmp_path}")
    store = ChromaMemoryStore(client, embeddings())
    store.add_many(
        {t: [Event(t, f"bought mug {j} for {t}", f"e{j}") for j in range(3)] for t in ("ann", "bob")}
    )
    store.delete_events("ann", ["e0"])
    # What rebuild does for ann's collection, stopped after deleting it, before renaming its copy.
    name = collection_name("ann")
    old = client.get_collection(name)
    copy = client.create_collection(name + "-rebuild", metadata=old.metadata, embedding_function=None)
    copy_records(old, copy)
    client.delete_collection(name)

    reopened = ChromaMemoryStore(client, embeddings())  # a new process: the stopped swap is finished
    assert [e.event_id for e in reopened.events("ann")] == ["e1", "e2"] and reopened.count("bob") == 3
    report = compact(client)
    assert (report.layout, report.collections, report.records) == ("per-twin", 2, 5)
    assert {c.name for c in client.list_collections()} == {
        name,
        collection_name("bob"),
        "twinchat-store-layout",
    }
    assert [m.event.event_id for m in ChromaMemoryStore(client, embeddings()).search("ann", "mug", k=1)]


def test_warming_a_sharded_store_opens_the_shards_there_are_and_creates_none(tmp_path: Path) -> None:
    client = make_client(f"chroma:{tmp_path}")
    embedder = HashEmbedder()
    store = ShardedChromaMemoryStore(client, CachedEmbeddings(embedder), shards=4)
    store.add_many({f"C-{i}": [Event(f"C-{i}", f"bought mug {i}", "e1")] for i in range(2)})
    written = sorted(store._stores)
    collections = client.count_collections()

    fresh = ShardedChromaMemoryStore(client, CachedEmbeddings(embedder), shards=4)  # as a new process would
    fresh.warm()
    assert sorted(fresh._stores) == written  # the shards holding twins, loaded; the empty ones not made
    assert client.count_collections() == collections
    assert [m.event.event_id for m in fresh.search("C-1", "mug", k=3)] == ["e1"]
