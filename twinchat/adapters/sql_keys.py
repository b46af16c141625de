"""API keys in SQL (the same database as the registry): only each key's SHA-256 digest is stored.

The engine and its writes are the registry's (:func:`sql_engine`, :func:`write_transaction`): several API
workers start and write at once over one SQLite file without "database is locked" or "table already exists".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twinchat.adapters import require
from twinchat.adapters.sql_registry import sql_engine, write_transaction
from twinchat.domain.keys import ApiKey
from twinchat.ports import KeyStore


class SqlKeyStore(KeyStore):
    def __init__(self, url: str) -> None:
        sa = require("sqlalchemy", "sqlalchemy")
        self.sa = sa
        self.engine = sql_engine(url)
        meta = sa.MetaData()
        self.keys = sa.Table(
            "api_keys",
            meta,
            sa.Column("key_id", sa.String(64), primary_key=True),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("twin_id", sa.String(512), nullable=True, index=True),
            sa.Column("label", sa.String(256), nullable=False, default=""),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        )
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twinchat.sql_keys'))"))
            meta.create_all(conn)

    def add(self, key: ApiKey, digest: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(self.keys.insert().values(digest=digest, **_row(key)))

    def by_digest(self, digest: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(self.sa.select(self.keys).where(self.keys.c.digest == digest)).first()
        return None if row is None else _key(row)

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(self.sa.select(self.keys).order_by(self.keys.c.created_at))]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                self.keys.update()
                .where((self.keys.c.key_id == key_id) & self.keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return bool(done.rowcount)

    def delete_for_twin(self, twin_id: str) -> int:
        with write_transaction(self.engine) as conn:
            return int(conn.execute(self.keys.delete().where(self.keys.c.twin_id == twin_id)).rowcount)


def _row(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "role": key.role,
        "twin_id": key.twin_id,
        "label": key.label,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def _key(row: Any) -> ApiKey:
    def aware(value: datetime | None) -> datetime | None:
        return None if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    created = aware(row.created_at)
    assert created is not None
    return ApiKey(row.key_id, row.role, created, row.twin_id, row.label, aware(row.revoked_at))
