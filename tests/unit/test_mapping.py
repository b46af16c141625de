"""Mapping-file imports: the mapping language, identity stitching through the service, the quality report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from twinchat.cli import main
from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput
from twinchat.importers.mapping import MappedImport, Mapping, MappingError, load_mapping, shipped_mappings
from twinchat.testing import fake_service

CRM_MAPPING = """
mapping: 1
name: crm_notes
description: CRM notes under a customer id, an email or a phone
customer: {column: CustomerID}
identifiers: {email: Email, phone: Phone}
phone_country_code: "44"
columns:
  Date: {type: datetime, required: true}
  Note: {type: text, required: true}
  Score: int
skip:
  - if: {column: Note, matches: '^TEST'}
    reason: a test record
event:
  text: "CRM note: {Note}"
  timestamp: Date
  source: crm
  attributes: {score: Score}
"""

CRM_ROWS = """CustomerID,Email,Phone,Date,Note,Score
17850,Ann.Lee@Example.com,,2011-05-01,Called about a late delivery of the cake stand,4
,ann.lee@example.com,020 7946 0958,2011-06-02,Asked for a gift wrap option,
,,+44 20 7946 0958,2011-07-03,Complained that the mugs arrived broken,2
,bob@example.org,,2011-08-04,Asked about bulk discounts,5
,carol@@bad,,2011-08-05,A row with a broken email,3
17850,,,2011-08-06,Asked for a catalogue,five
,,,2011-08-07,A note nobody can be found for,1
17850,,,2011-08-08,TEST please ignore,1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def records(importer: MappedImport) -> tuple[list[RawRecord], list[RowProblem]]:
    items = list(importer.records())
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, RowProblem)]


@pytest.fixture
def crm(tmp_path: Path) -> tuple[Mapping, Path]:
    return load_mapping(write(tmp_path, "crm.yaml", CRM_MAPPING)), write(tmp_path, "crm.csv", CRM_ROWS)


# --- the mapping language --------------------------------------------------------------------------------


def test_rows_become_events_and_bad_rows_name_file_line_and_column(crm: tuple[Mapping, Path]) -> None:
    mapping, path = crm
    importer = MappedImport(mapping, [path])
    raws, problems = records(importer)
    assert importer.rows_read == 8
    assert importer.skipped == {"a test record": 1}
    assert sorted((p.line, p.field) for p in problems) == [(6, "Email"), (7, "Score"), (8, "CustomerID")]
    by_line = {p.line: p for p in problems}
    assert "'carol@@bad' is not an email address" in by_line[6].reason
    assert "'five' is not a whole number" in by_line[7].reason
    assert str(by_line[8]).startswith(f"{path}:line 8: CustomerID: is empty")
    first = Event.from_record(raws[0].record)
    assert (first.customer_id, first.text, first.source) == (
        "17850",
        "CRM note: Called about a late delivery of the cake stand",
        "crm",
    )
    assert first.timestamp is not None and first.timestamp.isoformat() == "2011-05-01T00:00:00+00:00"
    assert first.attributes == {"score": 4}
    # Rows 2 and 3 reach 17850 through the email and then the phone; bob has only an email.
    assert [r.record["customer_id"] for r in raws[:3]] == ["17850"] * 3
    assert raws[3].record["customer_id"].startswith("cust-")
    # No identifier (email, phone) is copied into the events: they live only in the identity table.
    assert all("example" not in json.dumps(r.record) and "7946" not in json.dumps(r.record) for r in raws)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("extra: 1\n", "unknown field(s) extra"),
        ("mapping: 2\n", "version 2"),
        ("columns: {Date: timestamp}\n", "columns: Date: type 'timestamp'"),
        ("skip: [{if: {column: Note, resembles: x}, reason: r}]\n", "skip[0]: unknown test 'resembles'"),
        ("skip: [{if: {column: Note, matches: '('}, reason: r}]\n", "is not a regular expression"),
        ("identifiers: {'E-mail': Email}\n", "identifiers: E-mail"),
        ("group: {items: x}\n", "group: needs by"),
        ("unpivot: {questions: somewhere}\n", "unpivot: questions"),
    ],
)
def test_mapping_errors_name_the_file_and_field(tmp_path: Path, change: str, message: str) -> None:
    data = {**yaml.safe_load(CRM_MAPPING), **yaml.safe_load(change)}
    path = write(tmp_path, "bad.yaml", yaml.safe_dump(data))
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_mapping_needs_customer_and_event(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="customer: needs"):
        load_mapping(write(tmp_path, "a.yaml", "event: {text: x}\n"))
    with pytest.raises(MappingError, match="event: needs at least text"):
        load_mapping(write(tmp_path, "b.yaml", "customer: id\n"))
    with pytest.raises(MappingError, match="unknown filter |money2"):
        load_mapping(write(tmp_path, "c.yaml", "customer: id\nevent: {text: '{x|money2}'}\n"))
    with pytest.raises(MappingError, match="no such mapping file"):
        load_mapping("no_such_mapping")


def test_a_template_naming_an_unknown_column_is_a_row_problem(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, "m.yaml", "customer: id\nevent: {text: 'Bought {Product}'}\n"))
    raws, problems = records(MappedImport(mapping, [write(tmp_path, "d.csv", "id,Item\n1,mug\n")]))
    assert raws == [] and len(problems) == 1
    assert (problems[0].line, problems[0].field) == (2, "Product")
    assert "not a column of this file" in problems[0].reason


def test_a_file_without_the_customer_column_is_unreadable(crm: tuple[Mapping, Path], tmp_path: Path) -> None:
    mapping, _ = crm
    other = write(tmp_path, "other.csv", "id,Date,Note\n1,2011-01-01,hello\n")
    with pytest.raises(UnreadableInput) as info:
        list(MappedImport(mapping, [other]).records())
    assert str(other) in str(info.value) and "CustomerID or Email or Phone" in str(info.value)


def test_group_sums_and_collects(tmp_path: Path) -> None:
    mapping = load_mapping("online_retail")
    rows = write(
        tmp_path,
        "r.csv",
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,A,MUG,2,2011-01-01 10:00:00,1.25,7.0,UK\n"
        "1,B,TEA  POT,1,2011-01-01 10:00:00,10,7.0,UK\n"
        "C2,A,MUG,-1,2011-01-02 10:00:00,1.25,7.0,UK\n",
    )
    raws, problems = records(MappedImport(mapping, [rows]))
    assert problems == []
    order, cancelled = (r.record for r in raws)
    assert (
        order["text"]
        == "Order 1 on 2011-01-01 (12.50 GBP): 2 x MUG at 1.25 GBP each; 1 x TEA POT at 10.00 GBP each."
    )
    assert (order["total"], order["products"], order["kind"]) == (12.5, ["MUG", "TEA POT"], "order")
    assert cancelled["kind"] == "cancellation" and cancelled["text"].startswith("Cancelled order C2")


def test_unpivot_with_a_documentation_file_and_non_responses(tmp_path: Path) -> None:
    write(
        tmp_path,
        "doc.csv",
        'variable,var_text,label\nhappy,"A1. Taken all together, how happy are you?",happiness\n'
        "wtss,Weight,weight variable\nage,Age of respondent,age\n",
    )
    mapping = load_mapping(
        write(
            tmp_path,
            "survey.yaml",
            """
customer: {column: pid, prefix: "s-"}
columns: {wave: int}
derive: {year: {lookup: wave, values: {1: 2006, 2: 2008}}}
unpivot:
  questions: {file: doc.csv, key: variable, text: var_text, strip: '^[A-Z]\\d+\\.\\s+',
              exclude_if: [{column: label, matches: weight}]}
  exclude: [wave]
  require_answer_matching: '[A-Za-z]'
event:
  id: "{customer}-w{wave}-{column}"
  text: "Q: {question} A: {answer}"
  timestamp: "{year}-01-01"
  source: survey
  attributes: {question_id: "s:{column}", variable: column}
""",
        ),
    )
    data = write(
        tmp_path, "panel.csv", "pid,wave,happy,wtss,age\n7,1,Very happy,1.2,45\n7,2,0,1.1,-1\n8,1,,0.9,30\n"
    )
    importer = MappedImport(mapping, [data])
    raws, problems = records(importer)
    assert problems == []
    assert [r.record["event_id"] for r in raws] == ["s-7-w1-happy", "s-7-w1-age"]
    assert raws[0].record["text"] == "Q: Taken all together, how happy are you? A: Very happy"
    assert raws[0].record["timestamp"] == "2006-01-01" and raws[0].record["question_id"] == "s:happy"
    # Wave 2 of 7 holds only numeric placeholders, and 8 answered nothing lettered: non-responses.
    assert importer.skipped == {"no answer in this row (a non-response)": 2}


def test_unpivot_with_qualtrics_header_rows_and_qsf_labels(tmp_path: Path) -> None:
    qsf = {
        "SurveyElements": [
            {
                "Element": "SQ",
                "Payload": {
                    "DataExportTag": "Heard",
                    "Choices": {"1": {"Display": "<b>Yes</b>"}, "2": {"Display": "No"}},
                    "RecodeValues": {"1": "1", "2": "0"},
                },
            },
            {
                "Element": "SQ",
                "Payload": {
                    "DataExportTag": "Grid",
                    "Choices": {"1": {"Display": "Price"}, "2": {"Display": "Speed"}},
                    "Answers": {"1": {"Display": "Low"}, "2": {"Display": "High"}},
                },
            },
        ]
    }
    (tmp_path / "survey.qsf").write_text(json.dumps(qsf))
    data = write(
        tmp_path,
        "response.csv",
        "StartDate,Heard,Grid_1,Grid_2,Free,TWIN_ID\n"
        'Start Date,"Have you heard\nof it?",Grid - Price,Grid - Speed,Anything else?,TWIN_ID\n'
        '{"ImportId":"s"},{"ImportId":"a"},{"ImportId":"b"},{"ImportId":"c"},{"ImportId":"d"},{"ImportId":"e"}\n'
        "4/22/2025 9:14,0,2,1,Cheaper please,57\n",
    )
    mapping = load_mapping("twin2k_study")
    raws, problems = records(MappedImport(mapping, [data]))
    assert problems == []
    texts = {r.record["variable"]: r.record["text"] for r in raws}
    assert texts == {
        "Heard": "Q: Have you heard of it? A: No",
        "Grid_1": "Q: Grid - Price A: High",
        "Grid_2": "Q: Grid - Speed A: Low",
        "Free": "Q: Anything else? A: Cheaper please",
    }
    assert {r.line for r in raws} == {5}  # the question spans two lines: the data row is on line 5
    assert {r.record["customer_id"] for r in raws} == {"twin2k-57"}


def test_every_shipped_mapping_loads() -> None:
    assert set(shipped_mappings()) >= {
        "online_retail",
        "online_retail_lines",
        "gss",
        "twin2k_profile",
        "twin2k_study",
    }
    for path in shipped_mappings().values():
        assert load_mapping(path).description


# --- through the service: stitching against stored twins, the report, export and erasure --------------


def test_import_stitches_identities_and_reports_quality(tmp_path: Path, crm: tuple[Mapping, Path]) -> None:
    mapping, path = crm
    service = fake_service(tmp_path)
    report = service.import_mapped(MappedImport(mapping, [path]), panel="crm")
    assert report["rows"] == {"read": 8, "skipped": {"a test record": 1}}
    assert report["events"] == {"stored": 4, "duplicates": 0, "rejected": 3}
    assert report["customers"] == {"touched": 2, "new": 2, "existing": 0}
    assert report["identifiers"] == {
        "twins_with_identifiers": 2,
        "by_kind": {"customer_id": 1, "email": 2, "phone": 1},
        "stitched_twins": 1,
        "conflicting_identifiers": 0,
    }
    reasons = {(r["field"], r["reason"]): r for r in report["rejected_by_reason"]}
    assert reasons[("Email", "'…' is not an email address")]["examples"] == [f"{path}:line 6"]
    assert report["exit_code"] == 1
    assert report["files"][0]["path"] == str(path) and len(report["files"][0]["sha256"]) == 64
    assert json.loads(Path(report["saved_to"]).read_text())["events"] == report["events"]
    assert service.identifiers("17850") == [
        {"kind": "customer_id", "value": "17850"},
        {"kind": "email", "value": "ann.lee@example.com"},
        {"kind": "phone", "value": "+442079460958"},
    ]

    again = service.import_mapped(MappedImport(mapping, [path]), panel="crm")
    assert again["events"] == {"stored": 0, "duplicates": 4, "rejected": 3}
    assert again["customers"] == {"touched": 2, "new": 0, "existing": 2}


def test_a_later_import_finds_twins_by_any_identifier(tmp_path: Path, crm: tuple[Mapping, Path]) -> None:
    mapping, path = crm
    service = fake_service(tmp_path)
    service.import_mapped(MappedImport(mapping, [path]))
    bob = next(t.twin_id for t in service.twins() if t.twin_id.startswith("cust-"))
    later = write(
        tmp_path,
        "later.csv",
        "CustomerID,Email,Phone,Date,Note,Score\n"
        ",,07946 000111,2012-01-01,Phoned to ask about an order,\n"
        "20001,,,2012-01-02,Signed up for the newsletter,\n",
    )
    identity_map = write(
        tmp_path,
        "ids.csv",
        "customer_id,email,phone\n20001,BOB@example.org,\n,ann.lee@example.com,07946 000111\n",
    )
    report = service.import_mapped(MappedImport(mapping, [later], identity_map=identity_map))
    assert report["events"]["stored"] == 2 and report["customers"] == {"touched": 2, "new": 0, "existing": 2}
    assert service.twin("17850").n_events == 4  # the new phone reached Ann through the identity map
    assert service.twin(bob).n_events == 2  # customer 20001 is bob, known so far by his email only
    assert {"kind": "customer_id", "value": "20001"} in service.identifiers(bob)


def test_identifiers_of_two_twins_are_refused_and_nothing_stored_is_lost(
    tmp_path: Path, crm: tuple[Mapping, Path]
) -> None:
    mapping, path = crm
    service = fake_service(tmp_path)
    service.import_mapped(MappedImport(mapping, [path]))
    before = {t.twin_id: t.n_events for t in service.twins()}
    clash = write(
        tmp_path,
        "clash.csv",
        "CustomerID,Email,Phone,Date,Note,Score\n17850,bob@example.org,,2012-02-02,Whose note is this?,\n",
    )
    report = service.import_mapped(MappedImport(mapping, [clash]))
    assert report["events"] == {"stored": 0, "duplicates": 0, "rejected": 1}
    (group,) = report["rejected_by_reason"]
    assert group["field"] == "identifiers" and "belong to twins" in group["reason"]
    assert report["identifiers"]["conflicting_identifiers"] == 2
    assert {t.twin_id: t.n_events for t in service.twins()} == before


def test_export_lists_identifiers_and_erasure_removes_them(tmp_path: Path, crm: tuple[Mapping, Path]) -> None:
    mapping, path = crm
    service = fake_service(tmp_path)
    service.import_mapped(MappedImport(mapping, [path]))
    exported = service.export("17850")
    assert {"kind": "email", "value": "ann.lee@example.com"} in exported["identifiers"]
    service.erase("17850")
    assert service.registry.twins_by_identifier([("email", "ann.lee@example.com")]) == {}
    # The same person imported again after erasure is a new twin, not a resurrection of the old identifiers.
    report = service.import_mapped(MappedImport(mapping, [path]))
    assert report["customers"]["new"] == 1


def test_customers_keeps_those_with_most_events(tmp_path: Path, crm: tuple[Mapping, Path]) -> None:
    mapping, path = crm
    importer = MappedImport(mapping, [path], customers=1)
    raws, _ = records(importer)
    assert {r.record["customer_id"] for r in raws} == {"17850"}
    assert importer.skipped["customer not among the selected"] == 1


def test_cli_import_prints_the_report_and_lists_mappings(
    tmp_path: Path, crm: tuple[Mapping, Path], monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TWINCHAT_EMBEDDER", "hash")
    mapping, path = crm
    assert main(["import", "list"]) == 0
    assert "twin2k_study" in capsys.readouterr().out
    out_file = tmp_path / "report.json"
    assert main(["import", mapping.path, str(path), "--panel", "crm", "--report", str(out_file)]) == 1
    out = capsys.readouterr().out
    assert "events: 4 stored, 0 already stored, 3 rejected" in out
    assert "skipped 1 rows: a test record" in out
    assert "rejected 1: Score: '…' is not a whole number" in out
    assert json.loads(out_file.read_text())["customers"]["touched"] == 2
    assert main(["show", "17850"]) == 0
    assert (
        "identifiers customer_id 17850, email ann.lee@example.com, phone +442079460958"
        in capsys.readouterr().out
    )
    assert main(["import", "online_retail"]) == 2


def test_the_readme_mapping_example_works(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\nmapping: 1\nname: crm_notes\n", 1)[1].split("```", 1)[0]
    mapping = load_mapping(write(tmp_path, "readme.yaml", "mapping: 1\nname: crm_notes\n" + example))
    raws, problems = records(MappedImport(mapping, [write(tmp_path, "crm.csv", CRM_ROWS)]))
    assert [p.field for p in problems] == ["Email", "Score", "CustomerID"]
    assert raws[0].record["text"] == "CRM note: Called about a late delivery of the cake stand (score 4)"
    assert raws[0].record.get("kind") is None and raws[2].record["text"].endswith("(score 2)")


def test_jsonl_input_and_a_broken_line_that_hides_nothing(tmp_path: Path) -> None:
    mapping = load_mapping(
        write(
            tmp_path,
            "m.yaml",
            "customer: user\ncolumns: {stars: int}\nevent: {text: 'Rated {stars}', source: review}\n",
        )
    )
    data = write(
        tmp_path,
        "reviews.jsonl",
        '{"user": 1, "stars": 5}\n{"user": 2, "stars": \n{"user": 3, "stars": "4"}\n',
    )
    raws, problems = records(MappedImport(mapping, [data]))
    assert [(r.record["customer_id"], r.record["text"]) for r in raws] == [("1", "Rated 5"), ("3", "Rated 4")]
    assert [(p.line, p.field) for p in problems] == [(2, "record")]
