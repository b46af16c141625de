"""The data-quality report of one import: what was read, stored, already there, skipped on purpose and
rejected (by reason, with where to look), which customers it touched and how their identifiers were stitched."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinchat.importers.mapping import MappedImport
    from twinchat.services import IngestReport

REPORT_FORMAT = "twinchat-import-report/1"
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+(\.\d+)?")
EXAMPLES_PER_REASON = 3


def quality_report(
    importer: MappedImport,
    ingest: IngestReport,
    ids: Mapping[str, Sequence[tuple[str, str]]],
    *,
    panel: str | None,
    started: datetime,
    seconds: float,
) -> dict[str, Any]:
    """``ids``: the identifiers recorded for the twins the import touched (kind, value)."""
    resolution = importer.resolution
    stored_twins = ingest.twins_touched
    kinds = Counter(kind for pairs in ids.values() for kind, _ in pairs)
    return {
        "format": REPORT_FORMAT,
        "mapping": {"name": importer.mapping.name, "file": importer.mapping.path},
        "files": [_describe(Path(p)) for p in importer.paths],
        "identity_map": None if importer.identity_map is None else _describe(importer.identity_map),
        "panel": panel,
        "started_at": started.astimezone(UTC).isoformat(),
        "seconds": round(seconds, 2),
        "rows": {
            "read": importer.rows_read,
            "skipped": dict(importer.skipped.most_common()),
        },
        "events": {
            "stored": ingest.stored,
            "duplicates": ingest.duplicates,
            "rejected": len(ingest.rejected),
        },
        "rejected_by_reason": rejected_by_reason(ingest),
        "customers": {
            "touched": len(stored_twins),
            "new": len(ingest.new_twins),
            "existing": len(stored_twins - ingest.new_twins),
        },
        "identifiers": {
            "twins_with_identifiers": len(ids),
            "by_kind": dict(sorted(kinds.items())),
            "stitched_twins": sum(1 for pairs in ids.values() if len(pairs) > 1),
            "conflicting_identifiers": len(resolution.conflicts),
        },
        "unreadable": ingest.unreadable,
        "exit_code": ingest.exit_code,
    }


def rejected_by_reason(ingest: IngestReport) -> list[dict[str, Any]]:
    """Rejections grouped by field and reason (values masked, so one bad column is one line), most first."""
    groups: dict[tuple[str, str], list[str]] = {}
    for problem in ingest.rejected:
        reason = _NUMBER.sub("N", _QUOTED.sub("'…'", problem.reason))
        place = f"line {problem.line}" if problem.line is not None else f"item {problem.item}"
        where = f"{problem.file}:{place}"
        groups.setdefault((problem.field, reason), []).append(where)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [
        {"field": f, "reason": r, "count": len(w), "examples": w[:EXAMPLES_PER_REASON]}
        for (f, r), w in ordered
    ]


def summary_lines(report: dict[str, Any]) -> list[str]:
    rows, events, customers, ids = (
        report["rows"],
        report["events"],
        report["customers"],
        report["identifiers"],
    )
    lines = [
        f"import {report['mapping']['name']}: read {rows['read']} rows in {report['seconds']}s; "
        f"events: {events['stored']} stored, {events['duplicates']} already stored, {events['rejected']} rejected",
        f"customers: {customers['touched']} touched ({customers['new']} new, {customers['existing']} existing)"
        + (f"; panel {report['panel']}" if report["panel"] else ""),
    ]
    for reason, n in rows["skipped"].items():
        lines.append(f"skipped {n} rows: {reason}")
    for group in report["rejected_by_reason"]:
        lines.append(
            f"rejected {group['count']}: {group['field']}: {group['reason']} (e.g. {', '.join(group['examples'])})"
        )
    if ids["by_kind"]:
        kinds = ", ".join(f"{k} {n}" for k, n in ids["by_kind"].items())
        lines.append(
            f"identifiers: {kinds}; {ids['stitched_twins']} twins under several identifiers, "
            f"{ids['conflicting_identifiers']} identifiers in conflict"
        )
    return lines


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
