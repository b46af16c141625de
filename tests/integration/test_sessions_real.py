"""Conversations on the real pieces: the local LLM, streamed over real HTTP, and resumed from the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import served
from twinchat.cli import main
from twinchat.services import TwinService

pytestmark = pytest.mark.slow


@pytest.fixture
def api(real_service: TwinService, history_file: Path) -> Iterator[httpx.Client]:
    real_service.ingest_files([history_file], progress=False)
    _, key = real_service.create_key("researcher")
    with (
        served(real_service) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        yield client


def test_a_conversation_over_http_streams_and_is_remembered(api: httpx.Client) -> None:
    started = api.post("/v1/twins/C-100/sessions")
    assert started.status_code == 201
    session = started.json()["session_id"]

    first = api.post(
        f"/v1/sessions/{session}/messages", json={"message": "Tell me about the cake stand"}, timeout=120
    )
    assert first.status_code == 200 and first.json()["citations"]

    with api.stream(
        "POST",
        f"/v1/sessions/{session}/messages",
        json={"message": "Did you get a refund for it?", "stream": True},
        timeout=120,
    ) as stream:
        lines = list(stream.iter_lines())
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[-1] == "answer" and "token" in events
    final = json.loads([line for line in lines if line.startswith("data: ")][-1].removeprefix("data: "))
    # The follow-up is read with the previous question: the support ticket about the cake stand is found.
    assert any("refund" in c["text"] for c in final["citations"])

    transcript = api.get(f"/v1/sessions/{session}").json()
    assert [t["role"] for t in transcript["turns"]] == ["user", "assistant"] * 2
    assert transcript["turns"][2]["content"] == "Did you get a refund for it?"
    assert transcript["simulated"] is True
    assert api.get("/v1/sessions/nope").status_code == 404


def test_the_cli_resumes_a_session(real_service: TwinService, history_file: Path, capsys) -> None:
    real_service.ingest_files([history_file], progress=False)
    assert main(["chat", "C-300", "--message", "Do you like gardening?", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["chat", "C-300", "--session", first["session_id"], "-m", "With whom?", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["session_id"] == first["session_id"]
    assert len(real_service.session(first["session_id"]).turns) == 4
    assert main(["chat", "C-100", "--session", first["session_id"], "-m", "hi"]) == 1
    assert "belongs to twin C-300" in capsys.readouterr().err
