"""The shipped mappings on the real files in ../shared/data, and `twinchat import` end to end with the real
embedder and Chroma: round trips, identity stitching across two sources, export and erasure."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_cli_e2e import assert_stayed_offline
from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord, RowProblem
from twinchat.importers.gss import GssPanel
from twinchat.importers.mapping import MappedImport, load_mapping


def run(name: str, *paths: Path, **options: object) -> tuple[MappedImport, list[RawRecord], list[RowProblem]]:
    importer = MappedImport(load_mapping(name), list(paths), **options)  # type: ignore[arg-type]
    items = list(importer.records())
    raws = [i for i in items if isinstance(i, RawRecord)]
    for raw in raws:
        Event.from_record(raw.record)  # every record is a valid event
    return importer, raws, [i for i in items if isinstance(i, RowProblem)]


def gss_sample(shared_data: Path, folder: Path, rows: int) -> Path:
    """The first persons of the GSS panel (all waves, all 1,570 variables) beside its documentation."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "gss" / "variable_doc.csv", folder / "variable_doc.csv")
    with gzip.open(shared_data / "gss" / "panel06_long.csv.gz", "rt", encoding="utf-8", newline="") as source:
        (folder / "panel.csv").write_text("".join(itertools.islice(source, rows + 1)), encoding="utf-8")
    return folder / "panel.csv"


def test_online_retail_every_invoice_of_the_sample(shared_data: Path) -> None:
    path = shared_data / "online_retail" / "online_retail_sample.csv"
    importer, raws, problems = run("online_retail", path)
    assert problems == []
    assert importer.rows_read == 40_000
    assert importer.skipped == {"guest checkout (no CustomerID)": 10_057}
    lines_with_customer = 40_000 - 10_057
    assert sum(len(r.record["products"]) for r in raws) == lines_with_customer  # every line in one invoice
    assert len({r.record["event_id"] for r in raws}) == len(raws) == 12_065
    assert len({r.record["customer_id"] for r in raws}) == 3_621  # the README's customer count
    kinds = Counter(r.record["kind"] for r in raws)
    assert kinds == {"order": 12_065 - 548, "cancellation": 548}


def test_gss_mapping_gives_the_same_events_as_the_evaluation_reader(
    shared_data: Path, tmp_path: Path
) -> None:
    panel = gss_sample(shared_data, tmp_path / "gss", rows=30)
    importer, raws, problems = run("gss", panel)
    assert problems == []
    reference = GssPanel.load(panel, panel.parent / "variable_doc.csv")
    expected = {
        r.record["event_id"]: r.record
        for r in reference.records(
            persons=set(reference.rows["firstid"]), variables=list(reference.rows.columns), waves=(1, 2, 3)
        )
    }
    got = {r.record["event_id"]: r.record for r in raws}
    assert got.keys() == expected.keys() and len(got) > 20_000

    def squashed(record: dict) -> dict:  # the mapping folds runs of spaces in answers; nothing else differs
        return {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in record.items()}

    assert all(squashed(got[k]) == squashed(expected[k]) for k in expected)
    assert importer.skipped == {"no answer in this row (a non-response)": 2}


def test_twin2k_profiles_one_event_per_measure(shared_data: Path) -> None:
    path = shared_data / "twin2k" / "persona_profile" / "twin2k_flat.csv"
    importer, raws, problems = run("twin2k_profile", path)
    assert problems == []
    with path.open(encoding="utf-8", newline="") as handle:
        people = list(csv.DictReader(handle))
    answered = sum(1 for p in people for k, v in p.items() if k != "pid" and v.strip())
    assert len(raws) == answered and importer.rows_read == len(people) == 2_058
    first = people[0]
    mine = {
        r.record["variable"]: r.record for r in raws if r.record["customer_id"] == f"twin2k-{first['pid']}"
    }
    assert mine["gender"]["text"] == f"Q: What is your gender? A: {first['gender']}"
    assert mine["score_extraversion"]["answer"] == first["score_extraversion"]
    assert mine["gender"]["kind"] == "profile" and mine["score_extraversion"]["kind"] == "answer"


def test_twin2k_study_answers_are_labelled_from_the_survey_file(shared_data: Path) -> None:
    path = shared_data / "twin2k" / "raw_studies" / "junk_fees" / "raw_data" / "response.csv"
    importer, raws, problems = run("twin2k_study", path)
    assert problems == []
    assert importer.rows_read == 400  # the question and ImportId rows under the header are not people
    assert len({r.record["customer_id"] for r in raws}) == 400
    heard = Counter(r.record["answer"] for r in raws if r.record["variable"] == "Hotel.Heard")
    assert set(heard) == {"Yes", "No"}  # coded 1/0 in the export, labelled by survey.qsf
    assert all(r.record["question_id"].startswith("twin2k:junk_fees:") for r in raws)
    assert not any("_DO_" in r.record["variable"] or "Timer" in r.record["variable"] for r in raws)


@pytest.mark.slow
def test_import_cli_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TWINCHAT_HOME": str(tmp_path / "home"),
        "TWINCHAT_NETGUARD_LOG": str(tmp_path / "netguard.log"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "support" / "site"),
    }
    panel = gss_sample(shared_data, tmp_path / "gss", rows=4)  # two persons' waves
    made = run_cli(env, "import", "gss", str(panel), "--panel", "gss", "--json")
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["events"]["stored"] > 1_000 and report["events"]["rejected"] == 0
    twins = json.loads(run_cli(env, "twins", "--json").stdout)
    person = twins[0]["twin_id"]
    assert person.startswith("gss-") and twins[0]["panels"] == ["gss"]

    # A CRM export of the same person under an email: the identity map stitches it into the GSS twin.
    crm = tmp_path / "crm.csv"
    crm.write_text(
        "Email,Date,Note\nperson@example.com,2011-02-03,Asked us to stop sending paper catalogues\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "crm.yaml"
    mapping.write_text(
        "customer: {column: CustomerID}\nidentifiers: {email: Email}\n"
        "columns: {Date: datetime}\nevent: {text: 'CRM note: {Note}', timestamp: Date, source: crm}\n",
        encoding="utf-8",
    )
    identity = tmp_path / "ids.csv"
    identity.write_text(
        f"customer_id,email\n{person.removeprefix('gss-')},person@example.com\n", encoding="utf-8"
    )
    stitched = run_cli(env, "import", str(mapping), str(crm), "--identity-map", str(identity), "--json")
    assert stitched.returncode == 0, stitched.stderr
    assert json.loads(stitched.stdout)["customers"] == {"touched": 1, "new": 0, "existing": 1}

    shown = json.loads(run_cli(env, "show", person, "--json").stdout)
    assert {"kind": "email", "value": "person@example.com"} in shown["twin"]["identifiers"]
    found = json.loads(run_cli(env, "memories", person, "--search", "paper catalogues", "--json").stdout)
    assert found[0]["text"] == "CRM note: Asked us to stop sending paper catalogues"  # real MiniLM retrieval

    out = tmp_path / "export.json"
    assert run_cli(env, "export", person, "--out", str(out)).returncode == 0
    assert {"kind": "email", "value": "person@example.com"} in json.loads(out.read_text())["identifiers"]
    assert run_cli(env, "erase", person, "--yes").returncode == 0
    again = run_cli(env, "import", str(mapping), str(crm), "--json")
    assert json.loads(again.stdout)["customers"]["new"] == 1  # the email no longer leads to the erased twin
    assert_stayed_offline(env)
