"""The SQL registry on SQLite and on a real PostgreSQL server, every public method on both.

The server is a throwaway cluster made for the session from the local PostgreSQL binaries (initdb, pg_ctl; no
Docker), listening on 127.0.0.1 and a free port, with a time zone that is not UTC so that datetimes which come
back in the server's zone are caught. Run as root, the cluster belongs to an unprivileged user (initdb refuses
root). Without PostgreSQL binaries the PostgreSQL cases are skipped; TWINCHAT_PG_BIN names their folder.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.integration.conftest import free_port
from tests.support.together import all_at_once
from twinchat.adapters.sql_registry import SqlTwinRegistry
from twinchat.config import Settings
from twinchat.domain.control import AuditEntry, Consent, ConsentDenied, MemoryStatus, Use
from twinchat.domain.readers import RawRecord
from twinchat.domain.sessions import Session, Turn
from twinchat.domain.survey import SurveyAnswer
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, HashEmbedder, InMemoryStore, WordCounter

SERVER_TIME_ZONE = "Asia/Kathmandu"  # UTC+05:45: no whole-hour accident hides a datetime read in this zone
KATHMANDU = timezone(timedelta(hours=5, minutes=45))
T0 = datetime(2011, 3, 2, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


# --- a throwaway PostgreSQL cluster ---------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: TWINCHAT_PG_BIN, PATH, then Debian's versioned folders."""
    candidates = [os.environ.get("TWINCHAT_PG_BIN", "")]
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).resolve().parent))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    candidates += [str(p) for p in versions if p.parent.name.isdigit()]
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


class PostgresCluster:
    """initdb + pg_ctl in a temporary folder; ``url(database)`` for SQLAlchemy, ``admin()`` for DDL."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        # PostgreSQL refuses to run as root: the cluster then belongs to an unprivileged account.
        self.user = None
        if os.geteuid() == 0:
            self.user = next((u for u in ("postgres", "nobody") if _has_account(u)), None)
            if self.user is None:
                raise RuntimeError("running as root, and neither a postgres nor a nobody account to run as")
        self.root = Path(tempfile.mkdtemp(prefix="twinchat-pg-"))
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = 0

    def _run(self, *args: str) -> None:
        as_user = {}
        if self.user is not None:
            as_user = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
        done = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=120,
            **as_user,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}"
            )

    def start(self) -> None:
        # trust authentication is safe here: the server listens on loopback and a socket in a private folder.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "twinchat",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        self.port = free_port()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c timezone={SERVER_TIME_ZONE}"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://twinchat@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="twinchat", dbname="postgres", autocommit=True
        )


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH, in TWINCHAT_PG_BIN or under "
            "/usr/lib/postgresql/*/bin: apt-get install postgresql to run the PostgreSQL cases"
        )
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with postgres.admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url(name)
    with postgres.admin() as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def registry(url: str) -> Iterator[SqlTwinRegistry]:
    registry = SqlTwinRegistry(url)
    yield registry
    registry.engine.dispose()


def every_row(registry: SqlTwinRegistry) -> str:
    """Every row of every table, as one string to search."""
    meta = sa.MetaData()
    meta.reflect(bind=registry.engine)
    with registry.engine.connect() as conn:
        return "\n".join(
            repr(tuple(row)) for table in meta.sorted_tables for row in conn.execute(sa.select(table))
        )


def utc(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == timedelta(0)


# --- the registry, method by method ---------------------------------------------------------------------------


def test_the_server_answers_in_a_zone_other_than_utc(postgres_url: str) -> None:
    # The premise of the datetime tests below: a naive reading of a PostgreSQL timestamptz is not UTC here.
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW timezone")).scalar() == SERVER_TIME_ZONE
        raw = conn.execute(sa.text("SELECT TIMESTAMPTZ '2011-03-02 07:30:00+00'")).scalar()
    engine.dispose()
    assert raw.utcoffset() == timedelta(hours=5, minutes=45)


def test_twins_are_created_counted_and_listed_by_panel(registry: SqlTwinRegistry) -> None:
    registry.touch_twins({"ann": 2, "bob": 1}, panel="pilot")
    created = registry.get("ann")
    assert created is not None and utc(created.created_at)
    registry.touch_twins({"ann": 3, "cat": 1})
    registry.touch_twins({}, panel="empty")

    ann = registry.get("ann")
    assert ann is not None
    assert (ann.n_events, ann.created_at, ann.panels) == (3, created.created_at, ["pilot"])
    assert ann.updated_at >= created.updated_at and utc(ann.updated_at)
    assert (ann.synthetic, ann.display_name) == (False, None)
    assert registry.get("nobody") is None
    assert registry.events_version("ann") == (ann.created_at, 3) and registry.events_version("nobody") is None
    assert registry.events_version("cat")[1] == 1  # type: ignore[index]
    assert [t.twin_id for t in registry.list_twins()] == ["ann", "bob", "cat"]
    assert [t.twin_id for t in registry.list_twins(panel="pilot")] == ["ann", "bob"]
    assert registry.list_twins(panel="empty") == []
    assert registry.panels() == {"pilot": 2}

    registry.touch_twins({"bob": 1}, panel="pilot")  # already a member: no duplicate
    registry.set_panel("vip", add=["cat", "ann", "cat"])
    registry.set_panel("vip", add=["ann"])
    assert registry.panels() == {"pilot": 2, "vip": 2}
    registry.set_panel("pilot", remove=["bob", "nobody"])
    assert registry.panels() == {"pilot": 1, "vip": 2}
    assert registry.get("ann").panels == ["pilot", "vip"]
    assert registry.get("bob").panels == []


def test_survey_answers_are_stored_once_and_valid_only_leaves_out_invalidated_ones(
    registry: SqlTwinRegistry,
) -> None:
    long_wording = "How do you feel about " + "the delivery of your order " * 30  # a key longer than 512
    answers = [
        SurveyAnswer("ann", "tea", "Which tea?", "Earl Grey", "e1", T0),
        SurveyAnswer("ann", "text:" + long_wording.lower(), long_wording, "fine", "e2", None),
        SurveyAnswer("bob", "tea", "Which tea?", "Green", "e1", T0),
    ]
    registry.add_survey_answers(answers)
    registry.add_survey_answers([*answers, SurveyAnswer("ann", "tea", "Which tea?", "Changed", "e1", T0)])
    registry.add_survey_answers([])

    def keyed(found: list[SurveyAnswer]) -> set[tuple[str, str, str]]:
        return {(a.twin_id, a.event_id, a.answer) for a in found}

    assert sorted(registry.survey_answers(), key=lambda a: (a.twin_id, a.event_id)) == sorted(
        answers, key=lambda a: (a.twin_id, a.event_id)
    )
    assert keyed(registry.survey_answers(twin_ids=["bob"])) == {("bob", "e1", "Green")}
    assert registry.survey_answers(twin_ids=[]) == []

    # A status is the twin's own: ann's e1 superseded leaves bob's e1 valid.
    registry.set_memory_status([MemoryStatus("ann", "e1", "superseded", T0, "corr_1", "contradicted")])
    assert keyed(registry.survey_answers(valid_only=True)) == {("ann", "e2", "fine"), ("bob", "e1", "Green")}
    assert keyed(registry.survey_answers(twin_ids=["ann"], valid_only=True)) == {("ann", "e2", "fine")}
    assert len(registry.survey_answers(twin_ids=["ann"])) == 2

    registry.delete_survey_answers("ann", ["e2", "never-stored"])
    assert keyed(registry.survey_answers()) == {("ann", "e1", "Earl Grey"), ("bob", "e1", "Green")}


def test_memory_statuses_are_replaced_not_duplicated(registry: SqlTwinRegistry) -> None:
    registry.set_memory_status([])
    registry.set_memory_status([MemoryStatus("ann", "e1", "superseded", T0, "corr_1", "contradicted")])
    later = T0 + timedelta(days=1)
    registry.set_memory_status(
        [
            MemoryStatus("ann", "e1", "forgotten", later, "local:ann"),
            MemoryStatus("ann", "e2", "forgotten", later, "x"),
        ]
    )
    statuses = registry.memory_statuses("ann")
    assert statuses["e1"] == MemoryStatus("ann", "e1", "forgotten", later, "local:ann", "")
    assert set(statuses) == {"e1", "e2"} and all(utc(s.at) for s in statuses.values())
    assert registry.memory_statuses("bob") == {}


def test_profiles_are_json_documents_replaced_whole(registry: SqlTwinRegistry) -> None:
    registry.touch_twins({"ann": 1, "bob": 1})
    assert registry.get_profile("ann") is None
    document = {
        "version": 2,
        "facts": {"tea": ["Earl Grey", "Grüner Tee"]},
        "score": 0.25,
        "ok": True,
        "none": None,
    }
    registry.save_profile("ann", document)
    assert registry.get_profile("ann") == document
    registry.save_profile("ann", {"version": 3})
    registry.save_profiles({"bob": {"version": 3, "n": 1}, "ann": {"version": 4}})
    registry.save_profiles({})
    assert registry.get_profiles(["ann", "bob", "nobody"]) == {
        "ann": {"version": 4},
        "bob": {"version": 3, "n": 1},
    }
    assert registry.get_profiles([]) == {}


def test_sessions_keep_their_turns_in_order(registry: SqlTwinRegistry) -> None:
    registry.create_session(Session("ses_1", "ann", T0))
    registry.create_session(Session("ses_2", "ann", T0 + timedelta(minutes=1)))
    registry.create_session(Session("ses_3", "bob", T0))
    first = [
        Turn("user", "Did you buy a teapot?", T0),
        Turn("assistant", "Yes, a red one.", T0, ["e1", "e2"]),
    ]
    registry.append_turns("ses_1", first)
    registry.append_turns("ses_1", [Turn("user", "Wie war die Lieferung? 🚚", T0 + timedelta(seconds=5))])

    session = registry.get_session("ses_1")
    assert session is not None
    assert session == Session(
        "ses_1", "ann", T0, [*first, Turn("user", "Wie war die Lieferung? 🚚", T0 + timedelta(seconds=5))]
    )
    assert utc(session.created_at) and all(utc(t.created_at) for t in session.turns)
    assert registry.get_session("ses_none") is None
    assert sorted(s.session_id for s in registry.sessions_of("ann")) == ["ses_1", "ses_2"]
    assert registry.sessions_of("nobody") == []


def test_consents_are_set_kept_when_only_if_absent_and_read_per_twin(registry: SqlTwinRegistry) -> None:
    registry.set_consents([])
    registry.set_consents(
        [
            Consent("ann", "research", True, T0, "default at ingest"),
            Consent("ann", "product", True, T0, "default"),
        ]
    )
    later = T0 + timedelta(hours=1)
    registry.set_consents([Consent("ann", "research", False, later, "x")], only_if_absent=True)
    assert registry.consents_of("ann")["research"].granted is True

    registry.set_consents([Consent("ann", "research", False, later, "local:ann")])
    registry.set_consents(
        [Consent("ann", "research", True, later, "x"), Consent("ann", "marketing", False, later, "default")],
        only_if_absent=True,
    )
    consents = registry.consents_of("ann")
    assert consents == {
        "research": Consent("ann", "research", False, later, "local:ann"),
        "product": Consent("ann", "product", True, T0, "default"),
        "marketing": Consent("ann", "marketing", False, later, "default"),
    }
    assert all(type(c.granted) is bool and utc(c.updated_at) for c in consents.values())
    assert registry.consents_of("bob") == {}


def test_the_audit_is_appended_in_order_and_read_by_twin_and_limit(registry: SqlTwinRegistry) -> None:
    entries = [
        AuditEntry(T0 + timedelta(seconds=i), "key:k1", action, twin, "research", evidence, detail)
        for i, (action, twin, evidence, detail) in enumerate(
            [
                ("ingest", "ann", [], {"stored": 2}),
                ("ask", "ann", ["e1", "e2"], {"question": "Tea?", "nested": {"n": [1, 2.5, None, True]}}),
                ("refused", "bob", [], {"attempted": "ask"}),
                ("ask", "ann", ["e3"], {}),
            ]
        )
    ]
    registry.record(entries[:2])
    registry.record([])
    registry.record(entries[2:])

    found = registry.audit_entries()
    assert [(e.action, e.twin_id, e.evidence, e.detail, e.at) for e in found] == [
        (e.action, e.twin_id, e.evidence, e.detail, e.at) for e in entries
    ]
    ids = [e.entry_id for e in found]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids) and len(set(ids)) == 4
    assert all(utc(e.at) for e in found)
    assert [e.entry_id for e in registry.audit_entries(limit=2)] == ids[:2]
    assert [e.entry_id for e in registry.audit_entries(twin_id="ann")] == [ids[0], ids[1], ids[3]]
    assert [e.entry_id for e in registry.audit_entries(twin_id="ann", limit=1)] == [ids[0]]
    assert registry.audit_entries(twin_id="nobody") == []

    # Append-only: more entries leave the earlier ones as they were.
    registry.record([AuditEntry(T0, "local", "export", "ann", "self")])
    assert registry.audit_entries()[:4] == found


def test_erasing_a_twin_leaves_only_a_tombstone_in_the_audit(registry: SqlTwinRegistry) -> None:
    for twin, tea in (("ann-4711", "Earl Grey"), ("bob-0815", "Green")):
        registry.touch_twins({twin: 2}, panel="pilot")
        registry.save_profile(twin, {"facts": {"tea": tea}})
        registry.add_survey_answers([SurveyAnswer(twin, "tea", "Which tea?", tea, f"{twin}-e1", T0)])
        registry.set_consents([Consent(twin, "research", True, T0, "default")])
        registry.set_memory_status([MemoryStatus(twin, f"{twin}-e1", "forgotten", T0, f"local:{twin}")])
        registry.create_session(Session(f"ses_{twin}", twin, T0))
        registry.append_turns(f"ses_{twin}", [Turn("user", f"I drink {tea}", T0, [f"{twin}-e1"])])
        registry.record(
            [AuditEntry(T0, "local:analyst", "ask", twin, "research", [f"{twin}-e1"], {"q": tea})]
        )
    before = registry.audit_entries(twin_id="ann-4711")

    registry.erase_twin("ann-4711", tombstone="erased-abc")

    assert registry.get("ann-4711") is None and registry.get_profile("ann-4711") is None
    assert registry.consents_of("ann-4711") == {} and registry.memory_statuses("ann-4711") == {}
    assert registry.sessions_of("ann-4711") == [] and registry.get_session("ses_ann-4711") is None
    assert registry.survey_answers(twin_ids=["ann-4711"]) == []
    assert registry.panels() == {"pilot": 1}
    assert registry.audit_entries(twin_id="ann-4711") == []
    tombstones = registry.audit_entries(twin_id="erased-abc")
    assert [(e.entry_id, e.at, e.action, e.evidence, e.detail) for e in tombstones] == [
        (e.entry_id, e.at, e.action, [], {}) for e in before
    ]
    rows = every_row(registry)
    assert "4711" not in rows and "Earl Grey" not in rows, "erased data left in the database"
    assert rows.count("bob-0815") >= 8 and "Green" in rows  # the other twin is untouched
    assert registry.get("bob-0815") is not None and len(registry.survey_answers()) == 1


def test_datetimes_round_trip_as_the_same_instant_in_utc(registry: SqlTwinRegistry) -> None:
    # Each column is given a non-UTC time and must give back the same instant, in UTC; SQLite used to drop the
    # offset, and PostgreSQL answers in the server's zone (Asia/Kathmandu here).
    registry.touch_twins({"ann": 1})
    registry.add_survey_answers([SurveyAnswer("ann", "tea", "Which tea?", "Earl Grey", "e1", T0)])
    registry.set_consents([Consent("ann", "research", True, T0, "default")])
    registry.set_memory_status([MemoryStatus("ann", "e1", "forgotten", T0, "x")])
    registry.record([AuditEntry(T0, "x", "ask", "ann", "research")])
    registry.create_session(Session("ses_1", "ann", T0.astimezone(KATHMANDU)))
    registry.append_turns("ses_1", [Turn("user", "hi", T0.astimezone(timezone(timedelta(hours=-8))))])

    session = registry.get_session("ses_1")
    assert session is not None
    read = [
        registry.survey_answers()[0].timestamp,
        registry.consents_of("ann")["research"].updated_at,
        registry.memory_statuses("ann")["e1"].at,
        registry.audit_entries()[0].at,
        session.created_at,
        session.turns[0].created_at,
    ]
    for value in read:
        assert value == T0 and utc(value), value
        assert value.isoformat() == "2011-03-02T07:30:15.123456+00:00"


# --- several instances -------------------------------------------------------------------------------------


def test_two_instances_on_one_database_see_each_others_writes(url: str) -> None:
    first, second = SqlTwinRegistry(url), SqlTwinRegistry(url)  # the second finds the tables made
    try:
        first.touch_twins({"ann": 2}, panel="pilot")
        first.set_consents([Consent("ann", "research", True, T0, "default")])
        first.record([AuditEntry(T0, "app-1", "ingest", "ann", "self")])
        assert [t.twin_id for t in second.list_twins(panel="pilot")] == ["ann"]
        assert second.consents_of("ann")["research"].granted is True

        second.set_consents([Consent("ann", "research", False, T0, "app-2")])
        second.touch_twins({"ann": 3})
        second.record([AuditEntry(T0, "app-2", "consent", "ann", "self")])
        second.save_profile("ann", {"version": 1})
        assert first.consents_of("ann")["research"].granted is False
        assert first.get("ann").n_events == 3
        assert [e.actor for e in first.audit_entries(twin_id="ann")] == ["app-1", "app-2"]
        assert first.get_profile("ann") == {"version": 1}

        first.erase_twin("ann", tombstone="erased-x")
        assert second.get("ann") is None and second.audit_entries(twin_id="ann") == []
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_instances_starting_and_writing_at_once_do_not_collide(postgres_url: str) -> None:
    # Replicas start together against an empty database, then ingest the same customers at the same moment:
    # neither creating the tables nor writing the same keys may fail with a duplicate key.
    registries: list[SqlTwinRegistry] = all_at_once(lambda i: SqlTwinRegistry(postgres_url), 6)
    try:
        for round_ in range(5):
            twins = {f"c{round_}-{k}": k + 1 for k in range(20)}

            def ingest(i: int, twins: dict[str, int] = twins) -> None:
                registry = registries[i]
                registry.add_survey_answers(
                    [SurveyAnswer(t, "tea", "Which tea?", "Green", f"{t}-e", T0) for t in twins]
                )
                registry.touch_twins(twins, panel="pilot")
                registry.set_consents(
                    [Consent(t, "research", True, T0, f"app-{i}") for t in twins], only_if_absent=True
                )
                registry.set_memory_status(
                    [MemoryStatus(t, f"{t}-e", "forgotten", T0, f"app-{i}") for t in twins]
                )
                registry.save_profiles({t: {"by": i} for t in twins})
                registry.set_panel("vip", add=list(twins))

            all_at_once(ingest, 6)
        check = registries[0]
        assert len(check.list_twins(panel="pilot")) == 100 and check.panels() == {"pilot": 100, "vip": 100}
        assert len(check.survey_answers()) == 100 and check.survey_answers(valid_only=True) == []
        assert check.get("c4-19").n_events == 20
        assert len(check.consents_of("c0-0")) == 1 and len(check.memory_statuses("c0-0")) == 1
    finally:
        for registry in registries:
            registry.engine.dispose()


# --- the service, end to end ---------------------------------------------------------------------------------

HISTORY = [
    {
        "customer_id": "ann",
        "event_id": "ann-1",
        "text": "Bought a red teapot and six blue mugs",
        "source": "purchase",
        "timestamp": "2011-01-02T10:00:00+02:00",
    },
    {
        "customer_id": "ann",
        "event_id": "ann-2",
        "text": "Survey: which tea do you prefer? Earl Grey",
        "source": "survey",
        "question_id": "tea",
        "question": "Which tea do you prefer?",
        "answer": "Earl Grey",
        "timestamp": "2011-01-05",
    },
    {
        "customer_id": "bob",
        "event_id": "bob-1",
        "text": "Bought garden gloves and a watering can",
        "source": "purchase",
    },
    {
        "customer_id": "bob",
        "event_id": "bob-2",
        "text": "Survey: which tea do you prefer? Green",
        "source": "survey",
        "question_id": "tea",
        "question": "Which tea do you prefer?",
        "answer": "Green",
    },
]


def test_the_service_end_to_end(url: str, tmp_path: Path) -> None:
    chat = FakeChatModel()
    registry = SqlTwinRegistry(url)
    service = TwinService(
        Settings(home=tmp_path / "home", min_relevance=0.2),
        store=InMemoryStore(HashEmbedder()),
        registry=registry,
        counter=WordCounter(),
        chat_model=chat,
    )
    try:
        report = service.ingest_records(
            [RawRecord("history", i + 1, r) for i, r in enumerate(HISTORY)], panel="pilot"
        )
        assert (report.stored, report.new_twins, report.exit_code) == (4, {"ann", "bob"}, 0)
        assert [t.twin_id for t in service.twins(panel="pilot")] == ["ann", "bob"]
        assert {p for p, c in service.consents("ann").items() if c and c.granted} == {"research", "product"}

        chat.enqueue("I bought a red teapot [E1].")
        assert service.ask("ann", "Did you buy a teapot?").citations
        session = service.start_session("ann")
        chat.enqueue("Six blue mugs [E1].")
        service.chat(session.session_id, "And mugs?")
        assert [t.role for t in service.session(session.session_id).turns] == ["user", "assistant"]

        # A correction answering the survey question replaces ann's earlier answer, and only hers.
        result = service.correct("ann", "Which tea do I prefer now? Green.")
        assert result.survey is not None and result.survey.replaces == ["ann-2"]
        valid = {(a.twin_id, a.answer) for a in registry.survey_answers(valid_only=True)}
        assert valid == {("ann", "Green"), ("bob", "Green")}
        assert service.memories("ann", include_invalid=False)[0]["event_id"] == result.event_id

        service.set_consent("ann", "research", False)
        with pytest.raises(ConsentDenied, match="withdrew consent for research"):
            service.ask("ann", "Did you buy a teapot?", use=Use("analyst", "research"))
        assert registry.audit_entries(twin_id="ann")[-1].action == "refused"

        export = service.export("ann")
        json.dumps(export)
        assert export["consents"]["research"]["granted"] is False
        assert export["consents"]["research"]["updated_at"].endswith("+00:00")
        assert {a["answer"] for a in export["survey_answers"]} == {"Earl Grey", "Green"}
        assert len(export["sessions"]) == 1 and len(export["sessions"][0]["turns"]) == 2
        actions = [e["action"] for e in export["audit"]]
        assert actions[:2] == ["ingest", "ask"] and {
            "chat",
            "correct",
            "consent",
            "refused",
            "export",
        } <= set(actions)
        assert all(e["at"].endswith("+00:00") for e in export["audit"])

        tombstone = service.erase("ann")
        assert [t.twin_id for t in service.twins()] == ["bob"]
        assert registry.audit_entries(twin_id="ann") == []
        assert registry.audit_entries()[-1].twin_id == tombstone
        rows = every_row(registry)
        assert "'ann" not in rows and "Earl Grey" not in rows and "teapot" not in rows
        assert [a.answer for a in registry.survey_answers()] == ["Green"]
        assert service.consents("bob")["research"].granted
    finally:
        registry.engine.dispose()
