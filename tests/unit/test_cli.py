"""CLI behaviour that needs no model: help, light imports, configuration errors."""

from __future__ import annotations

import subprocess
import sys

from twinchat.cli import main

HEAVY = ("torch", "chromadb", "sentence_transformers", "llama_cpp", "langchain_core", "fastapi", "openai")


def test_help_lists_the_commands(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("ingest", "twins", "ask", "serve", "demo"):
        assert command in out


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, twinchat.cli, twinchat.config; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_an_unknown_llm_spec_is_a_readable_error(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("TWINCHAT_LLM", "magic:gpt")
    events = tmp_path / "e.jsonl"
    events.write_text('{"customer_id": "c1", "text": "Bought a teapot"}\n')
    monkeypatch.setenv("TWINCHAT_EMBEDDER", "hash")
    assert main(["ingest", str(events)]) == 0
    assert main(["ask", "c1", "Did you buy a teapot?"]) == 1
    assert "unknown TWINCHAT_LLM 'magic:gpt'" in capsys.readouterr().err


def test_commands_that_read_only_the_registry_do_not_open_the_store(monkeypatch, tmp_path) -> None:
    # The store opens on first use: listing twins or reading consent needs no Chroma (a second to import).
    monkeypatch.setenv("TWINCHAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TWINCHAT_EMBEDDER", "hash")
    events = tmp_path / "e.jsonl"
    events.write_text('{"customer_id": "c1", "text": "Bought a teapot"}\n')
    assert main(["ingest", str(events)]) == 0
    code = (
        "import sys; from twinchat.cli import main; "
        "assert main(['twins']) == 0 and main(['consent', 'c1']) == 0; print('chromadb' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "c1\t1 events" in run.stdout and run.stdout.strip().endswith("False")
