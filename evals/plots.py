"""The report figures, drawn with matplotlib (Agg: no display). Each function writes one PNG and returns nothing.

The shapes every evaluator shares: bars of a score against the human ceiling and the baselines, per-item
scores, a reliability diagram of predicted probabilities, and the twins' answer distributions beside the
people's. :func:`calibration` is the reliability diagram's arithmetic, kept apart so it can be tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)

TWINS, PEOPLE, OTHER = "#1f77b4", "#7f7f7f", "#ff7f0e"


def bars(
    path: Path,
    values: Mapping[str, float | None],
    *,
    title: str,
    ylabel: str,
    ceiling: float | None = None,
    ceiling_label: str = "human ceiling",
    ylim: tuple[float, float] | None = (0.0, 1.0),
) -> None:
    """One bar per label (the first, the twins, in the twins' colour); a dashed line at the ceiling."""
    labels = [k for k, v in values.items() if v is not None]
    heights = [float(values[k]) for k in labels]  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 1.5), 3.6))
    colours = [TWINS] + [PEOPLE] * (len(labels) - 1)
    drawn = ax.bar(labels, heights, color=colours)
    ax.bar_label(drawn, fmt="%.3f", fontsize=8)
    if ceiling is not None:
        ax.axhline(
            ceiling, color="black", linestyle="--", linewidth=1, label=f"{ceiling_label} {ceiling:.3f}"
        )
        ax.legend(loc="lower right", fontsize=8)
    _finish(fig, ax, path, title=title, ylabel=ylabel, ylim=ylim, rotate=len(labels) > 4)


def grouped_bars(
    path: Path,
    groups: Mapping[str, Mapping[str, float | None]],
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = (0.0, 1.0),
) -> None:
    """Bars per group (a study, a style), one colour per series (twins, published twins, baseline)."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(1, len(series)) / 2 + 2), 3.8))
    colours = [TWINS, OTHER, PEOPLE, "#2ca02c", "#9467bd"]
    for i, name in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        ys = [g.get(name) for g in groups.values()]
        ax.bar(
            [x for x, y in zip(xs, ys, strict=True) if y is not None],
            [y for y in ys if y is not None],
            width,
            label=name,
            color=colours[i % len(colours)],
        )
    ax.set_xticks(range(len(groups)), list(groups))
    ax.legend(fontsize=8)
    _finish(fig, ax, path, title=title, ylabel=ylabel, ylim=ylim, rotate=True)


def per_item(
    path: Path,
    values: Mapping[str, float],
    *,
    title: str,
    xlabel: str,
    reference: Mapping[str, float] | None = None,
    reference_label: str = "human ceiling",
    limit: int = 40,
) -> None:
    """Horizontal bars, one per item, best first (the ``limit`` best and worst when there are more)."""
    ordered = sorted(values.items(), key=lambda kv: -kv[1])
    if len(ordered) > limit:
        ordered = ordered[: limit // 2] + ordered[-(limit // 2) :]
    names = [k for k, _ in ordered][::-1]
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.22 * len(names) + 1.2)))
    ax.barh(names, [values[k] for k in names], color=TWINS, label="twins")
    if reference:
        ax.scatter(
            [reference[k] for k in names if k in reference],
            [k for k in names if k in reference],
            color="black",
            marker="|",
            s=120,
            label=reference_label,
            zorder=3,
        )
        ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def calibration(
    confidences: Sequence[float], hits: Sequence[bool], bins: int = 10
) -> tuple[list[dict[str, Any]], float]:
    """Equal-width bins of stated probability: per bin its count, mean confidence and observed frequency;
    and the expected calibration error (the count-weighted mean gap)."""
    if len(confidences) != len(hits):
        raise ValueError(f"{len(confidences)} confidences but {len(hits)} outcomes")
    table = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            (c, h)
            for c, h in zip(confidences, hits, strict=True)
            if low <= c < high or (b == bins - 1 and c == 1)
        ]
        if members:
            table.append(
                {
                    "low": low,
                    "high": high,
                    "count": len(members),
                    "confidence": sum(c for c, _ in members) / len(members),
                    "frequency": sum(h for _, h in members) / len(members),
                }
            )
    n = len(confidences)
    ece = sum(row["count"] * abs(row["confidence"] - row["frequency"]) for row in table) / n if n else 0.0
    return table, round(ece, 4)


def reliability(
    path: Path, confidences: Sequence[float], hits: Sequence[bool], *, title: str, bins: int = 10
) -> float:
    """Reliability diagram: observed frequency against stated probability per bin, bin sizes as labels.
    Returns the expected calibration error it shows."""
    table, ece = calibration(confidences, hits, bins)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
    xs = [row["confidence"] for row in table]
    ys = [row["frequency"] for row in table]
    ax.plot(xs, ys, marker="o", color=TWINS, label=f"twins (ECE {ece:.3f})")
    for row in table:
        ax.annotate(
            str(row["count"]),
            (row["confidence"], row["frequency"]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("stated probability")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ece


def distributions(
    path: Path,
    items: Mapping[str, tuple[Sequence[str], Mapping[str, int], Mapping[str, int]]],
    *,
    title: str,
    labels: tuple[str, str] = ("twins", "people"),
    limit: int = 9,
) -> None:
    """Small multiples: per item, the share of each option among the twins' answers and the people's."""
    names = list(items)[:limit]
    cols = min(3, len(names)) or 1
    rows = (len(names) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        options, twins, people = items[name]
        nt, np_ = sum(twins.values()) or 1, sum(people.values()) or 1
        xs = range(len(options))
        ax.bar(
            [x - 0.2 for x in xs], [twins.get(o, 0) / nt for o in options], 0.4, color=TWINS, label=labels[0]
        )
        ax.bar(
            [x + 0.2 for x in xs],
            [people.get(o, 0) / np_ for o in options],
            0.4,
            color=PEOPLE,
            label=labels[1],
        )
        ax.set_xticks(list(xs), [_short(o) for o in options], fontsize=6, rotation=30, ha="right")
        ax.set_title(_short(name, 40), fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="y", labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = True,
) -> None:
    """Points per series (x: the people, y: the twins), with the diagonal where they would agree."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    colours = [TWINS, OTHER, PEOPLE]
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.scatter(xs, ys, s=14, alpha=0.7, color=colours[i % len(colours)], label=name)
    if diagonal:
        lo = min([0.0, *(v for xs, ys in series.values() for v in (*xs, *ys))])
        hi = max([1.0, *(v for xs, ys in series.values() for v in (*xs, *ys))])
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finish(fig: Any, ax: Any, path: Path, *, title: str, ylabel: str, ylim: Any, rotate: bool) -> None:
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if rotate:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(text: str, n: int = 18) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
