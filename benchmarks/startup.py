"""Start-up: ``twinchat --help`` wall time, and ``twinchat serve`` from the command to a served API and UI.

Each is a fresh process, as a user starts it, repeated. ``serve`` runs over an empty TWINCHAT_HOME on a free
port; the API is served when /healthz answers 200 and the UI when /studio/ does. The reference, in the same
run: the bare interpreter (``python -c pass``), which no command can start faster than.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.core import Measured, bench_settings, ratio, scratch, settings_config, summary

NAME = "startup"
VERSION = 1
HEADLINE = ("help_s.p50", "serve_api_s.p50", "serve_ui_s.p50", "help_over_interpreter")


@dataclass(frozen=True)
class Size:
    help_runs: int
    serve_runs: int


FULL = Size(help_runs=7, serve_runs=3)
QUICK = Size(help_runs=2, serve_runs=1)


def twinchat_command() -> list[str]:
    """The ``twinchat`` script installed beside this interpreter, or the module where there is none."""
    script = Path(sys.executable).parent / "twinchat"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "twinchat.cli"]


def run(size: Size, *, progress: bool = True) -> Measured:
    import httpx

    from evals.bench_api import Server

    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        env = {**os.environ, "TWINCHAT_HOME": str(folder / "home")}
        interpreter = [_wall([sys.executable, "-c", "pass"], env) for _ in range(size.help_runs)]
        helps = [_wall([*twinchat_command(), "--help"], env) for _ in range(size.help_runs)]
        api, ui, rss = [], [], []
        for i in range(size.serve_runs):
            started = time.perf_counter()
            with Server(env, folder / f"serve-{i}.log", timeout=120) as server:
                api.append(server.start_s)
                while True:
                    response = httpx.get(f"{server.url}/studio/", timeout=30, trust_env=False)
                    if response.status_code == 200:
                        break
                    if time.perf_counter() - started > 120:
                        raise TimeoutError(f"/studio/ answered {response.status_code} for 120 s")
                    time.sleep(0.05)
                ui.append(time.perf_counter() - started)
                rss.append(_rss_mib(server.process.pid))
            if progress:
                print(
                    f"serve {i + 1}/{size.serve_runs}: API {api[-1]:.2f} s, UI {ui[-1]:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )

    figures = {
        "help_s": summary(helps),
        "serve_api_s": summary(api),
        "serve_ui_s": summary(ui),
        "help_over_interpreter": ratio(summary(helps)["p50"], summary(interpreter)["p50"], digits=1),
        "serve_rss_mib": max(rss),
    }
    reference = {
        "what": "python -c pass, the same interpreter, the same run",
        "interpreter_s": summary(interpreter),
    }
    config = {
        **asdict(size),
        "help_command": " ".join(Path(c).name for c in twinchat_command()) + " --help",
        "serve_command": "python -m twinchat.cli serve --host 127.0.0.1 --port PORT (an empty TWINCHAT_HOME)",
        "settings": settings_config(settings),
    }
    notes = [
        "serve_api: from starting the process to /healthz answering 200; serve_ui: to /studio/ answering 200",
        "the server loads neither the embedder nor the LLM before its first request that needs them",
    ]
    return Measured(figures, reference, config, notes)


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
