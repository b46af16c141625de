"""`twinchat serve --workers 2` over a real Chroma server and the shared SQLite registry behaves like one
process: concurrent requests from several clients lose no write (real CLI, embedder and Chroma server)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import PYTHON, ROOT, free_port, run_cli, running_chroma, stop, wait_http
from tests.support.consistency import assert_stored_once
from tests.support.together import all_at_once
from twinchat.adapters.chroma_store import read_layout, shard_of
from twinchat.config import Settings
from twinchat.domain.events import Event
from twinchat.factory import make_store, make_store_client
from twinchat.services import TwinService
from twinchat.testing import HashEmbedder

pytestmark = pytest.mark.slow

TWINS = [f"W-{i}" for i in range(6)]
REQUESTS = 120  # POST /v1/events, each with an event of every twin: small, so that they overlap a lot
TOGGLES = 8  # consent changes per twin, each twin's made in order by one client
# Twins erased while the others are written: each shares a shard (of the default 16) with one of TWINS.
ERASED = [t for t in (f"E-{i}" for i in range(200)) if shard_of(t, 16) in {shard_of(w, 16) for w in TWINS}][
    :6
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(ROOT / "tests" / "support" / "site"),
    }


def test_several_workers_are_refused_over_an_embedded_store(env: dict[str, str]) -> None:
    refused = run_cli(env, "serve", "--workers", "2", "--port", str(free_port()))
    assert refused.returncode == 2
    assert "embedded Chroma" in refused.stderr and "chroma+http://" in refused.stderr


def request_events(r: int) -> list[dict[str, Any]]:
    """Request r's events: one for every twin, and a survey answer now and then."""
    events: list[dict[str, Any]] = [
        {"customer_id": twin, "text": f"Ticket {r}: a question about order {j}", "source": "support"}
        for j, twin in enumerate(TWINS)
    ]
    if r < len(TWINS):
        answer = ["tea", "coffee"][r % 2]
        events.append(
            {
                "customer_id": TWINS[r],
                "text": f"Q: Tea or coffee? A: {answer}",
                "source": "survey",
                "question_id": "drink",
                "question": "Tea or coffee?",
                "answer": answer,
            }
        )
    return events


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_two_workers_over_a_chroma_server_lose_no_write(
    env: dict[str, str], chroma_server: str, tmp_path: Path
) -> None:
    env = {**env, "TWINCHAT_STORE": chroma_server}
    created = run_cli(env, "keys", "create", "--role", "admin", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    headers = {"Authorization": f"Bearer {key['key']}"}
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "twinchat.cli", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("w"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", process=server, timeout=300)
        # Both workers up: each loads the embedder on its first ingestion, so warm them (a fresh connection a
        # request, so the kernel spreads them over both) before the clock of the concurrent part starts.
        assert len(children_of(server.pid)) >= 2, "uvicorn did not start two worker processes"
        first = [{"customer_id": t, "text": f"First order of {t}", "source": "purchase"} for t in TWINS]
        response = httpx.post(f"{base}/v1/events", json={"events": first}, headers=headers, timeout=300)
        assert response.status_code == 201, response.text
        doomed = [
            {"customer_id": t, "text": f"Order {j} of {t}, to be erased", "source": "purchase"}
            for t in ERASED
            for j in range(5)
        ]
        response = httpx.post(f"{base}/v1/events", json={"events": doomed}, headers=headers, timeout=300)
        assert response.status_code == 201, response.text

        def post_events(r: int) -> httpx.Response:
            events = request_events(r)
            return httpx.post(f"{base}/v1/events", json={"events": events}, headers=headers, timeout=300)

        def toggle_consents(twin: str) -> list[bool]:
            sets = [i % 2 == 0 for i in range(TOGGLES)] + [twin.endswith(("0", "2", "4"))]
            for granted in sets:
                answer = httpx.put(
                    f"{base}/v1/twins/{twin}/consent/marketing",
                    json={"granted": granted},
                    headers=headers,
                    timeout=300,
                )
                assert answer.status_code == 200, answer.text
            return sets

        def erase(twin: str) -> httpx.Response:
            time.sleep(0.5)  # spread over the writes
            return httpx.delete(f"{base}/v1/twins/{twin}", headers=headers, timeout=300)

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool, ThreadPoolExecutor(2) as erasing:
            # Erasures beside the writes to the same shards, from either worker.
            erasures = erasing.map(erase, ERASED)
            ingests = list(pool.map(post_events, range(REQUESTS)))
            consents = dict(zip(TWINS, pool.map(toggle_consents, TWINS), strict=True))
            erased = list(erasures)
        seconds = time.monotonic() - started
        assert all(r.status_code == 200 for r in erased), [r.text for r in erased if r.status_code != 200]
        assert all(r.status_code == 201 for r in ingests), [r.text for r in ingests if r.status_code != 201]
        assert all(r.json()["stored"] == len(request_events(i)) for i, r in enumerate(ingests))

        # A survey job accepted by one worker, polled on fresh connections (either worker) until done.
        job = httpx.post(
            f"{base}/v1/surveys",
            json={
                "questions": [{"id": "drink", "text": "Tea or coffee?", "options": ["tea", "coffee"]}],
                "twin_ids": TWINS,
            },
            headers=headers,
            timeout=300,
        )
        assert job.status_code == 202, job.text
        location = f"{base}{job.headers['Location']}"
        deadline = time.monotonic() + 120
        while (status := httpx.get(location, headers=headers, timeout=60).json())["status"] != "done":
            assert status["status"] in ("queued", "running"), status
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        for _ in range(6):  # whichever worker answers, the result is there
            result = httpx.get(f"{location}/result", headers=headers, timeout=60)
            assert result.status_code == 200 and len(result.json()) == len(TWINS), result.text
    finally:
        stop(server)

    records = [*first, *(e for r in range(REQUESTS) for e in request_events(r))]
    service = TwinService.from_settings(
        Settings(home=Path(env["TWINCHAT_HOME"]), store=chroma_server), embedder=HashEmbedder(384)
    )
    actor = f"key:{key['key_id']}"
    assert_stored_once(service, records, audit_actor=actor)  # the erased twins' neighbours lost nothing
    for twin in ERASED:
        assert service.store.count(twin) == 0 and service.store.events(twin) == [], twin
    entries = service.audit()
    ingest_entries = [e for e in entries if e.action == "ingest" and e.actor == actor and e.twin_id in TWINS]
    assert len(ingest_entries) == len(TWINS) * (
        1 + REQUESTS
    )  # one per twin per request that stored its events
    consent_entries = [e for e in entries if e.action == "consent" and e.actor == actor]
    assert len(consent_entries) == sum(len(sets) for sets in consents.values())
    for twin, sets in consents.items():
        assert service.registry.consents_of(twin)["marketing"].granted is sets[-1], twin
    print(
        f"{REQUESTS} ingestions and {len(consent_entries)} consent changes over 2 workers in {seconds:.1f} s"
    )


@pytest.mark.parametrize("layout", ["auto", "sharded"])
def test_instances_starting_at_once_over_an_empty_chroma_server_agree_on_its_layout(
    tmp_path: Path, layout: str
) -> None:
    # Workers or replicas start together over a new server: each opens the store and writes its first event.
    # None may take another's collections for an old per-twin store, or read a layout record half written.
    # Five servers: before the fix, about half of such starts had an instance fail or open another layout.
    for round_ in range(5):
        with running_chroma(tmp_path / f"chroma-{round_}") as port:
            settings = Settings(
                home=tmp_path / f"home-{round_}", store=f"chroma+http://127.0.0.1:{port}", store_layout=layout
            )

            def start(i: int, settings: Settings = settings) -> tuple[str, int]:
                store = make_store(settings, HashEmbedder(384))
                store.add(f"C-{i}", [Event(f"C-{i}", f"Instance {i} started", f"e-{i}")])
                return (type(store).__name__, getattr(store, "shards", 0))

            opened = all_at_once(start, 6)
            assert set(opened) == {("ShardedChromaMemoryStore", 16)}, opened
            client = make_store_client(settings)
            shards = {shard_of(f"C-{i}", 16) for i in range(6)}
            assert read_layout(client) == ("sharded", 16)
            assert client.count_collections() == 1 + len(shards)  # the record and those shards, nothing else
            again = make_store(settings, HashEmbedder(384))
            assert [again.count(f"C-{i}") for i in range(6)] == [1] * 6
