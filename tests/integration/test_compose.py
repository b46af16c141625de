"""docker-compose.yml stays valid, and its services' commands run without Docker against twinchat."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import ROOT, compose_command, free_port, stop, wait_http
from twinchat.config import Settings
from twinchat.services import TwinService


def test_compose_file_wires_api_to_chroma_and_the_llm_server() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "chroma", "llm"} <= set(services)
    for name, service in services.items():
        assert service.get("command"), f"service {name} has no command"
        assert "build" in service or "image" in service
    env = services["api"]["environment"]
    assert env["TWINCHAT_STORE"] == "chroma+http://chroma:8000"
    assert env["OPENAI_BASE_URL"] == "http://llm:8080/v1" and env["TWINCHAT_LLM"].startswith("openai:")
    assert "8000" in " ".join(services["chroma"]["command"])
    assert "8080" in " ".join(services["llm"]["command"])
    for volume in {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}:
        assert volume in compose["volumes"]


@pytest.mark.slow
def test_twins_live_in_a_chroma_server_run_by_the_compose_command(
    tmp_path: Path, embedder, history_file: Path
) -> None:
    port = free_port()
    server = subprocess.Popen(
        compose_command("chroma", port=port, path=tmp_path / "chroma"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stop() signals the group, whatever the command starts
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process=server)
        settings = Settings(home=tmp_path / "home", store=f"chroma+http://127.0.0.1:{port}")
        service = TwinService.from_settings(settings, embedder=embedder)
        assert service.ingest_files([history_file], progress=False).stored == 7
        memories = service.store.search("C-100", "cake stand", k=2)
        assert memories and all(m.event.customer_id == "C-100" for m in memories)
        assert not (tmp_path / "home" / "chroma").exists(), "client-server mode must not write a local store"
    finally:
        stop(server)
