"""Real pieces: the bundled MiniLM embedder, Chroma on a temporary folder, SmolLM2 through llama.cpp."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from twinchat.config import Settings
from twinchat.factory import make_embedder
from twinchat.ports import Embedder
from twinchat.services import TwinService

ROOT = Path(__file__).resolve().parents[2]

# A small, realistic history: three customers with purchases, support, reviews and a survey answer.
HISTORY = [
    {
        "customer_id": "C-100",
        "text": "Bought a 3 tier regency cake stand and a set of cake tins",
        "source": "purchase",
        "timestamp": "2011-03-02",
    },
    {
        "customer_id": "C-100",
        "text": "Support ticket: the cake stand arrived with a chipped plate, asked for a refund",
        "source": "support",
        "timestamp": "2011-03-09",
    },
    {
        "customer_id": "C-100",
        "text": "Review of the cake stand: lovely design but fragile, 3 out of 5",
        "source": "review",
        "timestamp": "2011-03-20",
    },
    {
        "customer_id": "C-200",
        "text": "Bought twelve white hanging heart tealight holders",
        "source": "purchase",
        "timestamp": "2011-01-12",
    },
    {
        "customer_id": "C-200",
        "text": "Survey: prefers delivery on Saturdays and pays by card",
        "source": "survey",
        "timestamp": "2011-02-01",
    },
    {
        "customer_id": "C-300",
        "text": "Bought a child's garden rake and a watering can",
        "source": "purchase",
        "timestamp": "2011-05-13",
    },
    {
        "customer_id": "C-300",
        "text": "Posted on social media: love gardening with my kids every weekend",
        "source": "social",
        "timestamp": "2011-05-20",
    },
]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedder, as a user gets it: the bundled MiniLM run by ONNX Runtime (exported on first use
    into TWINCHAT_MODEL_CACHE, ~/.cache/twinchat)."""
    return make_embedder(Settings())


@pytest.fixture
def history_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    return path


@pytest.fixture
def real_service(tmp_path: Path, embedder: Embedder) -> TwinService:
    return TwinService.from_settings(Settings(home=tmp_path / "home"), embedder=embedder)


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``twinchat ARGS`` as a user runs it, in a process of its own with ``env``; its output captured."""
    return subprocess.run(
        [PYTHON, "-m", "twinchat.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before serving {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server and whatever it started. A compose command runs under ``sh -c``: terminating the shell
    alone would leave its python child running, so servers start in a session of their own
    (``start_new_session=True``) and the whole group is signalled."""
    group = os.getpgid(process.pid) if process.poll() is None else None
    own_group = group == process.pid

    def signal_all(sig: int) -> None:
        if own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    signal_all(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        signal_all(signal.SIGKILL)
        process.wait()
    if own_group:  # the shell may be gone before its child: make sure nothing of the group survives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


PYTHON = sys.executable


def compose_command(service: str, *, port: int, path: Path | None = None) -> list[str]:
    """A docker-compose.yml service's command, made to run here: loopback, a free port, a local folder."""
    import yaml

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    command = [str(part) for part in spec["command"]]
    swapped = []
    for part in command:
        part = part.replace("0.0.0.0", "127.0.0.1")
        part = part.replace("--port 8080", f"--port {port}").replace("--port 8000", f"--port {port}")
        if path is not None:
            part = part.replace("/chroma", str(path))
        swapped.append(part)
    for i, part in enumerate(swapped[:-1]):
        if part == "--port":
            swapped[i + 1] = str(port)
    bin_dir = Path(PYTHON).parent
    if swapped[0] in ("chroma", "twinchat") and (bin_dir / swapped[0]).exists():
        swapped[0] = str(bin_dir / swapped[0])
    env_path = f"{bin_dir}:{os.environ.get('PATH', '')}"
    return ["env", f"PATH={env_path}", *swapped]


@contextlib.contextmanager
def served(service: TwinService, **app_options: Any) -> Iterator[str]:
    """The service's API served by uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    from twinchat.api.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service.settings, service=service, **app_options),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 60 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def running_chroma(path: Path) -> Iterator[int]:
    """A real Chroma server (`chroma run`) over ``path`` on a free loopback port, which it yields; its process
    group is stopped afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(PYTHON).parent / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1"]
        + ["--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stop() signals the group
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process=process)
        yield port
    finally:
        stop(process)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A Chroma server of the test's own over a temporary folder; yields the store spec,
    ``chroma+http://127.0.0.1:PORT``."""
    with running_chroma(tmp_path / "chroma-server") as port:
        yield f"chroma+http://127.0.0.1:{port}"
