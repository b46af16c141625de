"""Data over HTTP on fakes: batch ingestion with per-item errors, panels, structured answers, survey jobs.

The same routes run over real HTTP on the real pieces in tests/integration/test_api_data_real.py.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api import client_for, history_records, survey_records
from twinchat.api.app import create_app
from twinchat.domain.models import Message
from twinchat.jobs import jobs_folder
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, fake_service

HISTORY = [
    ("ann", "Bought a red teapot and six blue mugs", "purchase"),
    ("ann", "Reviewed the garden hose: leaks, two stars", "review"),
    ("bob", "Bought garden gloves and a watering can", "purchase"),
]
MARITAL = [("ann", "Divorced"), ("bob", "Married"), ("cyd", "Married"), ("dan", "Never married")]
QUESTION = {
    "id": "gss:marital",
    "text": "What is your marital status?",
    "options": ["Married", "Divorced", "Never married"],
}


class GatedChat(FakeChatModel):
    """A chat model that answers only once its gate is open: a survey job stays running until then."""

    def __init__(self) -> None:
        super().__init__(default="I bought a teapot [E1].")
        self.gate = threading.Event()
        self.gate.set()
        self.broken = False

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        assert self.gate.wait(timeout=20), "the test never opened the gate"
        if self.broken:
            raise RuntimeError("the model crashed")
        yield from super().stream(messages, max_tokens=max_tokens, temperature=temperature)


@pytest.fixture
def chat() -> GatedChat:
    return GatedChat()


@pytest.fixture
def service(tmp_path: Path, chat: GatedChat) -> TwinService:
    service = fake_service(tmp_path, chat_model=chat, min_relevance=0.1, api_max_items=5)
    records = history_records(HISTORY)
    records += survey_records(QUESTION["id"], QUESTION["text"], MARITAL)
    service.ingest_records(records, panel="gss")
    return service


@pytest.fixture
def admin(service: TwinService) -> TestClient:
    return client_for(service, "admin")


@pytest.fixture
def researcher(service: TwinService) -> TestClient:
    return client_for(service, "researcher")


def finished(client: TestClient, job_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
    """Poll the job until it has finished."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/surveys/{job_id}")
        assert status.status_code == 200, status.text
        if status.json()["status"] in ("done", "failed", "cancelled"):
            return status.json()
        assert time.monotonic() < deadline, f"job still {status.json()['status']} after {timeout} s"
        time.sleep(0.02)


# --- ingestion ---------------------------------------------------------------------------------------------


def test_a_batch_stores_every_valid_event_and_names_each_bad_one(
    service: TwinService, admin: TestClient
) -> None:
    stored_id = service.memories("ann")[0]["event_id"]
    batch = [
        {"customer_id": "eve", "text": "Bought a kettle", "source": "purchase", "event_id": "e-1"},
        {"customer_id": "eve", "text": ""},
        ["not", "an", "object"],
        {"customer_id": "eve", "text": "Asked about delivery", "timestamp": "soon"},
        {"customer_id": "ann", "text": "Something else entirely", "event_id": stored_id},
    ]
    made = admin.post("/v1/events", json={"events": batch, "panel": "pilot"})
    assert made.status_code == 201, made.text
    report = made.json()
    assert (report["received"], report["stored"], report["duplicates"]) == (5, 1, 0)
    assert [(p["index"], p["field"]) for p in report["rejected"]] == [
        (1, "text"),
        (2, "record"),
        (3, "timestamp"),
        (4, "event_id"),
    ]
    assert "got an array" in report["rejected"][1]["reason"]
    assert "already stored with a different text" in report["rejected"][3]["reason"]
    assert report["new_twins"] == ["eve"] and report["twins"] == ["ann", "eve"]
    assert admin.get("/v1/twins/eve").json()["panels"] == ["pilot"]
    # The same event again is a duplicate: nothing new, so 200 rather than 201.
    again = admin.post("/v1/events", json={"events": batch[:1]})
    assert again.status_code == 200
    assert (again.json()["stored"], again.json()["duplicates"], again.json()["new_twins"]) == (0, 1, [])
    ingests = [e for e in service.audit() if e.action == "ingest" and e.twin_id == "eve"]
    admin_key = next(k for k in service.keys.list_keys() if k.role == "admin")
    assert [e.actor for e in ingests] == [admin_key.actor]


def test_a_twins_events_may_leave_out_the_customer_and_must_not_name_another(admin: TestClient) -> None:
    made = admin.post(
        "/v1/twins/zed/events",
        json={
            "events": [
                {"text": "Joined the loyalty programme", "source": "crm"},
                {"customer_id": "zed", "text": "Bought a lamp"},
                {"customer_id": "ann", "text": "Bought a rug"},
            ]
        },
    )
    assert made.status_code == 201
    assert made.json()["stored"] == 2 and made.json()["new_twins"] == ["zed"]
    assert made.json()["rejected"] == [
        {"index": 2, "field": "customer_id", "reason": "'ann' is not the twin 'zed' this request is for"}
    ]
    assert admin.get("/v1/twins/zed").json()["n_events"] == 2


def test_more_items_than_the_limit_get_413_naming_it(admin: TestClient, researcher: TestClient) -> None:
    events = [{"customer_id": "eve", "text": f"Bought item {i}"} for i in range(6)]
    refused = admin.post("/v1/events", json={"events": events})
    assert refused.status_code == 413
    assert refused.json()["error"] == "too_large"
    assert "6 events in one request; at most 5" in refused.json()["message"]
    assert admin.get("/v1/twins/eve").status_code == 404  # nothing was stored
    assert admin.post("/v1/twins/eve/events", json={"events": events}).status_code == 413
    questions = [{**QUESTION, "id": f"q{i}"} for i in range(6)]
    assert researcher.post("/v1/surveys", json={"questions": questions, "panel": "gss"}).status_code == 413
    many = [f"t{i}" for i in range(6)]
    assert researcher.patch("/v1/panels/p", json={"add": many}).status_code == 413
    assert researcher.put("/v1/panels/p", json={"members": many}).status_code == 413
    survey = {"questions": [QUESTION], "twin_ids": many}
    assert researcher.post("/v1/surveys", json=survey).status_code == 413


# --- roles -------------------------------------------------------------------------------------------------


def test_each_role_may_do_only_its_part(service: TwinService) -> None:
    product, customer = client_for(service, "product"), client_for(service, "customer", "ann")
    researcher = client_for(service, "researcher")
    event = {"events": [{"customer_id": "eve", "text": "Bought a kettle"}]}
    for client in (researcher, product, customer):
        refused = client.post("/v1/events", json=event)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert client.post("/v1/twins/ann/events", json=event).status_code == 403
    assert product.patch("/v1/panels/gss", json={"remove": ["ann"]}).status_code == 403
    assert customer.get("/v1/panels").status_code == 403
    assert product.get("/v1/panels").status_code == 200
    choice = {"question": QUESTION}
    assert customer.post("/v1/twins/ann/choose", json=choice).status_code == 403
    assert customer.post("/v1/surveys", json={"questions": [QUESTION], "panel": "gss"}).status_code == 403
    # A role asking for a purpose it may not use.
    wrong = product.post("/v1/twins/ann/choose", json={**choice, "purpose": "research"})
    assert wrong.status_code == 403 and "product or marketing, not research" in wrong.json()["message"]
    assert TestClient(create_app(service.settings, service=service)).get("/v1/panels").status_code == 401


# --- panels ------------------------------------------------------------------------------------------------


def test_panels_are_listed_with_counts_and_changed_by_curators(
    service: TwinService, admin: TestClient
) -> None:
    researcher = client_for(service, "researcher")
    assert researcher.get("/v1/panels").json() == [{"panel": "gss", "twins": 4}]
    changed = researcher.patch("/v1/panels/pilot", json={"add": ["ann", "bob", "ann"]})
    assert changed.status_code == 200 and changed.json() == {"panel": "pilot", "twins": 2}
    assert admin.patch("/v1/panels/pilot", json={"remove": ["bob"]}).json()["twins"] == 1
    unknown = researcher.patch("/v1/panels/pilot", json={"add": ["cyd", "nobody"]})
    assert unknown.status_code == 404 and "nobody" in unknown.json()["message"]
    assert [t.twin_id for t in service.twins(panel="pilot")] == ["ann"]  # nothing changed
    assert researcher.put("/v1/panels/pilot", json={"members": ["bob", "cyd"]}).json()["twins"] == 2
    assert [t.twin_id for t in service.twins(panel="pilot")] == ["bob", "cyd"]
    assert researcher.put("/v1/panels/pilot", json={"members": []}).json() == {"panel": "pilot", "twins": 0}
    assert researcher.get("/v1/panels").json() == [{"panel": "gss", "twins": 4}]
    assert researcher.patch("/v1/panels/%20", json={"add": ["ann"]}).status_code == 422


# --- structured answers ------------------------------------------------------------------------------------


def test_choose_gives_a_distribution_with_its_parts_and_evidence(
    service: TwinService, researcher: TestClient
) -> None:
    made = researcher.post("/v1/twins/ann/choose", json={"question": QUESTION})
    assert made.status_code == 200, made.text
    answer = made.json()
    assert answer["answer"] == "Divorced" and answer["evidence"] == "own_answer"
    assert set(answer["distribution"]) == set(QUESTION["options"])
    assert abs(sum(answer["distribution"].values()) - 1) < 1e-3
    assert {p["name"] for p in answer["parts"]} >= {"own", "panel"}
    assert all(0 < p["weight"] <= 1 for p in answer["parts"])
    assert answer["citations"] and answer["simulated"] is True
    assert [e.action for e in service.audit()][-1] == "choose"
    service.set_consent("ann", "research", False)
    refused = researcher.post("/v1/twins/ann/choose", json={"question": QUESTION})
    assert refused.status_code == 403 and refused.json()["error"] == "no_consent"
    assert researcher.post("/v1/twins/nobody/choose", json={"question": QUESTION}).status_code == 404


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ({"id": "q", "text": "Tea?"}, "question.options: a structured answer needs at least two options"),
        ({"id": "q", "text": "Tea?", "options": ["Yes"]}, "question.options: needs at least two distinct"),
        ({"id": "q", "text": "Tea?", "options": "Yes, No"}, "question.options: must be a list"),
        ({"text": "Tea?", "options": ["Yes", "No"]}, "question.id: is required"),
        ({"id": "q", "text": " ", "options": ["Yes", "No"]}, "question.text: is required"),
        ("Tea?", "question: expected an object"),
    ],
)
def test_a_bad_question_gets_422_naming_the_field(researcher: TestClient, question: Any, named: str) -> None:
    refused = researcher.post("/v1/twins/ann/choose", json={"question": question})
    assert refused.status_code == 422 and refused.json()["message"].startswith(named)


# --- survey jobs -------------------------------------------------------------------------------------------


def test_a_survey_job_runs_to_a_download_in_json_and_csv(
    service: TwinService, researcher: TestClient
) -> None:
    service.set_consent("dan", "research", False)
    free = {"id": "teapot", "text": "What do you think of your teapot?"}
    started = researcher.post("/v1/surveys", json={"questions": [QUESTION, free], "panel": "gss"})
    assert started.status_code == 202, started.text
    job = started.json()
    assert started.headers["location"] == f"/v1/surveys/{job['job_id']}"
    assert job["status"] in ("queued", "running") and job["result"] is None
    assert (job["twins"], job["questions"], job["purpose"]) == (4, 2, "research")

    status = finished(researcher, job["job_id"])
    assert status["status"] == "done" and status["errors"] == []
    assert status["progress"] == {"done": 6, "total": 6}  # dan refused: 3 twins x 2 questions
    assert [r["twin_id"] for r in status["refused"]] == ["dan"]
    assert "withdrew consent for research" in status["refused"][0]["reason"]
    assert status["result"] == f"/v1/surveys/{job['job_id']}/result"

    records = researcher.get(status["result"]).json()
    assert [(r["twin_id"], r["question_id"]) for r in records] == [
        (t, q) for t in ("ann", "bob", "cyd") for q in ("gss:marital", "teapot")
    ]
    assert records[0]["answer"] == "Divorced" and records[0]["parts"]
    assert all(r["simulated"] is True for r in records)

    download = researcher.get(status["result"], params={"format": "csv"})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].endswith(f'{job["job_id"]}.csv"')
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert list(rows[0]) == [
        "twin_id",
        "question_id",
        "answer",
        "distribution",
        "citations",
        "reason",
        "evidence",
        "simulated",
    ]
    assert len(rows) == 6 and json.loads(rows[0]["distribution"])["Divorced"] > 0.5
    assert researcher.get(status["result"], params={"format": "xml"}).status_code == 422


def test_a_running_job_shows_progress_and_its_result_is_409_until_done(
    chat: GatedChat, researcher: TestClient
) -> None:
    chat.gate.clear()
    free = {"id": "teapot", "text": "What do you think of your teapot?"}
    job_id = researcher.post("/v1/surveys", json={"questions": [free], "twin_ids": ["ann"]}).json()["job_id"]
    deadline = time.monotonic() + 10
    while researcher.get(f"/v1/surveys/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    early = researcher.get(f"/v1/surveys/{job_id}/result")
    assert early.status_code == 409 and early.json()["error"] == "not_ready"
    assert "0 of 1 answers" in early.json()["message"]
    chat.gate.set()
    assert finished(researcher, job_id)["progress"] == {"done": 1, "total": 1}
    assert researcher.get(f"/v1/surveys/{job_id}/result").json()[0]["answer"] == "I bought a teapot."


def test_a_failed_job_says_why_and_keeps_the_answers_it_had(chat: GatedChat, researcher: TestClient) -> None:
    chat.broken = True
    free = {"id": "teapot", "text": "What do you think of your teapot?"}
    job_id = researcher.post(
        "/v1/surveys", json={"questions": [QUESTION, free], "twin_ids": ["ann", "bob"]}
    ).json()["job_id"]
    status = finished(researcher, job_id)
    assert status["status"] == "failed" and status["errors"] == ["RuntimeError: the model crashed"]
    assert status["progress"] == {"done": 1, "total": 4}
    kept = researcher.get(f"/v1/surveys/{job_id}/result").json()
    assert [(r["twin_id"], r["question_id"]) for r in kept] == [("ann", "gss:marital")]
    chat.broken = False  # the server and later jobs go on
    job_id = researcher.post("/v1/surveys", json={"questions": [free], "twin_ids": ["ann"]}).json()["job_id"]
    assert finished(researcher, job_id)["status"] == "done"


def test_a_job_is_visible_only_to_its_key_and_to_admins(
    service: TwinService, researcher: TestClient, admin: TestClient
) -> None:
    job_id = researcher.post("/v1/surveys", json={"questions": [QUESTION], "panel": "gss"}).json()["job_id"]
    finished(researcher, job_id)
    other = client_for(service, "researcher")
    for path in (f"/v1/surveys/{job_id}", f"/v1/surveys/{job_id}/result"):
        hidden = other.get(path)
        assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
    assert other.delete(f"/v1/surveys/{job_id}").status_code == 404
    assert admin.get(f"/v1/surveys/{job_id}").json()["status"] == "done"
    for crafted in ("job_0000000000000000", "..%2F..%2Fmeta.db", "job_../x"):
        assert researcher.get(f"/v1/surveys/{crafted}").status_code == 404


def test_a_finished_result_outlives_the_app_and_can_be_deleted(
    service: TwinService, researcher: TestClient
) -> None:
    job_id = researcher.post("/v1/surveys", json={"questions": [QUESTION], "panel": "gss"}).json()["job_id"]
    finished(researcher, job_id)
    # Another app on the same home (a restart) still serves the result, from the files under home/jobs.
    again = TestClient(create_app(service.settings, service=service), headers=dict(researcher.headers))
    assert again.get(f"/v1/surveys/{job_id}").json()["status"] == "done"
    assert len(again.get(f"/v1/surveys/{job_id}/result").json()) == 4
    assert again.delete(f"/v1/surveys/{job_id}").status_code == 204
    assert researcher.get(f"/v1/surveys/{job_id}").status_code == 404
    assert not list(jobs_folder(service.settings).glob(f"{job_id}*"))


def test_a_job_interrupted_by_a_stop_reads_as_failed(service: TwinService, researcher: TestClient) -> None:
    job_id = researcher.post("/v1/surveys", json={"questions": [QUESTION], "panel": "gss"}).json()["job_id"]
    finished(researcher, job_id)
    path = jobs_folder(service.settings) / f"{job_id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "running"}))
    fresh = TestClient(create_app(service.settings, service=service), headers=dict(researcher.headers))
    status = fresh.get(f"/v1/surveys/{job_id}").json()
    assert status["status"] == "failed" and "interrupted" in status["errors"][0]


def test_erasing_a_twin_removes_its_answers_from_survey_results(
    service: TwinService, researcher: TestClient
) -> None:
    service.set_consent("dan", "research", False)
    job_id = researcher.post("/v1/surveys", json={"questions": [QUESTION], "panel": "gss"}).json()["job_id"]
    finished(researcher, job_id)
    service.erase("ann")
    service.erase("dan")
    assert [r["twin_id"] for r in researcher.get(f"/v1/surveys/{job_id}/result").json()] == ["bob", "cyd"]
    assert researcher.get(f"/v1/surveys/{job_id}").json()["refused"] == []
    for path in jobs_folder(service.settings).iterdir():
        assert b'"ann"' not in path.read_bytes() and b"twin dan" not in path.read_bytes()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"questions": [QUESTION, {"id": "q2", "text": ""}], "panel": "gss"},
            "questions.1.text: is required",
        ),
        (
            {"questions": [QUESTION, {"id": "q2", "text": "?", "options": ["a"]}], "panel": "gss"},
            "questions.1.options",
        ),
        ({"questions": [QUESTION, 7], "panel": "gss"}, "questions.1: expected an object"),
        ({"questions": [QUESTION, QUESTION], "panel": "gss"}, "questions.1.id: 'gss:marital' is already"),
        ({"questions": [QUESTION]}, "panel, twin_ids: name a panel or list twin_ids"),
        ({"questions": [QUESTION], "panel": "gss", "twin_ids": ["ann"]}, "panel, twin_ids"),
        ({"questions": [QUESTION], "twin_ids": []}, "twin_ids: list at least one twin"),
        ({"questions": [], "panel": "gss"}, "body.questions"),
    ],
)
def test_a_bad_survey_gets_422_naming_the_question_and_field(
    researcher: TestClient, body: dict, named: str
) -> None:
    refused = researcher.post("/v1/surveys", json=body)
    assert refused.status_code == 422 and refused.json()["message"].startswith(named), refused.text


def test_a_survey_of_unknown_twins_or_an_empty_panel_is_404(researcher: TestClient) -> None:
    unknown = researcher.post("/v1/surveys", json={"questions": [QUESTION], "twin_ids": ["ann", "zz", "yy"]})
    assert unknown.status_code == 404 and "zz, yy" in unknown.json()["message"]
    empty = researcher.post("/v1/surveys", json={"questions": [QUESTION], "panel": "nobody-here"})
    assert empty.status_code == 404 and "has no twins" in empty.json()["message"]


# --- bad input is never a 500 ------------------------------------------------------------------------------


BAD_BODIES: list[Any] = [
    None,
    [],
    "text",
    17,
    {},
    {"events": None},
    {"events": "x"},
    {"events": {"customer_id": "a"}},
    {"events": [None, 1, True, "x", [], {}]},
    {"events": [{"customer_id": {"a": 1}, "text": ["x"]}]},
    {"events": [{"customer_id": "a", "text": "x", "timestamp": {"y": 1}}]},
    {"events": [{"customer_id": "a", "text": "x", "timestamp": 1e300}]},
    {"events": [{"customer_id": "a", "text": "x", "event_id": "\u0000"}]},
    {"events": [{"customer_id": "a", "text": "x" * 30_000}]},
    {"events": [{"customer_id": "a", "text": "x"}], "panel": 5},
    {"events": [{"customer_id": "a", "text": "x"}], "panel": " "},
    {"question": None},
    {"question": {"id": True, "text": 1, "options": [1, None]}},
    {"question": QUESTION, "purpose": "ads"},
    {"questions": "all", "panel": "gss"},
    {"questions": [QUESTION], "panel": ["gss"]},
    {"questions": [QUESTION], "twin_ids": "ann"},
    {"questions": [QUESTION], "twin_ids": [1, None]},
    {"questions": [{"id": "q", "text": "?", "type": "essay"}], "panel": "gss"},
    {"add": "ann"},
    {"add": [None]},
    {"members": None},
]
ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/twins/ann/events"),
    ("POST", "/v1/twins/ann/choose"),
    ("POST", "/v1/surveys"),
    ("PATCH", "/v1/panels/gss"),
    ("PUT", "/v1/panels/gss"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_bad_input_is_never_a_500(admin: TestClient, method: str, path: str) -> None:
    for body in BAD_BODIES:
        reply = admin.request(method, path, json=body)
        assert reply.status_code < 500, (body, reply.text)
        assert reply.status_code < 300 or reply.json()["error"], reply.text
    for raw in (b"{", b"\xff\xfe", b"not json"):
        reply = admin.request(method, path, content=raw, headers={"content-type": "application/json"})
        assert reply.status_code == 422, (raw, reply.text)
    for path_ in ("/v1/surveys/%00", "/v1/surveys/job_zz/result?format=", "/v1/panels/" + "p" * 300):
        assert admin.get(path_).status_code < 500
