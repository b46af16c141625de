"""Several instances (API workers, replicas, a CLI beside a server) starting and writing at once over one new
SQLite file: the registry and the key store both open it without "database is locked" or "table already
exists", and no write is lost. Real SQLite files and real threads, each instance with its own engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.support.together import all_at_once
from twinchat.adapters.sql_keys import SqlKeyStore
from twinchat.adapters.sql_registry import SqlTwinRegistry
from twinchat.domain.control import AuditEntry
from twinchat.domain.keys import ApiKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INSTANCES = 6


def test_instances_opening_a_new_sqlite_file_at_once_all_start(tmp_path: Path) -> None:
    # Twelve rounds, each over a new file: before the fix, about half the rounds had an instance fail (the
    # switch to WAL, or a key table created by two instances at once).
    for round_ in range(12):
        url = f"sqlite:///{tmp_path / f'meta-{round_}.db'}"
        opened = all_at_once(lambda i, url=url: (SqlTwinRegistry(url), SqlKeyStore(url)), INSTANCES)
        for registry, keys in opened:
            registry.engine.dispose()
            keys.engine.dispose()


def test_instances_writing_keys_and_twins_at_once_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    opened: list[tuple[SqlTwinRegistry, SqlKeyStore]] = all_at_once(
        lambda i: (SqlTwinRegistry(url), SqlKeyStore(url)), INSTANCES
    )

    def write(i: int) -> None:
        registry, keys = opened[i]
        for j in range(10):
            keys.add(ApiKey(f"k{i}-{j}", "customer", T0, twin_id=f"c{i}"), digest=f"d{i}-{j}")
            registry.touch_twins({f"c{i}": j + 1})
            registry.record([AuditEntry(T0, f"app-{i}", "consent", "shared", "self")])
        keys.revoke(f"k{i}-0", T0)

    try:
        all_at_once(write, INSTANCES)
        registry, keys = opened[0]
        listed = keys.list_keys()
        assert len(listed) == INSTANCES * 10
        assert sum(k.revoked_at is not None for k in listed) == INSTANCES
        assert len(registry.audit_entries(twin_id="shared")) == INSTANCES * 10
        assert all(registry.get(f"c{i}").n_events == 10 for i in range(INSTANCES))  # type: ignore[union-attr]
        assert keys.delete_for_twin("c0") == 10 and len(keys.list_keys()) == (INSTANCES - 1) * 10
    finally:
        for registry, keys in opened:
            registry.engine.dispose()
            keys.engine.dispose()
