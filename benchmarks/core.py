"""What every benchmark shares: the results file, the machine and its load, latency figures, memory and disk.

A benchmark module's ``run`` returns a :class:`Measured`; :func:`measure` waits for a quiet machine, runs it and
writes the results file around it::

    {"format", "benchmark", "version", "quick", "when", "commit", "twinchat", "machine", "seconds",
     "config", "reference", "figures", "notes"}
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from evals.bench_api import commit, machine, percentile
from evals.core import check_finite

FORMAT = "twinchat-bench/1"
# Above this 1-minute load average (2 cores) other work would be measured too: wait for it to pass.
QUIET_LOAD = 1.5
QUIET_WAIT_S = 600.0
QUIET_POLL_S = 60.0
T = TypeVar("T")


@dataclass
class Measured:
    """A benchmark's outcome: what was measured, against what reference, under which configuration."""

    figures: dict[str, Any]
    reference: dict[str, Any]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def load_module(name: str) -> ModuleType:
    from benchmarks import BENCHMARKS

    if name not in BENCHMARKS:
        raise ValueError(f"no benchmark {name!r}: use one of {', '.join(BENCHMARKS)}")
    return import_module(BENCHMARKS[name])


def measure(name: str, out: Path, *, quick: bool = False, wait: bool = True, progress: bool = True) -> dict:
    """Run one benchmark at its full (or quick) size and write its results file; the results."""
    module = load_module(name)
    waited, load_before = wait_until_quiet() if wait else (0.0, load_average())
    started = time.perf_counter()
    measured: Measured = module.run(module.QUICK if quick else module.FULL, progress=progress)
    seconds = time.perf_counter() - started
    results = {
        "format": FORMAT,
        "benchmark": module.NAME,
        "version": module.VERSION,
        "quick": quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "twinchat": _version(),
        "machine": {
            **machine(),
            "load_average_before": load_before,  # 1, 5, 15 minutes
            "load_average_after": load_average(),
            "waited_for_quiet_s": round(waited),
        },
        "seconds": round(seconds, 1),
        "config": measured.config,
        "reference": measured.reference,
        "figures": measured.figures,
        "notes": measured.notes,
    }
    check_finite(results["figures"], "figures")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures a person reads first: the module's HEADLINE paths into the figures (or those its
    ``headline_paths(figures)`` names), with their values.

    >>> headline({"benchmark": "startup", "figures": {"help_s": {"p50": 0.5}}})["help_s.p50"]
    0.5
    """
    module = load_module(results["benchmark"])
    paths = (
        module.headline_paths(results["figures"]) if hasattr(module, "headline_paths") else module.HEADLINE
    )
    found = {}
    for path in paths:
        value: Any = results["figures"]
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[path] = value
    return found


def _version() -> str:
    from twinchat import __version__

    return __version__


# --- the machine ------------------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def wait_until_quiet(
    *,
    limit: float = QUIET_LOAD,
    wait_s: float = QUIET_WAIT_S,
    poll_s: float = QUIET_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    read: Callable[[], list[float] | None] = load_average,
) -> tuple[float, list[float] | None]:
    """Wait (up to ``wait_s``) for the 1-minute load average to drop to ``limit``: the seconds waited and the
    load average measured at the end, which the results record either way."""
    waited = 0.0
    load = read()
    while load is not None and load[0] > limit and waited < wait_s:
        print(f"load average {load[0]:.2f} above {limit}: waiting {poll_s:.0f} s ...", file=sys.stderr)
        sleep(poll_s)
        waited += poll_s
        load = read()
    return waited, load


def rss_mib() -> float:
    """This process's resident memory now (Linux; the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return peak_rss_mib()


def cpu_seconds() -> float:
    """The CPU time this process has used so far, every thread's, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live thread of this process by id: its name and the CPU-seconds it has used, user and system (Linux;
    empty elsewhere). Python's threads go by their Python names, native ones (Chroma's Rust runtime and SQLite
    workers, ONNX Runtime's pools) by the names the OS knows them by."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    try:
        tasks, tick = os.listdir("/proc/self/task"), os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return {}
    threads: dict[int, tuple[str, float]] = {}
    for task in tasks:
        try:
            stat = Path(f"/proc/self/task/{task}/stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        # "tid (name) state ...": the name may hold spaces; utime and stime are the 14th and 15th fields.
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(int(task), stat[stat.index("(") + 1 : stat.rindex(")")])
        threads[int(task)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return threads


def cpu_by_thread(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], process_s: float
) -> dict[str, float]:
    """The CPU-seconds each group of threads used between two :func:`thread_cpu` snapshots, largest first: a
    pool's threads (``name_0``, ``name_1``) as one; ``ended threads`` what threads that ended before ``after``
    used, the rest of the process's ``process_s``.

    >>> cpu_by_thread({1: ("MainThread", 1.0)}, {1: ("MainThread", 3.0), 7: ("pool_0", 2.5), 8: ("pool_1", 2.0)}, 8.0)
    {'pool': 4.5, 'MainThread': 2.0, 'ended threads': 1.5}
    """
    groups: dict[str, float] = {}
    for thread, (name, seconds) in after.items():
        group = re.sub(r"_\d+$", "", name)
        groups[group] = groups.get(group, 0.0) + seconds - before.get(thread, (name, 0.0))[1]
    if after:
        groups["ended threads"] = max(0.0, process_s - sum(groups.values()))
    return {name: round(s, 2) for name, s in sorted(groups.items(), key=lambda g: -g[1]) if round(s, 2) > 0}


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024**2 if sys.platform == "darwin" else 1024), 1)


def disk_mib(path: Path) -> float:
    """The bytes of the file ``path``, or of the files under it (apparent size), in MiB; 0 when absent."""
    if path.is_file():
        return round(path.stat().st_size / 1024**2, 2)
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return round(total / 1024**2, 2)


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh process (spawned, not forked): its memory is its own, and nothing this
    process loaded (a model, a Chroma client holding a store) is shared with it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as child:
        return child.submit(function, *args).result()


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"twinchat-bench-{prefix}-") as folder:
        yield Path(folder)


# --- figures ----------------------------------------------------------------------------------------------


def summary(values: Sequence[float], *, scale: float = 1.0, digits: int = 3) -> dict[str, float | int | None]:
    """n, p50, p95, min, max and mean of ``values`` times ``scale`` (None for each when there are none).

    >>> summary([3.0, 1.0, 2.0])
    {'n': 3, 'p50': 2.0, 'p95': 2.9, 'min': 1.0, 'max': 3.0, 'mean': 2.0}
    """
    figures = {
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }
    return {
        "n": len(values),
        **{k: None if v is None else round(v * scale, digits) for k, v in figures.items()},
    }


def latency_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """:func:`summary` of durations given in seconds, in milliseconds.

    >>> latency_ms([0.001, 0.002, 0.003, 0.004, 0.1])
    {'n': 5, 'p50': 3.0, 'p95': 80.8, 'min': 1.0, 'max': 100.0, 'mean': 22.0}
    """
    return summary(seconds, scale=1000)


def ratio(value: float | None, reference: float | None, *, digits: int = 3) -> float | None:
    """value / reference, or None when either is missing or the reference is not positive.

    >>> ratio(450.0, 500.0)
    0.9
    """
    if value is None or reference is None or reference <= 0:
        return None
    return round(value / reference, digits)


def share(part: float, whole: float, *, digits: int = 4) -> float | None:
    """The fraction of ``whole`` that ``part`` is, or None for an empty whole.

    >>> share(1.0, 8.0)
    0.125
    """
    return round(part / whole, digits) if whole > 0 else None


def per_second(count: float, seconds: float, *, digits: int = 2) -> float | None:
    return round(count / seconds, digits) if seconds > 0 else None


class Stopwatch:
    """Seconds spent inside ``with watch:`` blocks, added up, how many there were, and (``items``) what they
    handled, where the caller counts it. Blocks may run on several threads at once: ``main_seconds`` is the
    part spent on the main thread (what the others overlapped with)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.main_seconds = 0.0
        self.calls = 0
        self.items = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def __enter__(self) -> Stopwatch:
        self._local.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        spent = time.perf_counter() - self._local.started
        with self._lock:
            self.seconds += spent
            if threading.current_thread() is threading.main_thread():
                self.main_seconds += spent
            self.calls += 1

    def add(self, seconds: float) -> None:
        """Time spent elsewhere than in a ``with watch:`` block (a future's, off the main thread)."""
        with self._lock:
            self.seconds += seconds
            self.calls += 1

    def count(self, items: int) -> None:
        with self._lock:
            self.items += items

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` with its calls timed by this stopwatch."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return timed


def bench_settings(home: Path, **overrides: Any) -> Any:
    """The environment's Settings (TWINCHAT_*), with its data in ``home``: a benchmark never touches the user's
    twins. The store is the embedded default there, unless TWINCHAT_STORE names another."""
    from twinchat.config import Settings

    return Settings().model_copy(update={"home": home, **overrides})


def settings_config(settings: Any) -> dict[str, Any]:
    """The settings that shape the figures, for the results' configuration."""
    store = settings.store_spec
    return {
        "llm": settings.llm,
        "embedder": settings.embedder,
        "embedder_backend": settings.embedder_backend,
        "store": "chroma (embedded, on disk)" if store.startswith("chroma:") else store,
        "registry": "sqlite" if settings.database_url.startswith("sqlite") else "sql",
        "batch_size": settings.batch_size,
        "top_k": settings.top_k,
        "retrieval_candidates": settings.retrieval_candidates,
        "max_answer_tokens": settings.max_answer_tokens,
        "context_tokens": settings.context_tokens,
    }


def online_retail_csv(settings: Any) -> Path:
    """The shared Online Retail sample (TWINCHAT_DATA_DIR), or an error saying where it was looked for."""
    path = Path(settings.data_dir) / "online_retail" / "online_retail_sample.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the Online Retail sample is not at {path}; set TWINCHAT_DATA_DIR")
    return path


def timed_embedder(embedder: Any, watch: Stopwatch) -> Any:
    """An Embedder that delegates to ``embedder``, timing its calls and counting (``items``) the texts."""
    from twinchat.ports import Embedder

    class Timed(Embedder):
        name = embedder.name
        free_from = 0.0  # when the texts started before are done: the encoder queues what it is given

        def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
            watch.count(len(texts))
            with watch:
                return embedder.embed_batch(texts)

        def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
            """Timed from when the encoder starts on them (the texts queued before done) until they are done."""
            watch.count(len(texts))
            started = time.perf_counter()
            encoding: Future[list[list[float]]] = embedder.start_batch(texts)

            def done(_: Future[list[list[float]]]) -> None:
                ended = time.perf_counter()
                watch.add(ended - max(started, Timed.free_from))
                Timed.free_from = ended

            encoding.add_done_callback(done)
            return encoding

    return Timed()
