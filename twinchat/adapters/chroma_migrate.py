"""Moving a Chroma store between its layouts (``twinchat store migrate``), describing it (``store info``), and
compacting it (``store compact``).

A migration copies records as they are stored, embeddings included, so nothing is encoded again. It can be
stopped at any point and run again: records are written by id (a second copy of one replaces the first), the
layout recorded in the store changes only once every twin's count in the new layout equals its count in the
old one, and the old collections are removed last. Nothing else should write to the store meanwhile.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from twinchat.adapters.chroma_store import (
    ADD_BATCH,
    INDEX_METADATA,
    LAYOUT_COLLECTION,
    LAYOUTS,
    REBUILD_SUFFIX,
    collection_name,
    finish_rebuild,
    local_directory,
    read_layout,
    read_vectors,
    rebuild,
    record_id,
    scrub,
    shard_name,
    shard_of,
    write_layout,
)


@dataclass
class StoreInfo:
    layout: str
    shards: int
    collections: int
    twins: int
    events: int
    leftovers: list[str] = field(default_factory=list)  # collections of another layout, not yet removed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MigrationReport:
    source: str
    source_shards: int
    target: str
    target_shards: int
    twins: int = 0
    events: int = 0
    copied: int = 0  # records written this run (a re-run writes them again)
    removed: list[str] = field(default_factory=list)
    already: bool = False  # the store was in the target layout when the run began

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompactReport:
    layout: str
    collections: int = 0  # rebuilt
    records: int = 0  # kept, with their embeddings
    scrubbed: str | None = None  # the folder of an embedded store, scrubbed; None for a Chroma server

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact(client: Any, *, progress: Callable[[str, int], None] | None = None) -> CompactReport:
    """Rebuild every collection of the store from its live records, then scrub an embedded store's folder.

    Chroma and hnswlib only mark a deleted record: the vectors of forgotten memories (and, on a Chroma server,
    of erased twins) stay in the index files until their collection is rebuilt. Each collection is copied,
    embeddings included, into a fresh one that replaces it, as an embedded store's erasure does for one shard;
    stopped midway, a store opens whole and the command is run again. Nothing else should write meanwhile: a
    write to a collection between its copy and its swap would be lost. ``progress(collection, records)`` is
    called after each collection.
    """
    layout, shards = recorded_layout(client)
    _finish_rebuilds(client)
    report = CompactReport(layout)
    for name in [n for n in _names(client) if _belongs(n, layout, shards) and not n.endswith(REBUILD_SUFFIX)]:
        kept = rebuild(client, name)
        report.collections += 1
        report.records += kept
        if progress is not None:
            progress(name, kept)
    directory = local_directory(client)
    if directory is not None:
        scrub(directory)
        report.scrubbed = str(directory)
    return report


def recorded_layout(client: Any) -> tuple[str, int]:
    """The store's layout; a store that predates recorded layouts is per-twin."""
    return read_layout(client) or ("per-twin", 0)


def store_info(client: Any) -> StoreInfo:
    layout, shards = recorded_layout(client)
    names = _names(client)
    ours = [n for n in names if _belongs(n, layout, shards)]
    counts = _twin_counts(client, layout, shards, ours)
    leftovers = [n for n in names if n not in ours and _is_ours(n)]
    return StoreInfo(layout, shards, len(ours), len(counts), sum(counts.values()), leftovers)


def migrate(
    client: Any,
    *,
    to: str,
    shards: int = 16,
    progress: Callable[[str, int], None] | None = None,
) -> MigrationReport:
    """Move the store to layout ``to`` (with ``shards`` collections when sharded); what was done.

    ``progress(collection, records)`` is called after each source collection is copied.
    """
    if to not in LAYOUTS:
        raise ValueError(f"unknown layout {to!r}: use one of {', '.join(LAYOUTS)}")
    target = (to, shards if to == "sharded" else 0)
    source = recorded_layout(client)
    report = MigrationReport(source[0], source[1], target[0], target[1])
    if source == target:
        report.already = True
    else:
        wanted = _copy(client, source, target, report, progress)
        got = _twin_counts(client, *target, [n for n in _names(client) if _belongs(n, *target)])
        for twin in set(got) - set(wanted):  # written by an earlier run, erased from the source since
            _drop_twin(client, target, twin)
            got.pop(twin)
        wrong = {t: (n, got.get(t, 0)) for t, n in wanted.items() if got.get(t, 0) != n}
        if wrong:
            sample = ", ".join(f"{t}: {a} -> {b}" for t, (a, b) in list(wrong.items())[:5])
            raise RuntimeError(
                f"after copying, {len(wrong)} twins' counts differ ({sample}); the store is left "
                f"{source[0]}: run the migration again"
            )
        write_layout(client, *target)
        report.twins, report.events = len(wanted), sum(wanted.values())
    # Last: the old layout's collections (and any left by an earlier, interrupted migration).
    for name in _names(client):
        if _is_ours(name) and not _belongs(name, *target):
            client.delete_collection(name)
            report.removed.append(name)
    directory = local_directory(client)
    if report.removed and directory is not None:
        scrub(directory)
    if report.already:
        counts = _twin_counts(client, *target, [n for n in _names(client) if _belongs(n, *target)])
        report.twins, report.events = len(counts), sum(counts.values())
    return report


def _copy(
    client: Any,
    source: tuple[str, int],
    target: tuple[str, int],
    report: MigrationReport,
    progress: Callable[[str, int], None] | None,
) -> dict[str, int]:
    """Copy every record of the source layout into the target one; each twin's count in the source."""
    counts: Counter[str] = Counter()
    _finish_rebuilds(client)
    for name in [n for n in _names(client) if _belongs(n, *source) and not n.endswith(REBUILD_SUFFIX)]:
        collection = client.get_collection(name)
        twin = (collection.metadata or {}).get("twin_id") if source[0] == "per-twin" else None
        if source[0] == "per-twin" and not twin:
            raise RuntimeError(f"collection {name} has no twin_id in its metadata: not a twin's collection")
        copied = 0
        for page in _pages(collection):
            records = [_record(i, d, m, e, twin) for i, d, m, e in zip(*page, strict=True)]
            for t, _, _, _, _ in records:
                counts[t] += 1
            _write(client, target, records)
            copied += len(records)
        report.copied += copied
        if progress:
            progress(name, copied)
    return dict(counts)


Record = tuple[str, str, str, dict[str, Any], Any]  # twin, event id, document, metadata, embedding


def _record(record: str, document: str, meta: dict[str, Any], embedding: Any, twin: str | None) -> Record:
    meta = dict(meta or {})
    twin = twin or str(meta.pop("twin_id"))
    event_id = str(meta.pop("event_id", record))
    meta.pop("twin_id", None)
    return twin, event_id, document, meta, embedding


def _write(client: Any, target: tuple[str, int], records: list[Record]) -> None:
    groups: dict[str, list[Record]] = {}
    for r in records:
        name = (
            shard_name(shard_of(r[0], target[1]), target[1])
            if target[0] == "sharded"
            else collection_name(r[0])
        )
        groups.setdefault(name, []).append(r)
    for name, group in groups.items():
        if target[0] == "sharded":
            index = shard_of(group[0][0], target[1])
            collection = client.get_or_create_collection(
                name,
                metadata={**INDEX_METADATA, "shard": index, "shards": target[1]},
                embedding_function=None,
            )
            ids = [record_id(t, e) for t, e, _, _, _ in group]
            metas = [{**m, "twin_id": t, "event_id": e} for t, e, _, m, _ in group]
        else:
            twin = group[0][0]
            collection = client.get_or_create_collection(
                name,
                metadata={**INDEX_METADATA, "twin_id": twin},
                embedding_function=None,
            )
            ids = [e for _, e, _, _, _ in group]
            metas = [m for _, _, _, m, _ in group]
        # upsert: a record an interrupted run already wrote is written again, the same.
        collection.upsert(
            ids=ids,
            documents=[d for _, _, d, _, _ in group],
            metadatas=metas,
            embeddings=[r[4] for r in group],
        )


def _pages(collection: Any) -> Iterator[tuple[list, list, list, list]]:
    offset = 0
    while True:
        page = read_vectors(
            collection,
            partial(
                collection.get,
                include=["documents", "metadatas", "embeddings"],
                limit=ADD_BATCH,
                offset=offset,
            ),
        )
        if not page["ids"]:
            return
        yield page["ids"], page["documents"], page["metadatas"], list(page["embeddings"])
        offset += len(page["ids"])


def _finish_rebuilds(client: Any) -> None:
    """Finish every rebuild (an erasure, a compaction) stopped between deleting a collection and renaming its
    copy: each collection must be whole before it is copied."""
    for name in _names(client):
        if name.endswith(REBUILD_SUFFIX):
            finish_rebuild(client, name.removesuffix(REBUILD_SUFFIX))


def _twin_counts(client: Any, layout: str, shards: int, names: list[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for name in names:
        if name.endswith(REBUILD_SUFFIX):
            continue
        collection = client.get_collection(name)
        if layout == "per-twin":
            counts[str((collection.metadata or {}).get("twin_id", name))] += collection.count()
            continue
        offset = 0
        while page := collection.get(include=["metadatas"], limit=10 * ADD_BATCH, offset=offset)["metadatas"]:
            counts.update(str(m["twin_id"]) for m in page)
            offset += len(page)
    return {t: n for t, n in counts.items() if n}


def _drop_twin(client: Any, layout: tuple[str, int], twin: str) -> None:
    if layout[0] == "per-twin":
        client.delete_collection(collection_name(twin))
    else:
        name = shard_name(shard_of(twin, layout[1]), layout[1])
        client.get_collection(name).delete(where={"twin_id": twin})


def _names(client: Any) -> list[str]:
    names: list[str] = []
    while page := client.list_collections(limit=1000, offset=len(names)):
        names.extend(c.name for c in page)
    return names


def _is_ours(name: str) -> bool:
    return name.startswith(("twin-", "shard-"))


def _belongs(name: str, layout: str, shards: int) -> bool:
    if name == LAYOUT_COLLECTION:
        return False
    if layout == "per-twin":
        return name.startswith("twin-")
    return name.startswith("shard-") and name.removesuffix(REBUILD_SUFFIX).endswith(f"-of-{shards:04d}")
