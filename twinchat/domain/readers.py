"""Read history files (JSONL, CSV, JSON array) as a stream of numbered raw records.

Readers only parse; validation is Event.from_record's job. A record that cannot even be parsed (a broken
JSON line) comes out as a RowProblem, so one bad line never hides the good ones around it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "csv", "json")


class UnreadableInput(Exception):
    """The whole input cannot be read (missing, wrong format, not text)."""


@dataclass(frozen=True)
class RowProblem:
    """Why one row of one file was not stored."""

    file: str
    line: int | None  # 1-based line in the file; None where the format has no lines (a JSON array item)
    field: str
    reason: str
    item: int | None = None  # 0-based item index for JSON arrays

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"item {self.item}"
        return f"{self.file}:{where}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class RawRecord:
    file: str
    line: int | None
    record: dict[str, Any]
    item: int | None = None


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return "csv"
    if suffix == "json":
        return "json"
    raise UnreadableInput(f"{path}: cannot tell the format from '{path.suffix}'; use .jsonl, .csv or .json")


def count_rows(path: Path) -> int | None:
    """A cheap row count for progress bars (lines for JSONL/CSV); None for JSON arrays."""
    if detect_format(path) == "json":
        return None
    with path.open("rb") as handle:
        lines = sum(1 for _ in handle)
    return max(lines - 1, 0) if detect_format(path) == "csv" else lines


def read_records(path: Path) -> Iterator[RawRecord | RowProblem]:
    """Yield every record of the file in order; raise UnreadableInput when the file as a whole is unusable."""
    if not path.exists():
        raise UnreadableInput(f"{path}: no such file")
    if not path.is_file():
        raise UnreadableInput(f"{path}: not a file")
    fmt = detect_format(path)
    try:
        if fmt == "jsonl":
            yield from read_jsonl(path)
        elif fmt == "csv":
            yield from _read_csv(path)
        else:
            yield from _read_json_array(path)
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_jsonl(path: Path) -> Iterator[RawRecord | RowProblem]:
    """One record per JSON line; a line that is not a JSON object is a RowProblem, the rest still come."""
    name = str(path)
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowProblem(name, line_no, "record", f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(record, dict):
                yield RowProblem(
                    name, line_no, "record", f"expected a JSON object, got {type(record).__name__}"
                )
                continue
            yield RawRecord(name, line_no, record)


def _read_csv(path: Path) -> Iterator[RawRecord | RowProblem]:
    name = str(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames:
            raise UnreadableInput(f"{path}: empty CSV, expected a header row with customer_id and text")
        missing = {"customer_id", "text"} - {f.strip() for f in reader.fieldnames if f}
        if missing:
            raise UnreadableInput(
                f"{path}: CSV header lacks {', '.join(sorted(missing))}; it has {', '.join(reader.fieldnames)}"
            )
        for row in reader:
            # reader.line_num is the physical line the row ended on, which stays right for quoted newlines.
            if None in row:
                yield RowProblem(name, reader.line_num, "record", "more values than header columns")
                continue
            yield RawRecord(name, reader.line_num, {k.strip(): v for k, v in row.items() if k})


def _read_json_array(path: Path) -> Iterator[RawRecord | RowProblem]:
    name = str(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise UnreadableInput(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, list):
        raise UnreadableInput(f"{path}: expected a JSON array of events, got a JSON {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            yield RowProblem(
                name, None, "record", f"expected a JSON object, got {type(record).__name__}", index
            )
            continue
        yield RawRecord(name, None, record, index)
