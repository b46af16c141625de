"""The studio's and the portal's handlers on fakes: what a click does, without a browser.

The same pages run in headless Chromium on the real pieces in tests/integration/test_ui_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.support.api import history_records
from twinchat.api.app import create_app
from twinchat.jobs import CSV_COLUMNS
from twinchat.services import TwinNotFound, TwinService
from twinchat.testing import FakeChatModel, fake_service
from ui.common import message_of, shown
from ui.downloads import export_name, remove_exports, write_download
from ui.portal import Portal
from ui.studio import Studio, answer_shares, questions_from_table
from ui.views import profile_card

HISTORY = [
    ("ann", "Bought a red teapot and six blue mugs", "purchase"),
    ("ann", "I live in Paris", "crm"),
    ("ann", "Q: Which delivery day suits you best? A: Saturday", "survey"),
    ("bob", "Bought garden gloves and a watering can", "purchase"),
    ("bob", "Q: Which delivery day suits you best? A: Weekday", "survey"),
]
DELIVERY = {
    "id": "delivery",
    "text": "Which delivery day suits you best?",
    "options": ["Weekday", "Saturday"],
}


@pytest.fixture(autouse=True)
def _own_gradio_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture
def service(tmp_path: Path) -> TwinService:
    service = fake_service(tmp_path, chat_model=FakeChatModel(default="I bought a red teapot [E1]."))
    records = history_records(HISTORY)
    service.ingest_records(records, panel="pilot")
    return service


@pytest.fixture
def researcher(service: TwinService) -> str:
    return service.create_key("researcher", label="tests")[1]


@pytest.fixture
def customer(service: TwinService) -> str:
    return service.create_key("customer", twin_id="ann")[1]


def test_the_studio_takes_researcher_keys_and_sends_customers_to_the_portal(
    service: TwinService, researcher: str, customer: str
) -> None:
    studio = Studio(service)
    secret, welcome, main, _, panels = studio.sign_in(f"  {researcher} ")
    assert secret == researcher and "researcher key" in welcome and main["visible"] is True
    assert panels["choices"] == ["(all twins)", "pilot"]
    with pytest.raises(gr.Error, match="customer portal at /portal"):
        studio.sign_in(customer)
    with pytest.raises(gr.Error, match="unknown or revoked"):
        studio.sign_in("tck_nope")
    with pytest.raises(gr.Error, match="signed out"):
        studio.find("", "", None)  # every action checks the key again


def test_finding_twins_by_attribute_and_their_profile_card(service: TwinService, researcher: str) -> None:
    studio = Studio(service)
    table, choices = studio.find(researcher, "", "pilot")
    assert list(table["twin"]) == ["ann", "bob"] and set(table["consent"]) == {"yes"}
    table, choices = studio.find(researcher, "survey", None)  # words of the profile summary count
    assert len(table) == 2
    table, choices = studio.find(researcher, "ann", None)
    assert list(table["twin"]) == ["ann"] and choices["value"] == "ann"
    card, chat, evidence, _, session = studio.show(researcher, "ann")
    assert card.startswith("### Twin ann") and "SYNTHETIC" not in card and chat == [] and session is None


def test_a_synthetic_twin_is_labelled_on_its_card(service: TwinService) -> None:
    from twinchat.domain.profile import show_document

    twin = service.twin("bob")
    twin.synthetic = True
    assert "SYNTHETIC" in profile_card(show_document(twin, service.profile("bob")))


def test_studio_chat_streams_and_shows_the_evidence(service: TwinService, researcher: str) -> None:
    studio = Studio(service)
    steps = list(studio.send(researcher, "ann", None, "Did you buy a teapot?", [], []))
    assert len(steps) > 2  # streamed: one step per piece, then the finished answer
    history, evidence, table, session, box = steps[-1]
    assert box == "" and session is not None
    assert history[0] == {"role": "user", "content": "Did you buy a teapot?"}
    assert "I bought a red teapot." in history[1]["content"] and "simulated" in history[1]["content"]
    assert list(table["text"]) == ["Bought a red teapot and six blue mugs"]
    assert list(table["source"]) == ["purchase"] and evidence[-1][0]["date"] == "2020-01-01"
    # The next message continues the same session.
    again = list(studio.send(researcher, "ann", session, "And mugs?", history, evidence))[-1]
    assert again[3] == session and len(service.session(session).turns) == 4
    chosen = studio.evidence_at(again[1], gr.SelectData(None, {"index": 1, "value": ""}))
    assert list(chosen["event"]) == list(table["event"])


def test_a_refusal_is_a_message_and_the_question_is_not_shown_as_asked(
    service: TwinService, researcher: str
) -> None:
    service.set_consent("ann", "research", False)
    with pytest.raises(gr.Error, match="Refused: twin ann: the customer withdrew consent for research"):
        list(Studio(service).send(researcher, "ann", None, "Did you buy a teapot?", [], []))
    assert [e.action for e in service.audit(twin_id="ann")][-1] == "refused"


def test_interviewing_a_panel_lists_refusals_beside_the_answers(
    service: TwinService, researcher: str
) -> None:
    service.set_consent("bob", "research", False)
    table = Studio(service).interview(researcher, "pilot", "Did you buy a teapot?", 10)
    rows = table.set_index("twin").to_dict("index")
    assert rows["ann"]["note"] == "simulated" and "teapot" in rows["ann"]["evidence"]
    assert rows["bob"]["note"].startswith("refused: twin bob")


def test_a_questionnaire_is_uploaded_edited_and_run_with_a_csv_and_charts(
    service: TwinService, researcher: str, tmp_path: Path
) -> None:
    studio = Studio(service)
    upload = tmp_path / "questions.json"
    upload.write_text(json.dumps([DELIVERY, {"id": "why", "text": "Why?"}]))
    table = studio.load_questionnaire(str(upload))
    assert table.to_dict("records")[0] == {
        "id": "delivery",
        "text": DELIVERY["text"],
        "type": "choice",
        "options": "Weekday | Saturday",
    }
    results, data, csv_path, summary = studio.run_survey(researcher, "pilot", "", table)
    assert summary.startswith("4 simulated answers of 2 twins to 2 questions")
    rows = list(csv.DictReader(io.StringIO(Path(csv_path).read_text())))
    assert (
        tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    )  # the columns `twinchat survey --out X.csv` writes
    assert {r["answer"] for r in rows if r["question_id"] == "delivery"} <= {"Weekday", "Saturday"}
    [(title, shares)] = answer_shares(data)  # the free question has no chart
    assert title.startswith("delivery:") and list(shares["answer"]) == ["Weekday", "Saturday"]
    assert shares["share"].sum() == pytest.approx(1.0)


def test_a_bad_questionnaire_names_the_file_question_and_field(service: TwinService, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([DELIVERY, {"id": "q2", "text": "Pick", "options": ["Only one"]}]))
    with pytest.raises(gr.Error, match="bad.json: question 1: options: needs at least two distinct options"):
        Studio(service).load_questionnaire(str(bad))
    bad.write_text("{not json")
    with pytest.raises(gr.Error, match="bad.json: not a JSON file"):
        Studio(service).load_questionnaire(str(bad))
    with pytest.raises(ValueError, match="empty"):
        questions_from_table(pd.DataFrame([{"id": "", "text": "", "type": "", "options": ""}]))


def test_the_portal_takes_only_customer_keys(service: TwinService, researcher: str, customer: str) -> None:
    portal = Portal(service)
    with pytest.raises(gr.Error, match="research studio at /studio"):
        portal.sign_in(researcher)
    secret, welcome, main, _ = portal.sign_in(customer)
    assert secret == customer and "ann" in welcome and main["visible"] is True
    card, memories, research, product, marketing, note = portal.overview(customer, "")
    assert card.startswith("### Twin ann") and (research, product, marketing) == (True, True, False)
    assert set(memories["status"]) == {"valid"} and len(memories) == 3


def test_a_correction_in_the_portal_shows_in_the_memories(service: TwinService, customer: str) -> None:
    portal = Portal(service)
    report, box = portal.correct(customer, "I no longer live in Paris, I moved to Lyon")
    assert box == "" and "Stored" in report
    memories = portal.memories(customer, "")
    assert memories.iloc[0]["source"] == "correction" and memories.iloc[0]["status"] == "valid"
    superseded = memories[memories["status"].str.startswith("superseded")]
    assert list(superseded["text"]) == ["I live in Paris"]
    assert [e.actor for e in service.audit(twin_id="ann") if e.action == "correct"][0].startswith("key:")


def test_saying_it_in_the_portal_chat_corrects_the_twin(service: TwinService, customer: str) -> None:
    history, session, _ = list(Portal(service).send(customer, None, "Actually, I live in Lyon now", []))[-1]
    assert "stored as your correction" in history[-1]["content"]
    assert any(m["source"] == "correction" for m in service.memories("ann"))


def test_consent_export_and_erasure_from_the_portal(
    service: TwinService, customer: str, tmp_path: Path
) -> None:
    portal = Portal(service)
    note = portal.set_consent(customer, "research", False)
    assert "**research**: withdrawn" in note and service.consents("ann")["research"].granted is False
    export = json.loads(Path(portal.export(customer)).read_text())
    assert export["format"] == "twinchat-export/1" and export["twin"]["twin_id"] == "ann"
    with pytest.raises(gr.Error, match=r"type your customer id \(ann\)"):
        portal.erase(customer, "bob")
    secret, message, main, key_row, *_ = portal.erase(customer, "ann")
    assert secret == "" and "erased" in message and main["visible"] is False and key_row["visible"] is True
    assert service.authenticate(customer) is None and [t.twin_id for t in service.twins()] == ["bob"]
    assert not list((tmp_path / "gradio").glob("**/*.json")), "the export outlived the erasure"


def test_erasure_removes_every_export_of_that_customer_from_the_cache() -> None:
    ann = [Path(write_download(export_name("ann"), "{}")) for _ in range(2)]
    bob = Path(write_download(export_name("bob"), "{}"))
    assert "ann" not in ann[0].name and all(p.exists() for p in [*ann, bob])
    assert remove_exports("ann", blocks=gr.Blocks()) == 2
    assert not any(p.exists() for p in ann) and bob.exists()


def test_errors_are_one_line_messages_never_tracebacks() -> None:
    @shown
    def broken() -> None:
        raise KeyError("internal detail")

    @shown
    def streams():  # type: ignore[no-untyped-def]
        yield 1
        raise ValueError("question: must not be empty")

    with pytest.raises(gr.Error) as caught:
        broken()
    assert (
        "internal error (reference" in caught.value.message and "internal detail" not in caught.value.message
    )
    assert next(streams()) == 1
    with pytest.raises(gr.Error, match="question: must not be empty"):
        list(streams())
    assert message_of(TwinNotFound("x")) == "no twin 'x'; `twinchat twins` lists them"


def test_the_api_serves_the_studio_and_the_portal(service: TwinService) -> None:
    app = create_app(service.settings, service=service, ui=True)
    with TestClient(app) as client:
        for path in ("/studio/", "/portal/"):
            page = client.get(path)
            assert page.status_code == 200 and "<html" in page.text.lower()
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/v1/twins").status_code == 401  # the API keeps its keys


def test_the_command_line_stays_fast_without_gradio() -> None:
    code = "import sys, twinchat.cli as c; c._parser(); assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_profile_card_shows_predictions_to_admins_with_the_customers_marketing_consent(
    service: TwinService, researcher: str
) -> None:
    studio = Studio(service)
    card = studio.show(researcher, "ann")[0]
    assert "Predictions (simulated)" in card and "shown to admin keys" in card
    assert not [e for e in service.audit(twin_id="ann") if e.action == "predict"]  # nothing was computed

    admin = service.create_key("admin", label="tests")[1]
    card = studio.show(admin, "ann")[0]
    assert "Refused:" in card and "marketing" in card  # marketing is not among the default consents
    service.set_consent("ann", "marketing", True)
    card = studio.show(admin, "ann")[0]
    assert "Refused" not in card and "Predictions (simulated)" in card
    assert [e.action for e in service.audit(twin_id="ann") if e.action in ("predict", "refused")][-2:] == [
        "refused",
        "predict",
    ]
