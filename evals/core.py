"""The evaluation suite's frame: each evaluator is a small versioned class, run by ``twinchat eval NAME``.

An evaluator builds its twins with the code a user runs, asks them, and returns an :class:`Outcome`: the
headline figures, one row per scored case, its figures (PNG, drawn with :mod:`evals.plots`) and the metric
failures it met. :func:`evaluate` writes them into one folder, always in the same shape::

    OUT/results.json   evaluator, version, options, machine, code, date, summary, failures
    OUT/results.csv    one row per case
    OUT/report.md      the summary as a table, the figures, the notes and failures
    OUT/*.png          the figures

A metric that cannot be computed is a failure with its reason, listed in ``results.json`` and the report;
no figure is ever a silent NaN (``summary`` values that are not finite are rejected).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from twinchat.config import Settings


@dataclass(frozen=True)
class Figure:
    """A PNG the evaluator drew into the output folder, and what it shows."""

    file: str
    title: str
    caption: str = ""


@dataclass
class Outcome:
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    headline: Sequence[str] = ()  # summary keys shown first in the report's table and printed by the CLI


class Evaluator(ABC):
    """One evaluation. Subclasses name themselves, version their protocol and say what ``--quick`` runs."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump on any change to the protocol or scoring, so results are never mixed
    title: ClassVar[str]
    protocol: ClassVar[str]  # where the protocol is written down, for the report

    def __init__(self, **options: Any) -> None:
        self.options = options

    @classmethod  # noqa: B027 (an optional hook: most evaluators have options, some need none)
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The evaluator's own command-line options (``--seed`` and ``--quick`` are everyone's)."""

    @classmethod
    def quick_options(cls) -> dict[str, Any]:
        """Options of the small run CI makes: minutes on two cores with the local model."""
        return {}

    @abstractmethod
    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome: ...


def evaluate(
    evaluator: Evaluator, out: Path, settings: Settings | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run ``evaluator``, write its results folder, return what ``results.json`` holds."""
    from evals.report import write_report
    from twinchat.config import Settings

    settings = settings or Settings()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    when = datetime.now(UTC)
    outcome = evaluator.run(out, settings, progress=progress)
    check_finite(outcome.summary)
    result = {
        "evaluator": evaluator.name,
        "version": evaluator.version,
        "title": evaluator.title,
        "protocol": evaluator.protocol,
        "options": evaluator.options,
        "models": {"llm": settings.llm, "embedder": settings.embedder},
        "machine": machine(),
        "code": code_version(),
        "date": when.strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.perf_counter() - started, 1),
        "headline": list(outcome.headline),
        "summary": outcome.summary,
        "failures": outcome.failures,
        "notes": outcome.notes,
        "figures": [f.__dict__ for f in outcome.figures],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    write_rows(out / "results.csv", outcome.rows)
    write_report(out / "report.md", result)
    return result


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV, the union of their keys as columns in first-seen order; nested values as JSON."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in row.items()}
            )


def failure(metric: str, reason: str, **where: Any) -> dict[str, Any]:
    """A metric that could not be computed, and why: reported, never a NaN in the figures."""
    return {"metric": metric, "reason": reason, **where}


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def machine() -> str:
    memory = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        pass
    return f"{os.cpu_count()} CPU cores{memory}, {platform.machine()}, {platform.system()}, no GPU used"


def code_version() -> str:
    """The commit measured, marked dirty when the library, prompts or evals differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "twinchat", "prompts", "evals/*.py"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{'+dirty' if dirty else ''}"


def check_finite(summary: Any, path: str = "summary") -> None:
    """Refuse a NaN or an infinity anywhere in figures (JSON has no place for them): report a failure instead.

    >>> check_finite({"a": [1.0, None]})
    """
    if isinstance(summary, float) and not math.isfinite(summary):
        raise ValueError(f"{path} is {summary}: report a failure with its reason instead of a NaN")
    if isinstance(summary, Mapping):
        for key, value in summary.items():
            check_finite(value, f"{path}.{key}")
    elif isinstance(summary, (list, tuple)):
        for i, value in enumerate(summary):
            check_finite(value, f"{path}[{i}]")


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r, or None where it is undefined (fewer than 3 pairs, or a constant side).

    >>> pearson([1, 2, 3], [2, 4, 7])
    0.9934
    >>> pearson([1, 1, 1], [1, 2, 3]) is None
    True
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"{n} values against {len(ys)}")
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy), 4)


def fisher_mean(correlations: Sequence[float]) -> float | None:
    """Correlations averaged through Fisher's z (r clipped to ±0.9999 so z stays finite).

    >>> fisher_mean([0.5, 0.5])
    0.5
    >>> fisher_mean([0.9, 0.1])
    0.6563
    """
    if not correlations:
        return None
    z = [math.atanh(max(-0.9999, min(0.9999, r))) for r in correlations]
    return round(math.tanh(sum(z) / len(z)), 4)
