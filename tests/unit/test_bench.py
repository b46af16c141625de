"""The benchmarks' arithmetic on fixtures with known answers; no model, no store, no timing asserted."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import BENCHMARKS
from benchmarks.core import (
    Stopwatch,
    check_finite,
    disk_mib,
    headline,
    latency_ms,
    load_module,
    per_second,
    ratio,
    share,
    summary,
    wait_until_quiet,
)
from twinchat.cli import main


def test_latency_figures_interpolate_between_ranks_in_milliseconds() -> None:
    # Ranks 0..4: p50 is the middle value, p95 sits 80 % of the way from 4 ms to 100 ms.
    figures = latency_ms([0.004, 0.001, 0.1, 0.003, 0.002])
    assert figures == {"n": 5, "p50": 3.0, "p95": 80.8, "min": 1.0, "max": 100.0, "mean": 22.0}
    assert latency_ms([0.25]) == {
        "n": 1,
        "p50": 250.0,
        "p95": 250.0,
        "min": 250.0,
        "max": 250.0,
        "mean": 250.0,
    }
    assert latency_ms([]) == {"n": 0, "p50": None, "p95": None, "min": None, "max": None, "mean": None}
    assert summary([2.0, 4.0], digits=1) == {
        "n": 2,
        "p50": 3.0,
        "p95": 3.9,
        "min": 2.0,
        "max": 4.0,
        "mean": 3.0,
    }


def test_ratios_shares_and_rates_refuse_an_empty_reference() -> None:
    assert ratio(450.0, 500.0) == 0.9
    assert ratio(1.0, 3.0, digits=2) == 0.33
    assert ratio(None, 2.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None
    assert share(1.0, 8.0) == 0.125 and share(1.0, 0.0) is None
    assert per_second(30, 2.0) == 15.0 and per_second(30, 0.0) is None


def test_figures_with_nan_or_infinity_are_refused_by_path() -> None:
    check_finite({"a": [1.0, {"b": 2}], "c": None})
    with pytest.raises(ValueError, match=r"figures\.a\[1\]\.b is nan"):
        check_finite({"a": [1.0, {"b": math.nan}]}, "figures")
    with pytest.raises(ValueError, match="inf"):
        check_finite({"x": math.inf})


def test_waiting_for_a_quiet_machine_polls_until_the_load_drops() -> None:
    loads = iter([[3.0, 2.0, 1.0], [2.0, 2.0, 1.0], [1.2, 1.9, 1.0]])
    slept: list[float] = []
    waited, load = wait_until_quiet(limit=1.5, poll_s=60, sleep=slept.append, read=lambda: next(loads))
    assert (waited, load, slept) == (120, [1.2, 1.9, 1.0], [60, 60])


def test_waiting_gives_up_after_its_limit_and_reports_the_load_it_saw() -> None:
    slept: list[float] = []
    waited, load = wait_until_quiet(
        limit=1.5, wait_s=180, poll_s=60, sleep=slept.append, read=lambda: [4.0, 4.0, 4.0]
    )
    assert (waited, load, len(slept)) == (180, [4.0, 4.0, 4.0], 3)


def test_a_stopwatch_adds_up_calls_and_passes_results_through() -> None:
    watch = Stopwatch()
    double = watch.wrap(lambda x: 2 * x)
    assert [double(1), double(2)] == [2, 4]
    assert watch.calls == 2 and watch.seconds >= 0


def test_disk_size_of_a_file_a_folder_and_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"\0" * 1024**2)
    (tmp_path / "y.bin").write_bytes(b"\0" * (1024**2 // 2))
    assert disk_mib(tmp_path) == 1.5
    assert disk_mib(tmp_path / "y.bin") == 0.5
    assert disk_mib(tmp_path / "absent") == 0


def test_every_benchmark_declares_its_sizes_and_headline() -> None:
    for name in BENCHMARKS:
        module = load_module(name)
        assert module.NAME == name and module.VERSION >= 1
        assert module.QUICK != module.FULL and callable(module.run)
        assert hasattr(module, "HEADLINE") or hasattr(module, "headline_paths")
    with pytest.raises(ValueError, match="no benchmark 'nope'"):
        load_module("nope")


def test_the_headline_picks_its_paths_out_of_the_figures() -> None:
    results = {
        "benchmark": "ingest",
        "figures": {
            "per-twin": {"line": {"events_per_s": 900.0, "ratio_to_encoder": 0.9, "peak_rss_mib": 800.0}}
        },
    }
    found = headline(results)
    assert found["per-twin.line.events_per_s"] == 900.0 and found["per-twin.line.peak_rss_mib"] == 800.0
    assert found["per-twin.invoice.events_per_s"] is None  # absent: shown as missing, not an error
    assert found["sharded.line.events_per_s"] is None


def test_retrieval_headline_follows_the_sizes_measured() -> None:
    from benchmarks.retrieval import headline_paths

    paths = headline_paths({"sizes": {"20": {}, "60": {}}})
    assert paths[:2] == ["sizes.20.first.p95", "sizes.20.repeat.p95"]
    assert paths[-1] == "sizes.60.rss_per_open_twin_mib"


def test_answer_groups_split_time_into_the_llm_and_the_rest() -> None:
    from benchmarks.answer import _group

    step = {"authorize": 0.01, "retrieve": 0.04, "profile": 0.01, "prompt": 0.02, "audit": 0.01}
    rows = [
        {"total": 2.0, "ttft": 0.5, "llm": 1.8, "llm_first": 0.4, **step, "other": 0.11},
        {"total": 4.0, "ttft": 1.0, "llm": 3.6, "llm_first": 0.9, **step, "other": 0.31},
    ]
    group = _group(rows)
    assert group["n"] == 2
    assert group["outside_llm_share"] == round(0.6 / 6.0, 4)
    assert group["outside_llm_ms"]["p50"] == 300.0
    assert group["parts_ms_mean"]["retrieve"] == 40.0 and group["parts_ms_mean"]["other"] == 210.0
    assert _group([]) == {"n": 0}


def test_ingest_reads_the_first_rows_of_a_file(tmp_path: Path) -> None:
    from benchmarks.ingest import _first_rows

    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n3,4\n5,6\n")
    (tmp_path / "out").mkdir()
    part = _first_rows(source, 2, tmp_path / "out")
    assert part.read_text().splitlines() == ["a,b", "1,2", "3,4"]
    assert _first_rows(source, None, tmp_path) == source


def test_ingest_reports_the_median_run_of_several() -> None:
    from benchmarks.ingest import median_run

    def run(ratio: float) -> tuple[dict[str, Any], dict[str, Any]]:
        bound = {"ratio_to_encoder": ratio / 2}
        return {"sentences_per_s": 100.0 * ratio}, {
            "ratio_to_encoder": ratio,
            "events_per_s": 10.0 * ratio,
            "cpu": {"ceiling_ratio": ratio + 0.25},
            "store_bound": bound,
        }

    reference, figures = median_run([run(0.9), run(0.7)])  # an even count: the lower middle
    assert figures["ratio_to_encoder"] == 0.7 and reference["sentences_per_s"] == 70.0
    assert figures["runs"] == {
        "ratio_to_encoder": [0.9, 0.7],
        "events_per_s": [9.0, 7.0],
        "sentences_per_s": [90.0, 70.0],
        "cpu_ceiling_ratio": [1.15, 0.95],
        "store_bound_ratio": [0.45, 0.35],
    }
    assert median_run([run(0.8)]) == run(0.8)  # one run: its figures as they are, no "runs"


def test_bench_all_runs_each_benchmark_in_its_own_process(monkeypatch, tmp_path: Path) -> None:
    commands: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert main(["bench", "all", "--quick", "--no-wait", "--out", str(tmp_path)]) == 0
    assert [c[c.index("bench") + 1] for c in commands] == list(BENCHMARKS)
    for command, name in zip(commands, BENCHMARKS, strict=True):
        assert command[command.index("--out") + 1] == str(tmp_path / f"{name}-quick.json")
        assert "--quick" in command and "--no-wait" in command


def test_a_results_file_is_plain_json(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import core

    class Fake:
        NAME, VERSION, HEADLINE = "fake", 1, ("x",)
        QUICK, FULL = "quick", "full"

        @staticmethod
        def run(size: str, *, progress: bool) -> core.Measured:
            return core.Measured({"x": 1.5, "size": size}, {"what": "nothing"}, {"size": size})

    monkeypatch.setattr(core, "load_module", lambda name: Fake)
    out = tmp_path / "r" / "fake.json"
    results = core.measure("fake", out, quick=True, wait=False)
    assert json.loads(out.read_text()) == results
    assert results["format"] == core.FORMAT and results["quick"] is True
    assert results["figures"] == {"x": 1.5, "size": "quick"}
    assert {"cpu_count", "cpu_model", "memory_gib", "load_average_before"} <= set(results["machine"])
    assert core.headline(results) == {"x": 1.5}
