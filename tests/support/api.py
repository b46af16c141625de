"""Helpers shared by the unit tests of the API and the UI: records from tuples, clients with a key."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.testclient import TestClient

from twinchat.api.app import create_app
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService


def history_records(rows: Sequence[tuple[str, str, str]]) -> list[RawRecord]:
    """(customer, text, source) rows as records, dated one day apart from 2020-01-01."""
    return [
        RawRecord("history", i, {"customer_id": c, "text": t, "source": s, "timestamp": f"2020-01-0{i + 1}"})
        for i, (c, t, s) in enumerate(rows)
    ]


def survey_records(question_id: str, question: str, answers: Sequence[tuple[str, str]]) -> list[RawRecord]:
    """(customer, answer) rows as structured survey answers to one question."""
    return [
        RawRecord(
            "survey",
            i,
            {
                "customer_id": c,
                "text": f"Q: {question} A: {a}",
                "source": "survey",
                "question_id": question_id,
                "question": question,
                "answer": a,
            },
        )
        for i, (c, a) in enumerate(answers)
    ]


def client_for(service: TwinService, role: str, twin_id: str | None = None) -> TestClient:
    """A test client of the service's API that sends a new key of this role."""
    _, key = service.create_key(role, twin_id=twin_id)
    return TestClient(
        create_app(service.settings, service=service), headers={"Authorization": f"Bearer {key}"}
    )
