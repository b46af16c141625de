"""``report.md``: one evaluation's results for a reader, from what ``results.json`` holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_report(path: Path, result: Mapping[str, Any]) -> None:
    path.write_text(markdown(result), encoding="utf-8")


def markdown(result: Mapping[str, Any]) -> str:
    lines = [
        f"# {result['title']}",
        "",
        f"`twinchat eval {result['evaluator']}`, version {result['version']}; protocol: {result['protocol']}.",
        "",
        "| run | |",
        "|---|---|",
        f"| date | {result['date']} |",
        f"| machine | {result['machine']} |",
        f"| code | {result['code']} |",
        f"| LLM | `{result['models']['llm']}` |",
        f"| embedder | `{result['models']['embedder']}` |",
        f"| options | {_options(result['options'])} |",
        f"| seconds | {result['seconds']} |",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    flat = dict(flatten(result["summary"]))
    headline = [k for k in result.get("headline", []) if k in flat]
    for key in [*headline, *(k for k in flat if k not in headline)]:
        lines.append(f"| {'**' + key + '**' if key in headline else key} | {_value(flat[key])} |")
    for figure in result.get("figures", []):
        lines += ["", f"### {figure['title']}", "", f"![{figure['title']}]({figure['file']})"]
        if figure.get("caption"):
            lines += ["", figure["caption"]]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    lines += ["", "## Metric failures", ""]
    if result.get("failures"):
        lines += [
            f"- `{f['metric']}`: {f['reason']}"
            + "".join(f"; {k} {v}" for k, v in f.items() if k not in ("metric", "reason"))
            for f in result["failures"]
        ]
    else:
        lines.append("None: every metric was computed for every case.")
    lines += ["", "Per-case rows: `results.csv`; everything above as JSON: `results.json`.", ""]
    return "\n".join(lines)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested figures as dotted keys; lists of records are left out of the table (they are in the JSON)."""
    if isinstance(value, Mapping):
        if set(value) >= {"share", "count", "of"}:
            return [(prefix, value)]
        out: list[tuple[str, Any]] = []
        for key, inner in value.items():
            out += flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return []
    return [(prefix, value)]


def _value(value: Any) -> str:
    if isinstance(value, Mapping) and "share" in value:
        share = "n/a" if value["share"] is None else f"{value['share']:.3f}"
        return f"{share} ({value['count']}/{value['of']})"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "n/a"
    return str(value).replace("|", "\\|")


def _options(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
