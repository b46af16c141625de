"""Data over real HTTP on the real pieces: a batch with a bad item into MiniLM and Chroma, structured answers,
and a survey job over a small panel (SmolLM2 answering its free question) run to a CSV download."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import HISTORY, served
from twinchat.jobs import jobs_folder
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

DELIVERY = {
    "id": "delivery_day",
    "text": "Which day do you prefer for deliveries?",
    "options": ["Weekday", "Saturday", "Sunday"],
}
ANSWERS = [("C-100", "Weekday"), ("C-200", "Saturday"), ("C-300", "Saturday")]


@pytest.fixture
def base_url(real_service: TwinService) -> Iterator[str]:
    with served(real_service) as url:
        yield url


def client(service: TwinService, base_url: str, role: str) -> httpx.Client:
    _, key = service.create_key(role)
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_ingest_a_batch_then_survey_a_panel_to_a_csv_download(
    real_service: TwinService, base_url: str
) -> None:
    admin, researcher = client(real_service, base_url, "admin"), client(real_service, base_url, "researcher")
    survey_events = [
        {
            "customer_id": c,
            "text": f"Q: {DELIVERY['text']} A: {a}",
            "source": "survey",
            "question_id": DELIVERY["id"],
            "question": DELIVERY["text"],
            "answer": a,
            "timestamp": "2011-06-01",
        }
        for c, a in ANSWERS
    ]
    bad = {"customer_id": "C-100", "text": "Called about an order", "timestamp": "last tuesday"}
    batch = [*HISTORY[:4], bad, *HISTORY[4:], *survey_events]
    made = admin.post("/v1/events", json={"events": batch, "panel": "pilot"})
    assert made.status_code == 201, made.text
    report = made.json()
    assert report["stored"] == len(batch) - 1 and report["new_twins"] == ["C-100", "C-200", "C-300"]
    assert [(p["index"], p["field"]) for p in report["rejected"]] == [(4, "timestamp")]
    assert "is not ISO 8601" in report["rejected"][0]["reason"]
    again = admin.post("/v1/events", json={"events": batch, "panel": "pilot"})
    assert again.status_code == 200 and again.json()["duplicates"] == len(batch) - 1
    # Stored in Chroma, embedded by MiniLM: the twin finds the event by meaning.
    assert any(
        "cake stand" in c.event.text for c in [s.memory for s in real_service.retrieve("C-100", "baking")]
    )

    assert researcher.get("/v1/panels").json() == [{"panel": "pilot", "twins": 3}]
    choice = researcher.post("/v1/twins/C-200/choose", json={"question": DELIVERY})
    assert choice.status_code == 200 and choice.json()["answer"] == "Saturday"
    assert choice.json()["evidence"] == "own_answer"

    real_service.set_consent("C-300", "research", False)
    free = {"id": "stand", "text": "What did you think of the cake stand?"}
    started = researcher.post("/v1/surveys", json={"questions": [DELIVERY, free], "panel": "pilot"})
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    deadline = time.monotonic() + 300
    while (status := researcher.get(location).json())["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["status"] == "done", status
    assert status["progress"] == {"done": 4, "total": 4}
    assert [r["twin_id"] for r in status["refused"]] == ["C-300"]

    download = researcher.get(status["result"], params={"format": "csv"})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["twin_id"], r["question_id"]) for r in rows] == [
        (t, q) for t in ("C-100", "C-200") for q in ("delivery_day", "stand")
    ]
    by_pair = {(r["twin_id"], r["question_id"]): r for r in rows}
    assert by_pair["C-100", "delivery_day"]["answer"] == "Weekday"
    assert json.loads(by_pair["C-200", "delivery_day"]["distribution"])["Saturday"] > 0.5
    # The free question went to the local LLM, grounded in C-100's history of the cake stand.
    stand = json.loads(by_pair["C-100", "stand"]["citations"])
    assert by_pair["C-100", "stand"]["answer"] and any("cake stand" in c["text"] for c in stand)
    assert (jobs_folder(real_service.settings) / f"{status['job_id']}.jsonl").is_file()
    other = client(real_service, base_url, "researcher")
    assert other.get(location).status_code == 404
