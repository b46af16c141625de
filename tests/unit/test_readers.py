"""Readers: JSONL, CSV/TSV and JSON arrays as numbered records; bad rows are RowProblems, bad files raise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinchat.domain.events import Event
from twinchat.domain.readers import (
    RawRecord,
    RowProblem,
    UnreadableInput,
    count_rows,
    detect_format,
    read_records,
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def records(path: Path) -> list[RawRecord]:
    items = list(read_records(path))
    assert all(isinstance(i, RawRecord) for i in items), items
    return items  # type: ignore[return-value]


def problems(items: list[RawRecord | RowProblem]) -> list[RowProblem]:
    return [i for i in items if isinstance(i, RowProblem)]


# --- JSONL ------------------------------------------------------------------------------------------------


def test_jsonl_records_carry_their_line_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.jsonl",
        '{"customer_id": "c1", "text": "a"}\n\n   \n{"customer_id": "c2", "text": "b"}\n\n',
    )
    out = records(path)
    assert [(r.line, r.record["customer_id"]) for r in out] == [(1, "c1"), (4, "c2")]
    assert all(r.file == str(path) and r.item is None for r in out)


def test_jsonl_invalid_line_is_a_row_problem_and_the_good_lines_survive(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.jsonl",
        '{"customer_id": "c1", "text": "a"}\n'
        "\n"
        '{"customer_id": "c2", "text": "b"\n'  # unterminated object, line 3
        '{"customer_id": "c3", "text": "c"}\n',
    )
    items = list(read_records(path))
    assert [type(i) for i in items] == [RawRecord, RowProblem, RawRecord]
    (problem,) = problems(items)
    assert problem.file == str(path)
    assert problem.line == 3
    assert problem.field == "record"
    assert "invalid JSON" in problem.reason
    assert str(problem) == f"{path}:line 3: record: {problem.reason}"
    assert items[2].line == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "type_name"), [("[1, 2]", "list"), ('"text"', "str"), ("42", "int"), ("null", "NoneType")]
)
def test_jsonl_non_object_line_is_a_row_problem(tmp_path: Path, value: str, type_name: str) -> None:
    path = write(tmp_path / "h.ndjson", '{"customer_id": "c1", "text": "a"}\n' + value + "\n")
    items = list(read_records(path))
    (problem,) = problems(items)
    assert (problem.line, problem.field) == (2, "record")
    assert type_name in problem.reason


def test_jsonl_windows_line_endings_and_bom(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.jsonl",
        '\ufeff{"customer_id": "c1", "text": "a"}\r\n{"customer_id": "c2", "text": "b"}\r\n',
    )
    out = records(path)
    assert [r.record["customer_id"] for r in out] == ["c1", "c2"]
    assert [r.line for r in out] == [1, 2]


# --- CSV ----------------------------------------------------------------------------------------------------


def test_csv_rows_become_records_numbered_by_physical_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.csv", "customer_id,text,source\nc1,Bought mugs,purchase\n\nc2,Called support,crm\n"
    )
    out = records(path)
    assert [r.line for r in out] == [2, 4]
    assert out[0].record == {"customer_id": "c1", "text": "Bought mugs", "source": "purchase"}
    assert Event.from_record(out[1].record).source == "crm"


def test_csv_quoted_newline_keeps_later_line_numbers_right(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.csv",
        'customer_id,text\nc1,"first line\nsecond line"\nc2,after the multi-line row\nc3,"x"\n',
    )
    out = records(path)
    assert out[0].record["text"] == "first line\nsecond line"
    # The multi-line row occupies physical lines 2-3 and is reported at the line it ends on.
    assert out[0].line == 3
    assert [(r.record["customer_id"], r.line) for r in out[1:]] == [("c2", 4), ("c3", 5)]


def test_csv_row_with_too_many_values_is_a_row_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "customer_id,text\nc1,ok\nc2,a,b\nc3,fine\n")
    items = list(read_records(path))
    assert [type(i) for i in items] == [RawRecord, RowProblem, RawRecord]
    (problem,) = problems(items)
    assert (problem.file, problem.line, problem.field) == (str(path), 3, "record")
    assert "more values" in problem.reason


def test_csv_row_with_too_few_values_fails_validation_not_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "customer_id,text\nc1\n")
    (raw,) = records(path)
    assert raw.record == {"customer_id": "c1", "text": None}
    with pytest.raises(ValueError, match="text"):
        Event.from_record(raw.record)


@pytest.mark.parametrize(
    ("header", "missing"),
    [("customer_id,body", "text"), ("id,text", "customer_id"), ("a,b", "customer_id, text")],
)
def test_csv_header_must_name_customer_id_and_text(tmp_path: Path, header: str, missing: str) -> None:
    path = write(tmp_path / "h.csv", f"{header}\nx,y\n")
    with pytest.raises(UnreadableInput) as info:
        list(read_records(path))
    assert f"lacks {missing};" in str(info.value)
    assert str(path) in str(info.value)


def test_empty_csv_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput, match="empty CSV"):
        list(read_records(write(tmp_path / "h.csv", "")))


def test_csv_bom_and_padded_header_names_are_handled(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "\ufeff customer_id , text \r\nc1,Bought mugs\r\n")
    (raw,) = records(path)
    assert raw.record == {"customer_id": "c1", "text": "Bought mugs"}
    assert raw.line == 2


def test_tsv_is_tab_separated(tmp_path: Path) -> None:
    path = write(tmp_path / "h.tsv", "customer_id\ttext\nc1\tBought mugs, plates and cups\n")
    (raw,) = records(path)
    assert raw.record == {"customer_id": "c1", "text": "Bought mugs, plates and cups"}


# --- JSON array --------------------------------------------------------------------------------------------


def test_json_array_items_are_numbered_by_index(tmp_path: Path) -> None:
    data = [{"customer_id": "c1", "text": "a"}, "not an object", {"customer_id": "c2", "text": "b"}]
    path = write(tmp_path / "h.json", json.dumps(data, indent=2))
    items = list(read_records(path))
    assert [type(i) for i in items] == [RawRecord, RowProblem, RawRecord]
    assert [(i.line, i.item) for i in items] == [(None, 0), (None, 1), (None, 2)]  # type: ignore[union-attr]
    problem = items[1]
    assert isinstance(problem, RowProblem)
    assert "str" in problem.reason
    assert str(problem) == f"{path}:item 1: record: {problem.reason}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"customer_id": "c1", "text": "a"}', "expected a JSON array"),
        ('[{"customer_id": "c1", "text": "a"},', "invalid JSON"),
        ("", "invalid JSON"),
    ],
)
def test_json_file_that_is_not_an_array_is_unreadable(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "h.json", text)
    with pytest.raises(UnreadableInput, match=message):
        list(read_records(path))


# --- whole-file problems ------------------------------------------------------------------------------------


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput, match="no such file"):
        list(read_records(tmp_path / "absent.jsonl"))


def test_directory_is_unreadable(tmp_path: Path) -> None:
    folder = tmp_path / "events.jsonl"
    folder.mkdir()
    with pytest.raises(UnreadableInput, match="not a file"):
        list(read_records(folder))


@pytest.mark.parametrize("name", ["h.txt", "h.xlsx", "history"])
def test_unknown_suffix_is_unreadable(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "customer_id,text\nc1,a\n")
    with pytest.raises(UnreadableInput, match="cannot tell the format"):
        list(read_records(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("h.jsonl", '{"customer_id": "c1", "text": "Caf\u00e9"}\n'),
        ("h.csv", "customer_id,text\nc1,Caf\u00e9\n"),
        ("h.json", '[{"customer_id": "c1", "text": "Caf\u00e9"}]'),
    ],
)
def test_non_utf8_bytes_are_unreadable(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path / name, content, encoding="latin-1")
    with pytest.raises(UnreadableInput, match="not UTF-8"):
        list(read_records(path))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"), ("a.csv", "csv"), ("a.TSV", "csv"), ("a.json", "json")],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


# --- count_rows ---------------------------------------------------------------------------------------------


def test_count_rows(tmp_path: Path) -> None:
    assert count_rows(write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": 2}\n{"a": 3}\n')) == 3
    assert count_rows(write(tmp_path / "a.csv", "customer_id,text\nc1,a\nc2,b\n")) == 2
    assert count_rows(write(tmp_path / "b.csv", "")) == 0
    assert count_rows(write(tmp_path / "a.json", "[]")) is None
