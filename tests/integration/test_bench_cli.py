"""Each benchmark at its quick size, as `twinchat bench NAME --quick` runs it: the real embedder, Chroma, the
local LLM. The results file has its shape and its figures are finite; timings are reported, never asserted."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import BENCHMARKS
from benchmarks.core import FORMAT
from tests.integration.conftest import PYTHON, ROOT

pytestmark = pytest.mark.slow
DELTAS = ("growth", "rss_per_open_twin")


def numbers(figures: Any, path: str = "") -> list[tuple[str, float]]:
    if isinstance(figures, bool):
        return []
    if isinstance(figures, int | float):
        return [(path, figures)]
    if isinstance(figures, dict):
        return [n for k, v in figures.items() for n in numbers(v, f"{path}.{k}")]
    if isinstance(figures, list):
        return [n for i, v in enumerate(figures) for n in numbers(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_a_quick_benchmark_writes_finite_figures_with_their_context(
    name: str, tmp_path: Path, shared_data: Path
) -> None:
    out = tmp_path / f"{name}.json"
    log = tmp_path / "netguard.log"
    env = {
        **os.environ,
        "TWINCHAT_NETGUARD_LOG": str(log),  # the benchmark and its child processes stay offline
        "PYTHONPATH": str(ROOT / "tests" / "support" / "site"),
        "TWINCHAT_DATA_DIR": str(shared_data),
    }
    command = [PYTHON, "-m", "twinchat.cli", "bench", name, "--quick", "--no-wait", "--out", str(out)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["format"] == FORMAT and results["benchmark"] == name and results["quick"] is True
    context = {"when", "commit", "twinchat", "machine", "config", "reference", "notes"}
    assert set(results) >= {"figures", *context}
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["memory_gib"] > 0 and machine["cpu_model"]
    assert len(machine["load_average_before"]) == 3 and machine["waited_for_quiet_s"] == 0
    assert results["reference"], "a benchmark reports the reference it measured in the same run"
    for path, value in numbers(results["figures"]) + numbers(results["reference"]):
        # A change of memory may be negative (freed pages); every other figure is a size, a time or a rate.
        assert math.isfinite(value) and (value >= 0 or any(d in path for d in DELTAS)), f"{path} = {value}"
    if name == "ingest":  # the default layout is measured twice at the quick size, its median run reported
        runs = results["figures"]["sharded"]["line"]["runs"]
        assert len(runs["ratio_to_encoder"]) == 2 and results["config"]["repeats"] == 2
        assert results["figures"]["sharded"]["line"]["ratio_to_encoder"] == min(runs["ratio_to_encoder"])
        assert len(runs["store_bound_ratio"]) == 2
        for layout in ("per-twin", "sharded"):
            for per in ("line", "invoice"):
                figures = results["figures"][layout][per]
                bound = figures["store_bound"]  # the same events, written beside the raw encoder
                assert bound["events"] == figures["events"] and bound["writes_s"] <= bound["seconds"]
                cpu = figures["cpu"]  # a process uses at most its cores for its wall time
                assert cpu["cores"] >= 1 and 0 < cpu["encoder_alone_s"] and 0 < cpu["seconds"]
                assert figures["ratio_to_encoder"] <= cpu["ceiling_ratio"] + 0.01
    headline = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert headline, done.stdout
    for path, value in headline.items():
        assert value is not None and (value > 0 or any(d in path for d in DELTAS)), f"{path} = {value}"

    assert Path(f"{log}.active").exists(), "the network guard was not active in the child processes"
    assert not log.exists() or not log.read_text().strip(), f"network use beyond loopback: {log.read_text()}"
