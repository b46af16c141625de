"""Twin and panel metadata in SQL through SQLAlchemy Core: SQLite under TWINCHAT_HOME by default,
PostgreSQL (``postgresql+psycopg://...``) for deployments with several instances."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twinchat.adapters import require
from twinchat.domain.control import AuditEntry, Consent, MemoryStatus
from twinchat.domain.models import Twin
from twinchat.domain.sessions import Session, Turn
from twinchat.domain.survey import SurveyAnswer
from twinchat.ports import TwinRegistry


class SqlTwinRegistry(TwinRegistry):
    def __init__(self, url: str) -> None:
        sa = require("sqlalchemy", "sqlalchemy")
        self.sa = sa
        self.engine = sql_engine(url)
        self._insert = _dialect_insert(self.engine.dialect.name)
        stamp = _utc_timestamp(sa)
        meta = sa.MetaData()
        self.twins = sa.Table(
            "twins",
            meta,
            sa.Column("twin_id", sa.String(512), primary_key=True),
            sa.Column("created_at", stamp, nullable=False),
            sa.Column("updated_at", stamp, nullable=False),
            sa.Column("n_events", sa.Integer, nullable=False, default=0),
            sa.Column("synthetic", sa.Boolean, nullable=False, default=False),
            sa.Column("display_name", sa.String(256), nullable=True),
        )
        self.members = sa.Table(
            "panel_members",
            meta,
            sa.Column("panel", sa.String(256), primary_key=True),
            sa.Column(
                "twin_id",
                sa.String(512),
                sa.ForeignKey("twins.twin_id", ondelete="CASCADE"),
                primary_key=True,
            ),
        )
        self.answers = sa.Table(
            "survey_answers",
            meta,
            sa.Column("event_id", sa.String(512), primary_key=True),
            sa.Column("twin_id", sa.String(512), primary_key=True),
            # Text: a key made from a question's wording is as long as the wording (PostgreSQL enforces lengths).
            sa.Column("question_key", sa.Text, nullable=False),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("timestamp", stamp, nullable=True),
            sa.Index("ix_survey_answers_twin", "twin_id"),
        )
        # One JSON document per twin: the profile is read and written whole, and its shape is the domain's.
        self.profiles = sa.Table(
            "profiles",
            meta,
            sa.Column(
                "twin_id",
                sa.String(512),
                sa.ForeignKey("twins.twin_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("document", sa.JSON, nullable=False),
            sa.Column("updated_at", stamp, nullable=False),
        )
        self.sessions = sa.Table(
            "sessions",
            meta,
            sa.Column("session_id", sa.String(64), primary_key=True),
            sa.Column("twin_id", sa.String(512), nullable=False, index=True),
            sa.Column("created_at", stamp, nullable=False),
        )
        self.turns = sa.Table(
            "session_turns",
            meta,
            sa.Column(
                "session_id",
                sa.String(64),
                sa.ForeignKey("sessions.session_id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("seq", sa.Integer, primary_key=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("citations", sa.JSON, nullable=False),
            sa.Column("created_at", stamp, nullable=False),
        )
        self.consents = sa.Table(
            "consents",
            meta,
            sa.Column("twin_id", sa.String(512), primary_key=True),
            sa.Column("purpose", sa.String(32), primary_key=True),
            sa.Column("granted", sa.Boolean, nullable=False),
            sa.Column("updated_at", stamp, nullable=False),
            sa.Column("updated_by", sa.String(256), nullable=False),
        )
        self.statuses = sa.Table(
            "memory_status",
            meta,
            sa.Column("twin_id", sa.String(512), primary_key=True),
            sa.Column("event_id", sa.String(512), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("at", stamp, nullable=False),
            sa.Column("by", sa.String(512), nullable=False),
            sa.Column("reason", sa.Text, nullable=False, default=""),
        )
        # Append-only: rows are inserted, never updated, except that erasure replaces an erased twin's id with
        # a tombstone and drops the evidence and details of its rows.
        self.audit = sa.Table(
            "audit",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", stamp, nullable=False, index=True),
            sa.Column("actor", sa.String(256), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("twin_id", sa.String(512), nullable=False, index=True),
            sa.Column("purpose", sa.String(32), nullable=False),
            sa.Column("evidence", sa.JSON, nullable=False),
            sa.Column("detail", sa.JSON, nullable=False),
        )
        # Identifiers (email, phone, customer id) under which a customer's records arrive; one twin each.
        self.identifiers = sa.Table(
            "identifiers",
            meta,
            sa.Column("kind", sa.String(32), primary_key=True),
            sa.Column("value", sa.String(512), primary_key=True),
            sa.Column("twin_id", sa.String(512), nullable=False, index=True),
            sa.Column("added_at", stamp, nullable=False),
            sa.Column("origin", sa.String(256), nullable=False, default=""),
        )
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                # Instances starting at once would race to create the same tables: one creates, the rest wait.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twinchat.sql_registry'))"))
            meta.create_all(conn)

    def _upsert(self, table: Any, key: Sequence[str], update: Sequence[str]) -> Any:
        """INSERT into ``table``, or on a row with the same ``key`` columns, UPDATE its ``update`` columns."""
        insert = self._insert(table)
        return insert.on_conflict_do_update(
            index_elements=[table.c[k] for k in key], set_={k: insert.excluded[k] for k in update}
        )

    def _write(self) -> contextlib.AbstractContextManager[Any]:
        """A writing transaction: ``with self._write() as conn:``, committed at the end of the block."""
        return write_transaction(self.engine)

    # Writes that may meet another instance's write to the same key are upserts (INSERT ... ON CONFLICT), not a
    # read then an insert, which fails with a duplicate key when two instances write the same twin at once.

    def touch_twins(
        self, counts: dict[str, int], *, panel: str | None = None, synthetic: bool = False
    ) -> None:
        if not counts:
            return
        now = datetime.now(UTC)
        upsert = self._upsert(self.twins, ["twin_id"], ["n_events", "updated_at"])
        # Rows in key order, so that two instances touching overlapping twins lock them in the same order.
        # `synthetic` is set when a twin is created and never changed: an update cannot relabel a real twin.
        ids = sorted(counts)
        with self._write() as conn:
            conn.execute(
                upsert,
                [
                    {
                        "twin_id": t,
                        "created_at": now,
                        "updated_at": now,
                        "n_events": counts[t],
                        "synthetic": synthetic,
                    }
                    for t in ids
                ],
            )
            if panel:
                conn.execute(
                    self._insert(self.members).on_conflict_do_nothing(),
                    [{"panel": panel, "twin_id": t} for t in ids],
                )

    def get(self, twin_id: str) -> Twin | None:
        twins = self._select(self.twins.c.twin_id == twin_id)
        return twins[0] if twins else None

    def events_version(self, twin_id: str) -> tuple[datetime, int] | None:
        # Two columns of one row: the twin's panels, read by get, are not wanted on every retrieve.
        twins = self.twins
        query = self.sa.select(twins.c.created_at, twins.c.n_events).where(twins.c.twin_id == twin_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin | None]:
        found: dict[str, Twin | None] = dict.fromkeys(twin_ids)
        for chunk in _chunks(list(found), 500):
            found.update({t.twin_id: t for t in self._select(self.twins.c.twin_id.in_(chunk))})
        return found

    def list_twins(self, *, panel: str | None = None) -> list[Twin]:
        if panel is None:
            return self._select(None)
        sa = self.sa
        return self._select(
            self.twins.c.twin_id.in_(sa.select(self.members.c.twin_id).where(self.members.c.panel == panel))
        )

    def panels(self) -> dict[str, int]:
        sa = self.sa
        query = (
            sa.select(self.members.c.panel, sa.func.count())
            .group_by(self.members.c.panel)
            .order_by(self.members.c.panel)
        )
        with self.engine.connect() as conn:
            return {panel: n for panel, n in conn.execute(query)}

    def add_survey_answers(self, answers: Sequence[SurveyAnswer]) -> None:
        if not answers:
            return
        rows = [
            {
                "event_id": a.event_id,
                "twin_id": a.twin_id,
                "question_key": a.key,
                "question": a.question,
                "answer": a.answer,
                "timestamp": a.timestamp,
            }
            for a in sorted(answers, key=lambda a: (a.twin_id, a.event_id))
        ]
        with self._write() as conn:
            conn.execute(self._insert(self.answers).on_conflict_do_nothing(), rows)

    def survey_answers(
        self, *, twin_ids: Sequence[str] | None = None, valid_only: bool = False
    ) -> list[SurveyAnswer]:
        sa = self.sa
        query = sa.select(self.answers)
        if valid_only:
            invalid = sa.select(self.statuses.c.event_id).where(
                (self.statuses.c.twin_id == self.answers.c.twin_id)
                & (self.statuses.c.event_id == self.answers.c.event_id)
            )
            query = query.where(~sa.exists(invalid))
        chunks: list[list[str] | None] = [None] if twin_ids is None else list(_chunks(list(twin_ids), 500))
        found: list[SurveyAnswer] = []
        with self.engine.connect() as conn:
            for chunk in chunks:
                q = query if chunk is None else query.where(self.answers.c.twin_id.in_(chunk))
                found.extend(
                    SurveyAnswer(
                        r.twin_id,
                        r.question_key,
                        r.question,
                        r.answer,
                        r.event_id,
                        r.timestamp,
                    )
                    for r in conn.execute(q)
                )
        return found

    def get_profile(self, twin_id: str) -> dict[str, Any] | None:
        query = self.sa.select(self.profiles.c.document).where(self.profiles.c.twin_id == twin_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def get_profiles(self, twin_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        table, found = self.profiles, {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(twin_ids), 500):
                query = self.sa.select(table.c.twin_id, table.c.document).where(table.c.twin_id.in_(chunk))
                found.update({row.twin_id: row.document for row in conn.execute(query)})
        return found

    def save_profile(self, twin_id: str, profile: dict[str, Any]) -> None:
        self.save_profiles({twin_id: profile})

    def save_profiles(self, profiles: dict[str, dict[str, Any]]) -> None:
        # One statement for a whole ingestion batch: a statement (let alone a commit) per twin costs more than
        # the profiles do. Rows in key order, as touch_twins writes them.
        if not profiles:
            return
        now = datetime.now(UTC)
        upsert = self._upsert(self.profiles, ["twin_id"], ["document", "updated_at"])
        with self._write() as conn:
            conn.execute(
                upsert,
                [{"twin_id": t, "document": profiles[t], "updated_at": now} for t in sorted(profiles)],
            )

    def set_panel(self, panel: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        with self._write() as conn:
            if add:
                conn.execute(
                    self._insert(self.members).on_conflict_do_nothing(),
                    [{"panel": panel, "twin_id": t} for t in sorted(set(add))],
                )
            if remove:
                conn.execute(
                    self.members.delete().where(
                        self.members.c.panel == panel, self.members.c.twin_id.in_(list(remove))
                    )
                )

    # --- consent, audit, memory validity ------------------------------------------------------------------

    def consents_of(self, twin_id: str) -> dict[str, Consent]:
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(self.consents).where(self.consents.c.twin_id == twin_id))
            return {
                r.purpose: Consent(r.twin_id, r.purpose, bool(r.granted), r.updated_at, r.updated_by)
                for r in rows
            }

    def set_consents(self, consents: Sequence[Consent], *, only_if_absent: bool = False) -> None:
        if not consents:
            return
        if only_if_absent:
            upsert = self._insert(self.consents).on_conflict_do_nothing()
        else:
            upsert = self._upsert(
                self.consents, ["twin_id", "purpose"], ["granted", "updated_at", "updated_by"]
            )
        with self._write() as conn:
            conn.execute(
                upsert,
                [
                    {
                        "twin_id": c.twin_id,
                        "purpose": c.purpose,
                        "granted": c.granted,
                        "updated_at": c.updated_at,
                        "updated_by": c.updated_by,
                    }
                    for c in consents
                ],
            )

    def record(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with self._write() as conn:
            conn.execute(
                self.audit.insert(),
                [
                    {
                        "at": e.at,
                        "actor": e.actor,
                        "action": e.action,
                        "twin_id": e.twin_id,
                        "purpose": e.purpose,
                        "evidence": list(e.evidence),
                        "detail": dict(e.detail),
                    }
                    for e in entries
                ],
            )

    def audit_entries(self, *, twin_id: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        query = self.sa.select(self.audit).order_by(self.audit.c.id)
        if twin_id is not None:
            query = query.where(self.audit.c.twin_id == twin_id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [
                AuditEntry(
                    r.at,
                    r.actor,
                    r.action,
                    r.twin_id,
                    r.purpose,
                    list(r.evidence),
                    dict(r.detail),
                    r.id,
                )
                for r in conn.execute(query)
            ]

    def set_memory_status(self, statuses: Sequence[MemoryStatus]) -> None:
        if not statuses:
            return
        upsert = self._upsert(self.statuses, ["twin_id", "event_id"], ["state", "at", "by", "reason"])
        with self._write() as conn:
            conn.execute(
                upsert,
                [
                    {
                        "twin_id": m.twin_id,
                        "event_id": m.event_id,
                        "state": m.state,
                        "at": m.at,
                        "by": m.by,
                        "reason": m.reason,
                    }
                    for m in statuses
                ],
            )

    def memory_statuses(self, twin_id: str) -> dict[str, MemoryStatus]:
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(self.statuses).where(self.statuses.c.twin_id == twin_id))
            return {
                r.event_id: MemoryStatus(r.twin_id, r.event_id, r.state, r.at, r.by, r.reason) for r in rows
            }

    def delete_survey_answers(self, twin_id: str, event_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute(
                self.answers.delete().where(
                    (self.answers.c.twin_id == twin_id) & (self.answers.c.event_id.in_(list(event_ids)))
                )
            )

    def erase_twin(self, twin_id: str, *, tombstone: str) -> None:
        """Delete every row about the twin; its audit rows keep only a tombstone, the action and the time."""
        with self._write() as conn:
            sessions = [
                r.session_id
                for r in conn.execute(
                    self.sa.select(self.sessions.c.session_id).where(self.sessions.c.twin_id == twin_id)
                )
            ]
            if sessions:
                conn.execute(self.turns.delete().where(self.turns.c.session_id.in_(sessions)))
                conn.execute(self.sessions.delete().where(self.sessions.c.session_id.in_(sessions)))
            for table in (
                self.answers,
                self.statuses,
                self.consents,
                self.profiles,
                self.members,
                self.identifiers,
            ):
                conn.execute(table.delete().where(table.c.twin_id == twin_id))
            conn.execute(self.twins.delete().where(self.twins.c.twin_id == twin_id))
            conn.execute(
                self.audit.update()
                .where(self.audit.c.twin_id == twin_id)
                .values(twin_id=tombstone, evidence=[], detail={})
            )

    # --- identifiers ------------------------------------------------------------------------------------

    def add_identifiers(
        self, identifiers: Mapping[str, Sequence[tuple[str, str]]], *, origin: str = ""
    ) -> None:
        rows = [
            {"kind": k, "value": v, "twin_id": twin, "added_at": datetime.now(UTC), "origin": origin[:256]}
            for twin, pairs in identifiers.items()
            for k, v in pairs
        ]
        if rows:
            with self._write() as conn:
                conn.execute(self._insert(self.identifiers).on_conflict_do_nothing(), rows)

    def identifiers_of(self, twin_id: str) -> list[tuple[str, str]]:
        t = self.identifiers
        with self.engine.connect() as conn:
            rows = conn.execute(
                self.sa.select(t.c.kind, t.c.value)
                .where(t.c.twin_id == twin_id)
                .order_by(t.c.kind, t.c.value)
            )
            return [(r.kind, r.value) for r in rows]

    def twins_by_identifier(self, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        t, found = self.identifiers, {}
        wanted = set(identifiers)
        with self.engine.connect() as conn:
            for kind in sorted({k for k, _ in wanted}):
                values = sorted(v for k, v in wanted if k == kind)
                for chunk in _chunks(values, 500):
                    rows = conn.execute(
                        self.sa.select(t.c.value, t.c.twin_id).where(
                            (t.c.kind == kind) & t.c.value.in_(chunk)
                        )
                    )
                    found.update({(kind, r.value): r.twin_id for r in rows})
        return found

    def vacuum(self) -> None:
        """Rewrite a SQLite file so that no page keeps bytes of deleted rows (an erased twin's)."""
        # A server database's files are its operator's: autovacuum reclaims dead rows, and its WAL and backups
        # are beyond reach from here. Nothing to do for PostgreSQL.
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(self.sa.text("VACUUM"))
            # In WAL mode the old pages live on in the -wal file until a checkpoint truncates it.
            conn.execute(self.sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))

    def sessions_of(self, twin_id: str) -> list[Session]:
        with self.engine.connect() as conn:
            ids = [
                r.session_id
                for r in conn.execute(
                    self.sa.select(self.sessions.c.session_id).where(self.sessions.c.twin_id == twin_id)
                )
            ]
        return [s for i in ids if (s := self.get_session(i)) is not None]

    def create_session(self, session: Session) -> None:
        with self._write() as conn:
            conn.execute(
                self.sessions.insert().values(
                    session_id=session.session_id, twin_id=session.twin_id, created_at=session.created_at
                )
            )

    def get_session(self, session_id: str) -> Session | None:
        sa = self.sa
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(self.sessions).where(self.sessions.c.session_id == session_id)
            ).first()
            if row is None:
                return None
            turns = [
                Turn(t.role, t.content, t.created_at, list(t.citations))
                for t in conn.execute(
                    sa.select(self.turns)
                    .where(self.turns.c.session_id == session_id)
                    .order_by(self.turns.c.seq)
                )
            ]
        return Session(row.session_id, row.twin_id, row.created_at, turns)

    def append_turns(self, session_id: str, turns: Sequence[Turn]) -> None:
        sa = self.sa
        with self._write() as conn:
            last = conn.execute(
                sa.select(sa.func.max(self.turns.c.seq)).where(self.turns.c.session_id == session_id)
            ).scalar()
            start = 0 if last is None else last + 1
            conn.execute(
                self.turns.insert(),
                [
                    {
                        "session_id": session_id,
                        "seq": start + i,
                        "role": t.role,
                        "content": t.content,
                        "citations": t.citations,
                        "created_at": t.created_at,
                    }
                    for i, t in enumerate(turns)
                ],
            )

    def _select(self, where: Any) -> list[Twin]:
        sa = self.sa
        query = sa.select(self.twins).order_by(self.twins.c.twin_id)
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            panels: dict[str, list[str]] = {}
            ids = [r.twin_id for r in rows]
            for chunk in _chunks(ids, 500):
                for member in conn.execute(
                    sa.select(self.members)
                    .where(self.members.c.twin_id.in_(chunk))
                    .order_by(self.members.c.panel)
                ):
                    panels.setdefault(member.twin_id, []).append(member.panel)
        return [
            Twin(
                twin_id=r.twin_id,
                created_at=r.created_at,
                updated_at=r.updated_at,
                n_events=r.n_events,
                panels=panels.get(r.twin_id, []),
                synthetic=bool(r.synthetic),
                display_name=r.display_name,
            )
            for r in rows
        ]


_WRITE = "twinchat_write"
SQLITE_BUSY_S = 30  # how long a SQLite writer waits for another process's write before it fails


def sql_engine(url: str) -> Any:
    """An engine for the registry's database; on SQLite, one that several processes can share (WAL, a busy
    timeout, writes that take the lock at BEGIN: see :func:`write_transaction`)."""
    sa = require("sqlalchemy", "sqlalchemy")
    connect_args = {"timeout": SQLITE_BUSY_S} if url.startswith("sqlite") else {}
    engine = sa.create_engine(url, connect_args=connect_args, future=True)
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


@contextlib.contextmanager
def write_transaction(engine: Any) -> Iterator[Any]:
    """A writing transaction on an engine from :func:`sql_engine`, committed at the end of the block. On SQLite
    it begins IMMEDIATE: it waits for another process's write rather than failing when it meets one."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def _dialect_insert(dialect: str) -> Any:
    """The backend's INSERT, which has ON CONFLICT (the upserts above): SQLite's or PostgreSQL's."""
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(
            f"TWINCHAT_DATABASE: the {dialect} dialect is not supported; use sqlite:///<path> or "
            "postgresql+psycopg://<user>@<host>/<database>"
        )
    return require(f"sqlalchemy.dialects.{dialect}", "sqlalchemy").insert


def _utc_timestamp(sa: Any) -> Any:
    """A timestamp column type that stores UTC and reads back aware UTC datetimes on every backend: SQLite
    keeps the wall clock of what it is given and drops its offset, PostgreSQL answers in the session's zone."""

    class UtcTimestamp(sa.types.TypeDecorator):
        impl = sa.DateTime
        cache_ok = True

        def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
            return None if value is None else _utc(value)

        def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
            return None if value is None else _utc(value)

    return UtcTimestamp(timezone=True)


def _utc(value: datetime) -> datetime:
    # A naive datetime is UTC: that is how the domain parses one, and how SQLite hands stored values back.
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Several processes (API workers, a CLI ingesting beside a server) share the file. WAL lets readers go on
    # while one writes; the busy timeout (connect_args) makes a writer wait for the lock instead of failing.
    # Transactions are begun by _sqlite_begin, not by the driver, which would begin them too late.
    dbapi_connection.isolation_level = None
    _use_wal(dbapi_connection)
    # Deleted rows are overwritten with zeros rather than left in free pages, whatever the build's default.
    dbapi_connection.execute("PRAGMA secure_delete = ON")


def _use_wal(dbapi_connection: Any, *, wait_s: float = SQLITE_BUSY_S) -> None:
    """Put the file in WAL mode (it stays so: the first connection to a new file does it). The switch needs the
    file to itself and SQLite fails it at once, without the busy timeout, while another connection has it open
    in a transaction: instances starting together over a new file wait for each other here instead."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return  # VACUUM: outside any transaction
    # A writing transaction takes the write lock at BEGIN, waiting up to the busy timeout. A deferred one that
    # reads, then writes (the next turn's number), cannot wait when another process wrote in between: SQLite
    # fails it at once with "database is locked". Reads begin deferred and never wait for writers (WAL).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE) else "BEGIN")


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
