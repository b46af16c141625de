"""The openai: LLM path for real, against llama.cpp's OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, compose_command, free_port, stop, wait_http
from twinchat.config import Settings
from twinchat.services import TwinService

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    # The very command of docker-compose.yml's llm service, run without Docker.
    process = subprocess.Popen(
        compose_command("llm", port=port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        start_new_session=True,  # stop() signals the group: the shell and the server it starts
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process=process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def test_a_twin_answers_through_an_openai_compatible_server(
    llama_server: str, tmp_path: Path, embedder, history_file: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home", llm="openai:smollm2", openai_base_url=llama_server, openai_api_key="x"
    )
    service = TwinService.from_settings(settings, embedder=embedder)
    service.ingest_files([history_file], progress=False)

    answer = service.ask("C-100", "Were you happy with the cake stand?")
    assert answer.model == "openai:smollm2"
    assert not answer.abstained and answer.answer.strip()
    assert {c.event_id for c in answer.citations} <= {e.event_id for e in service.store.events("C-100")}

    streamed = [
        p for p in service.ask_stream("C-100", "Were you happy with the cake stand?") if isinstance(p, str)
    ]
    assert len(streamed) > 1, "the OpenAI path should stream tokens, not one block"
