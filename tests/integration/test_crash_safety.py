"""`twinchat ingest` killed with SIGKILL part-way, several times, then run to the end: every event is stored
once and everything derived from the events agrees with the store (real CLI and embedder; an embedded Chroma,
and a `chroma run` server)."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import PYTHON, ROOT, run_cli
from tests.support.consistency import assert_stored_once
from twinchat.config import Settings
from twinchat.domain.readers import RawRecord, read_records
from twinchat.services import TwinService
from twinchat.testing import HashEmbedder

pytestmark = pytest.mark.slow

EVENTS = 2000
BATCH = 100  # small batches: many writes, so the kills land between different pairs of them


@pytest.fixture(params=["embedded", "server"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    store = request.getfixturevalue("chroma_server") if request.param == "server" else ""
    return {
        **os.environ,
        **({"TWINCHAT_STORE": store} if store else {}),
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_BATCH_SIZE": str(BATCH),
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(ROOT / "tests" / "support" / "site"),
    }


@pytest.fixture
def events_csv(tmp_path: Path) -> Path:
    """A few thousand events of 150 customers: purchases, tickets and survey answers, in file order."""
    path = tmp_path / "events.csv"
    products = ["teapot", "mug", "cake stand", "tealight holder", "garden rake", "lunch bag", "doormat"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["customer_id", "text", "source", "timestamp", "question_id", "question", "answer"])
        for i in range(EVENTS):
            customer = f"C-{(i * 7919) % 150:03d}"
            day = f"2011-{1 + i % 12:02d}-{1 + i % 28:02d}"
            if i % 10 == 0:
                question = f"How often do you order ({i})?"
                answer = ["weekly", "monthly", "rarely"][i % 3]
                out.writerow(
                    [customer, f"Q: {question} A: {answer}", "survey", day, f"q{i}", question, answer]
                )
            elif i % 10 == 5:
                out.writerow(
                    [customer, f"Ticket {i}: the {products[i % 7]} arrived late", "support", day, "", "", ""]
                )
            else:
                out.writerow(
                    [
                        customer,
                        f"Bought {1 + i % 5} x {products[i % 7]} (order {i})",
                        "purchase",
                        day,
                        "",
                        "",
                        "",
                    ]
                )
    return path


def start_ingest(env: dict[str, str], path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "twinchat.cli", "ingest", str(path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_so_far(home: Path) -> int:
    """Events the registry counts, read beside the writing process (its SQLite is in WAL mode, so a reader
    never waits; the embedded Chroma's file stays locked while the ingestion runs)."""
    path = home / "twinchat.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT coalesce(sum(n_events), 0) FROM twins").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def kill_when_stored(env: dict[str, str], path: Path, at_least: int) -> int:
    """Run the ingestion and SIGKILL it once ``at_least`` events are stored; returns how many were."""
    home = Path(env["TWINCHAT_HOME"])
    process = start_ingest(env, path)
    deadline = time.monotonic() + 600
    try:
        while (held := stored_so_far(home)) < at_least:
            assert process.poll() is None, (
                f"the ingestion ended before it was killed: {process.communicate()}"
            )
            assert time.monotonic() < deadline, "the ingestion stored too little in 10 minutes"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    return held


def test_ingest_killed_part_way_then_run_again_stores_every_event_once(
    env: dict[str, str], events_csv: Path
) -> None:
    held = [kill_when_stored(env, events_csv, n) for n in (1, EVENTS * 2 // 5, EVENTS * 4 // 5)]
    assert 0 < held[0] <= held[1] <= held[2] < EVENTS, held

    done = run_cli(env, "ingest", str(events_csv), timeout=600)
    assert done.returncode == 0, done.stderr
    again = run_cli(env, "ingest", str(events_csv), timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"stored 0 new events, {EVENTS} already stored" in again.stdout, again.stdout

    rows = [r.record for r in read_records(events_csv) if isinstance(r, RawRecord)]
    assert len(rows) == EVENTS
    settings = Settings(home=Path(env["TWINCHAT_HOME"]), store=env.get("TWINCHAT_STORE", ""))
    service = TwinService.from_settings(settings, embedder=HashEmbedder(384))
    assert_stored_once(service, rows)
