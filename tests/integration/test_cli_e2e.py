"""The `twinchat` command as a user runs it, in child processes, with the network guard watching them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import PYTHON, ROOT, free_port, run_cli, stop, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    log = tmp_path / "netguard.log"
    return {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_NETGUARD_LOG": str(log),
        "PYTHONPATH": str(ROOT / "tests" / "support" / "site"),
    }


def assert_stayed_offline(env: dict[str, str]) -> None:
    log = Path(env["TWINCHAT_NETGUARD_LOG"])
    active = Path(str(log) + ".active")
    assert active.exists(), "the network guard was not active in the child processes"
    assert not log.exists() or not log.read_text().strip(), f"network use beyond loopback: {log.read_text()}"


def test_ingest_then_ask_from_the_command_line_offline(
    env: dict[str, str], history_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "customer_id,text,timestamp\nC-100,Bought oven gloves,2011-04-01\n,no customer,\nC-100,,2011-04-02\n"
    )

    ok = run_cli(env, "ingest", str(history_file), "--panel", "pilot")
    assert ok.returncode == 0, ok.stderr
    assert "stored 7 new events" in ok.stdout

    again = run_cli(env, "ingest", str(history_file))
    assert again.returncode == 0 and "stored 0 new events, 7 already stored" in again.stdout

    partial = run_cli(env, "ingest", str(bad))
    assert partial.returncode == 1
    assert f"{bad}:line 3: customer_id:" in partial.stderr
    assert f"{bad}:line 4: text:" in partial.stderr
    assert "stored 1 new events" in partial.stdout

    missing = run_cli(env, "ingest", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr

    twins = json.loads(run_cli(env, "twins", "--json").stdout)
    assert {t["twin_id"]: t["n_events"] for t in twins} == {"C-100": 4, "C-200": 2, "C-300": 2}

    asked = run_cli(env, "ask", "C-100", "Were you happy with the cake stand?", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["simulated"] is True and answer["answer"]
    assert answer["citations"] and set(answer["citations"][0]) == {"event_id", "text", "score"}

    unknown = run_cli(env, "ask", "nobody", "hello")
    assert unknown.returncode == 1 and "no twin 'nobody'" in unknown.stderr
    assert_stayed_offline(env)


def test_serve_answers_over_http(env: dict[str, str], history_file: Path, tmp_path: Path) -> None:
    assert run_cli(env, "ingest", str(history_file)).returncode == 0
    made = run_cli(env, "keys", "create", "--role", "product", "--label", "test")
    assert made.returncode == 0 and "shown this once" in made.stderr
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "twinchat.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", process=server)
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        assert httpx.get(f"{base}/v1/twins").status_code == 401
        assert [t["twin_id"] for t in httpx.get(f"{base}/v1/twins", headers=auth).json()] == [
            "C-100",
            "C-200",
            "C-300",
        ]

        reply = httpx.post(
            f"{base}/v1/twins/C-100/ask",
            json={"question": "How was the cake stand?"},
            headers=auth,
            timeout=120,
        )
        assert reply.status_code == 200
        assert reply.json()["simulated"] is True and reply.json()["citations"]

        with httpx.stream(
            "POST",
            f"{base}/v1/twins/C-100/ask",
            json={"question": "How was the cake stand?", "stream": True},
            headers=auth,
            timeout=120,
        ) as stream:
            events = [
                line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")
            ]
        assert events.count("answer") == 1 and events[-1] == "answer" and "token" in events

        assert (
            httpx.post(f"{base}/v1/twins/nobody/ask", json={"question": "hi"}, headers=auth).status_code
            == 404
        )
        invalid = httpx.post(f"{base}/v1/twins/C-100/ask", json={"question": ""}, headers=auth)
        assert invalid.status_code == 422 and "question" in invalid.json()["message"]
    finally:
        stop(server)
    assert_stayed_offline(env)
    # serve loads the encoder and the store's shards on a thread of its own while it answers
    assert "warming the store failed" not in (tmp_path / "serve.log").read_text()


def test_the_guard_does_see_an_outside_connection(env: dict[str, str]) -> None:
    # The control for the two tests above: a child that reaches out is caught (and refused before it leaves).
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\nexcept OSError:\n    pass"
    subprocess.run([PYTHON, "-c", code], env=env, check=True, timeout=60)
    assert "192.0.2.1" in Path(env["TWINCHAT_NETGUARD_LOG"]).read_text()
