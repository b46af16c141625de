"""Erasing a twin leaves no trace of the customer in any file under TWINCHAT_HOME: Chroma's SQLite file (free
pages and full-text index included), Chroma's vector segment folders, and the registry's SQLite file; in both
store layouts (the sharded one rebuilds the twin's shard without it). `twinchat store compact` and `store
scrub` remove what a forgotten memory, or an erasure over a Chroma server, leaves in the index files."""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli, running_chroma
from twinchat import factory
from twinchat.adapters.chroma_migrate import compact
from twinchat.adapters.chroma_store import ChromaMemoryStore, ShardedChromaMemoryStore, make_client
from twinchat.adapters.embedders import CachedEmbeddings
from twinchat.adapters.sql_registry import SqlTwinRegistry
from twinchat.config import Settings
from twinchat.domain.control import LOCAL_CUSTOMER, AuditEntry
from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord
from twinchat.domain.sessions import now
from twinchat.ports import Embedder, MemoryStore
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, HashEmbedder, WordCounter

# Chroma's full-text index stores trigrams, never a whole marker; a run of a character no other history has
# makes its trigram findable in the raw bytes (the term is written whole, no prefix shared with another).
RARE = "☃☃☃☃"


def history(customer: str, marker: str, *, extra: str = "") -> list[dict[str, object]]:
    return [
        {
            "customer_id": customer,
            "text": f"Bought a {marker} cake stand and a set of cake tins {extra}".strip(),
            "source": "purchase",
            "timestamp": "2011-03-02",
            "products": [f"cake stand {marker}"],
        },
        {
            "customer_id": customer,
            "text": f"Support ticket {marker}: the cake stand arrived chipped, asked for a refund",
            "source": "support",
            "timestamp": "2011-03-09",
        },
        {
            "customer_id": customer,
            "text": f"Survey {marker}",
            "source": "survey",
            "timestamp": "2011-04-01",
            "question_id": "delivery_day",
            "question": "Which day do you prefer for deliveries?",
            "answer": f"Saturday {marker}",
        },
    ]


def files_holding(home: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """For each needle, the files under home whose bytes contain it."""
    found: dict[str, list[str]] = {name: [] for name in needles}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found[name].append(str(path.relative_to(home)))
    return found


@pytest.fixture(params=["per-twin", "sharded"])
def service(request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder) -> TwinService:
    # The real store, registry and embedder on disk; a scripted chat model, whose reply reaches the sessions.
    # One shard: the erased twin shares it with the kept one, so the shard must be rebuilt without it.
    settings = Settings(home=tmp_path / "home", store_layout=request.param, store_shards=1)
    return TwinService(
        settings,
        store=factory.make_store(settings, embedder),
        registry=factory.make_registry(settings),
        counter=WordCounter(),
        chat_model=FakeChatModel(default="I bought it, it was chipped [E1]."),
    )


@pytest.mark.slow
def test_erasing_a_twin_leaves_none_of_its_history_in_any_file(
    service: TwinService, embedder: Embedder
) -> None:
    token = uuid.uuid4().hex
    gone, kept = f"zq-gone-{token}", f"zq-kept-{token}"
    erased, other = f"cust-gone-{token}", f"cust-kept-{token}"
    records = history(erased, gone, extra=RARE) + history(other, kept)
    report = service.ingest_records(RawRecord("history", i, r) for i, r in enumerate(records, 1))
    assert report.stored == 6 and report.exit_code == 0
    erased_events = [e.event_id for e in service.store.events(erased)]

    # The marker reaches every store: answers and sessions, a correction, memory statuses, profile, audit.
    assert service.ask(erased, f"Tell me about the cake stand {gone}").citations
    session = service.start_session(erased)
    service.chat(session.session_id, f"Was the {gone} cake stand chipped?")
    service.correct(erased, f"Actually the {gone} cake stand arrived intact, I kept it")
    service.ask(other, f"Tell me about the cake stand {kept}")
    vector = embedder.embed(service.store.events(erased)[0].text)

    tombstone = service.erase(erased)

    home = service.settings.home
    needles = {
        "marker": gone.encode(),
        "twin id": erased.encode(),
        "rare trigram": RARE[:3].encode()[1:],
        "embedding": struct.pack("<8f", *vector[:8]),
        **{f"event {e}": e.encode() for e in erased_events},
    }
    left = {name: files for name, files in files_holding(home, needles).items() if files}
    assert not left, f"after erasure, the customer's data is still in {left}"
    assert files_holding(home, {"kept": kept.encode()})["kept"], "the other customer's history vanished too"
    assert [m.event.customer_id for m in service.store.search(other, "cake stand", k=3)] == [other] * 3
    assert any(e.twin_id == tombstone and e.action == "erase" for e in service.audit())
    assert service.ask(other, "Was the cake stand chipped?").citations


@pytest.mark.parametrize("layout", ["per-twin", "sharded"])
def test_a_local_store_keeps_no_folder_or_page_of_a_deleted_twin(tmp_path: Path, layout: str) -> None:
    # Past Chroma's HNSW sync threshold (1000) the vectors and ids are written to a per-collection folder.
    embedder = HashEmbedder()
    client = make_client(f"chroma:{tmp_path}")
    store: MemoryStore = (
        ShardedChromaMemoryStore(client, CachedEmbeddings(embedder), shards=1)  # both twins in one shard
        if layout == "sharded"
        else ChromaMemoryStore(client, CachedEmbeddings(embedder))
    )
    token = uuid.uuid4().hex
    gone, kept = f"gone-{token}", f"kept-{token}"
    for twin, n in ((gone, 1100), (kept, 3)):
        store.add(twin, [Event(twin, f"bought mug {i} {twin}", f"ev-{twin}-{i}") for i in range(n)])
    assert any(f"ev-gone-{token}".encode() in p.read_bytes() for p in tmp_path.rglob("*.pickle"))
    # Whole vectors: the hash embedder gives words the twins share the same dimensions.
    vectors = {
        f"vector {i}": struct.pack("<256f", *embedder.embed(f"bought mug {i} {gone}")) for i in (0, 1099)
    }
    assert all(files_holding(tmp_path, vectors).values()), "the vectors were not found before the erasure"

    store.delete_twin(gone)

    # Not only the deleted collection's folder: the kept twin's index, created after the other twin's texts
    # passed through memory, was written with unused slots that can hold them.
    left = files_holding(tmp_path, {"gone": gone.encode(), **vectors})
    assert left == {"gone": [], **{name: [] for name in vectors}}
    assert store.count(kept) == 3 and store.count(gone) == 0
    assert [m.event.customer_id for m in store.search(kept, "bought mug", k=5)] == [kept] * 3


def test_forgotten_texts_leave_the_embedding_cache() -> None:
    embedder = HashEmbedder()
    cache = CachedEmbeddings(embedder, cache_size=8)
    cache.embed_documents(["erase me", "keep me"])
    calls = embedder.calls

    cache.forget(["erase me", "never cached"])

    cache.embed_query("keep me")
    assert embedder.calls == calls  # still cached
    cache.embed_query("erase me")
    assert embedder.calls == calls + 1  # gone from the cache, so encoded again


def test_registry_vacuum_drops_deleted_rows_from_the_sqlite_file(tmp_path: Path) -> None:
    registry = SqlTwinRegistry(f"sqlite:///{tmp_path / 'meta.db'}")
    marker = f"zq-{uuid.uuid4().hex}"
    registry.touch_twins({marker: 1})
    registry.record([AuditEntry(now(), "local", "ask", marker, LOCAL_CUSTOMER.purpose, [], {"q": marker})])
    registry.erase_twin(marker, tombstone="erased-1")
    registry.vacuum()
    assert marker.encode() not in (tmp_path / "meta.db").read_bytes()


def test_compacting_an_embedded_store_removes_forgotten_memories_vectors(tmp_path: Path) -> None:
    # Forgetting a memory deletes its record, but Chroma only marks its vector deleted in the index file.
    embedder = HashEmbedder()
    client = make_client(f"chroma:{tmp_path}")
    store = ShardedChromaMemoryStore(client, CachedEmbeddings(embedder), shards=1)
    token = uuid.uuid4().hex
    twin, other = f"ann-{token}", f"bob-{token}"
    # The two to forget have words of their own: the hash embedder's vectors of texts that differ in one word
    # can be equal.
    secret = {i: f"asked about the parcel {uuid.uuid4().hex} {uuid.uuid4().hex}" for i in (0, 1099)}
    texts = [secret.get(i, f"bought mug {i} {token}") for i in range(1100)]
    store.add(twin, [Event(twin, text, f"ev-{i}") for i, text in enumerate(texts)])
    store.add(other, [Event(other, f"bought a rake {i}", f"ev-{i}") for i in range(3)])
    forgotten = {f"vector {i}": struct.pack("<256f", *embedder.embed(text)) for i, text in secret.items()}
    store.delete_events(twin, ["ev-0", "ev-1099"])
    assert all(files_holding(tmp_path, forgotten).values()), "the forgotten vectors were already gone"

    report = compact(client)

    assert (report.collections, report.records, report.scrubbed) == (1, 1101, str(tmp_path))
    assert files_holding(tmp_path, forgotten) == {name: [] for name in forgotten}
    reopened = ShardedChromaMemoryStore(
        make_client(f"chroma:{tmp_path}"), CachedEmbeddings(embedder), shards=1
    )
    assert (reopened.count(twin), reopened.count(other)) == (1098, 3)
    assert [m.event.event_id for m in reopened.search(twin, f"bought mug 5 {token}", k=1)] == ["ev-5"]


@pytest.mark.slow
def test_a_twin_erased_over_a_chroma_server_leaves_its_files_after_compact_and_scrub(tmp_path: Path) -> None:
    # On a server the erasure deletes in place (other workers write to the shard); `twinchat store compact`
    # rebuilds the shards, and `twinchat store scrub` on the server's folder, the server stopped, removes
    # the old files. Real commands, a real `chroma run`.
    embedder = HashEmbedder()
    folder = tmp_path / "chroma-server"
    token = uuid.uuid4().hex
    gone, kept = f"gone-{token}", f"kept-{token}"
    vectors = {
        f"vector {i}": struct.pack("<256f", *embedder.embed(f"bought mug {i} {gone}")) for i in (0, 1099)
    }
    env = {**os.environ, "TWINCHAT_HOME": str(tmp_path / "home"), "TWINCHAT_STORE_SHARDS": "1"}
    with running_chroma(folder) as port:
        env["TWINCHAT_STORE"] = f"chroma+http://127.0.0.1:{port}"
        settings = Settings(home=tmp_path / "home", store=env["TWINCHAT_STORE"], store_shards=1)
        store = factory.make_store(settings, embedder)
        for twin, n in ((gone, 1100), (kept, 3)):
            store.add(twin, [Event(twin, f"bought mug {i} {twin}", f"ev-{i}") for i in range(n)])
        store.delete_twin(gone)
        assert store.count(gone) == 0 and store.count(kept) == 3
        assert all(files_holding(folder, vectors).values()), (
            "the erased vectors were not in the server's files"
        )

        compacted = run_cli(env, "store", "compact")
        assert compacted.returncode == 0, compacted.stderr
        assert "rebuilt 1 collections (3 records" in compacted.stdout
        assert "twinchat store scrub --path" in compacted.stdout
        assert all(files_holding(folder, vectors).values()), "the server removed its old files itself"
    not_chroma = run_cli(env, "store", "scrub", "--path", str(tmp_path / "home"))
    assert not_chroma.returncode == 2 and "not a Chroma folder" in not_chroma.stderr
    scrubbed = run_cli(env, "store", "scrub", "--path", str(folder))
    assert scrubbed.returncode == 0, scrubbed.stderr

    assert files_holding(folder, {"gone": gone.encode(), **vectors}) == {
        "gone": [],
        **{n: [] for n in vectors},
    }
    with running_chroma(
        folder
    ) as port:  # the server starts again on its scrubbed folder, the kept twin whole
        settings = Settings(home=tmp_path / "home", store=f"chroma+http://127.0.0.1:{port}", store_shards=1)
        store = factory.make_store(settings, embedder)
        assert store.count(kept) == 3 and store.count(gone) == 0
        assert [m.event.customer_id for m in store.search(kept, "bought mug", k=5)] == [kept] * 3
