"""Property-based requests against the app's own OpenAPI schema (schemathesis): no input makes a 5xx.

Every operation gets generated requests, valid and invalid, with an admin key and again with a customer key
bound to one twin. The app runs on fakes (hash embedder, in-memory store, SQLite) over a temporary folder
seeded with three twins, a panel, a conversation and a survey job. Random ids and bodies would only ever meet
404s and 422s, so each example also draws whether its ids name something that exists, and whether a body
field the schema leaves open (a question, the messages, the events) gets a well-formed value.

Erasure, forgetting, revoking and deleting a job would use up the seeded data and make later examples
meaningless (a customer key even goes with its twin's erasure), so they act on things made for that example:
`DELETE /v1/twins/{id}` erases a fresh twin (with a fresh customer key of its own in the customer run),
`DELETE .../memories/{event_id}` forgets a fresh event, `DELETE /v1/keys/{id}` revokes a fresh key and
`DELETE /v1/surveys/{id}` deletes a fresh job. Withdrawn consents, and seeded twins taken out of the panel,
are put back after the example.

Reproducible: Hypothesis is derandomized and keeps no example database; a failure prints the request as curl.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error

from twinchat.api.app import create_app
from twinchat.domain.control import SELF, Use
from twinchat.domain.keys import ApiKey
from twinchat.domain.readers import RawRecord
from twinchat.domain.survey import Question
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, fake_service

pytestmark = pytest.mark.slow

SEEDED = ("C-100", "C-200", "C-300")
PANEL = "fuzz"
HISTORY = [
    ("C-100", "Bought a 3 tier regency cake stand and a set of cake tins", "purchase", "2011-03-02"),
    ("C-100", "Support ticket: the cake stand arrived chipped, asked for a refund", "support", "2011-03-09"),
    ("C-100", "Survey: prefers delivery on Saturdays and pays by card", "survey", "2011-03-20"),
    ("C-200", "Bought twelve white hanging heart tealight holders", "purchase", "2011-01-12"),
    ("C-200", "Review: the tealight holders are lovely, 5 out of 5", "review", "2011-02-01"),
    ("C-300", "Bought a child's garden rake and a watering can", "purchase", "2011-05-13"),
    ("C-300", "Posted on social media: love gardening with my kids every weekend", "social", "2011-05-20"),
]
QUESTION = {
    "id": "day",
    "text": "Which day do you prefer for deliveries?",
    "options": ["Weekday", "Saturday"],
}
MESSAGES = [{"role": "user", "content": "What do you usually buy?"}]
# The key goes into every request: negative cases then break the request itself rather than drop the key
# (requests without a key, or with a bad one, are tested in the unit tests).
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
FUZZ_SETTINGS = settings(
    max_examples=30,  # per operation and key: about 900 requests a run, in about 30 s
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class FuzzedApi:
    """The app under test, what was seeded into it, and the key its requests carry."""

    app: FastAPI
    service: TwinService
    key: ApiKey
    secret: str
    twins: tuple[str, ...]  # the seeded twins this key may see
    session_id: str
    job_id: str
    counter: Iterator[int] = field(default_factory=itertools.count)

    def fresh_twin(self) -> str:
        twin_id = f"throwaway-{next(self.counter)}"
        self.service.ingest_records([_event(twin_id, "Bought a doormat", "purchase", "2011-06-01")])
        return twin_id

    def fresh_event(self, twin_id: str) -> str:
        text = f"Asked about gift wrapping, note {next(self.counter)}"
        self.service.ingest_records([_event(twin_id, text, "support", "2011-06-02")])
        return next(m["event_id"] for m in self.service.memories(twin_id) if m["text"] == text)

    def fresh_job(self) -> str:
        jobs = self.app.state.survey_jobs
        use = Use(self.key.actor, "research")
        return jobs.submit(
            [Question.from_dict(QUESTION)], list(SEEDED), use=use, owner=self.key.key_id
        ).job_id


def _event(customer_id: str, text: str, source: str, timestamp: str) -> RawRecord:
    record = {"customer_id": customer_id, "text": text, "source": source, "timestamp": timestamp}
    return RawRecord("fuzz-seed", None, record)


@pytest.fixture(params=["admin", "customer"])
def fuzzed_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FuzzedApi]:
    service = fake_service(tmp_path, chat_model=FakeChatModel(default="I think so [E1]."))
    service.ingest_records([_event(*row) for row in HISTORY], panel=PANEL)
    app = create_app(service.settings, service=service)
    admin, admin_secret = service.create_key("admin")
    seeding = TestClient(app, headers={"Authorization": f"Bearer {admin_secret}"})
    job = seeding.post("/v1/surveys", json={"questions": [QUESTION], "panel": PANEL})
    assert job.status_code == 202, job.text
    session_id = service.start_session(SEEDED[0]).session_id
    if request.param == "admin":
        key, secret, twins = admin, admin_secret, SEEDED
    else:
        key, secret = service.create_key("customer", twin_id=SEEDED[0])
        twins = SEEDED[:1]
    yield FuzzedApi(app, service, key, secret, twins, session_id, job.json()["job_id"])
    app.state.survey_jobs.close()


def test_no_input_makes_a_server_error(fuzzed_api: FuzzedApi) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.app, config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    last: list[str] = []  # the request last sent: after shrinking, the smallest failing one
    for operation in operations:
        cases = st.one_of(operation.as_strategy(mode) for mode in GenerationMode)

        @FUZZ_SETTINGS
        @given(case=cases, data=st.data())
        def no_server_error(case: Case, data: st.DataObject) -> None:
            headers = {"Authorization": f"Bearer {_aim(case, data, fuzzed_api)}"}
            last[:] = [case.as_curl_command(headers=headers)]
            try:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])
            finally:
                _restore(case, fuzzed_api.service)

        try:
            no_server_error()
        except Exception as exc:  # every operation runs; the failures are reported together
            role = fuzzed_api.key.role
            failures.append(f"{operation.label} ({role} key): {type(exc).__name__}: {exc}\n{''.join(last)}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/v1/twins/C-100/ask", b"\xd7\xda"),  # found by the fuzzing above: 400 {"detail": ...}
        ("GET", "/v1/no-such-thing", None),
        ("PATCH", "/v1/twins", None),
    ],
    ids=["body-not-utf8", "unknown-path", "wrong-method"],
)
def test_errors_the_framework_raises_keep_the_error_shape(
    fuzzed_api: FuzzedApi, method: str, path: str, content: bytes | None
) -> None:
    client = TestClient(fuzzed_api.app, headers={"Authorization": f"Bearer {fuzzed_api.secret}"})
    response = client.request(method, path, content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error", "message"}, response.text


def _pick(data: st.DataObject, name: str, generated: Any, existing: list[Any]) -> Any:
    """One of the existing values or the generated one, drawn so that Hypothesis replays and shrinks it."""
    return data.draw(st.sampled_from([*existing, generated]), label=name)


def _aim(case: Case, data: st.DataObject, api: FuzzedApi) -> str:
    """Point the case at existing things; returns the key secret to send."""
    secret = api.secret
    params = case.path_parameters or {}
    existing: dict[str, list[Any]] = {
        "twin_id": list(api.twins),
        "session_id": [api.session_id],
        "job_id": [api.job_id],
        "panel": [PANEL],
        "model": [f"twin:{t}" for t in api.twins],
    }
    for name, value in params.items():
        if name in existing:
            params[name] = _pick(data, name, value, existing[name])
    if case.method == "DELETE":
        if case.path == "/v1/twins/{twin_id}":
            if params["twin_id"] in SEEDED or data.draw(st.booleans(), label="erase a twin"):
                params["twin_id"] = api.fresh_twin()
                if api.key.role == "customer":
                    secret = api.service.create_key("customer", twin_id=params["twin_id"])[1]
        elif case.path == "/v1/twins/{twin_id}/memories/{event_id}":
            if params["twin_id"] in SEEDED and data.draw(st.booleans(), label="forget an event"):
                params["event_id"] = api.fresh_event(params["twin_id"])
        elif case.path == "/v1/keys/{key_id}":
            if data.draw(st.booleans(), label="revoke a key"):
                params["key_id"] = api.service.create_key("product")[0].key_id
        elif case.path == "/v1/surveys/{job_id}":
            if params["job_id"] == api.job_id or data.draw(st.booleans(), label="delete a job"):
                params["job_id"] = api.fresh_job()
    if isinstance(case.body, dict):
        _aim_body(case.body, data, api)
    return secret


def _aim_body(body: dict[str, Any], data: st.DataObject, api: FuzzedApi) -> None:
    """Well-formed values, sometimes, for the fields the schema leaves open or names by id."""
    well_formed: dict[str, list[Any]] = {
        "model": [f"twin:{t}" for t in api.twins],
        "messages": [MESSAGES],
        "panel": [PANEL],
        "twin_ids": [list(api.twins)],
        "question": [QUESTION],  # choose's; ask's is a string, generated well enough
        "questions": [[QUESTION]],
        "events": [[{"customer_id": api.twins[0], "text": "Bought a lantern", "timestamp": "2011-07-01"}]],
    }
    for name, values in well_formed.items():
        if name in body and not (name == "question" and isinstance(body[name], str)):
            body[name] = _pick(data, name, body[name], values)
    if "questions" in body and data.draw(st.booleans(), label="survey the panel"):
        body["panel"] = PANEL  # a survey names a panel or twin_ids, which the schema cannot say
        body.pop("twin_ids", None)


def _restore(case: Case, service: TwinService) -> None:
    """Undo what an example did to the seeded consents and panel, so that later ones can use them."""
    if case.path == "/v1/panels/{panel}" and service.panels().get(PANEL, 0) < len(SEEDED):
        service.set_panel(PANEL, add=SEEDED)
    if case.path != "/v1/twins/{twin_id}/consent/{purpose}" or case.method != "PUT":
        return
    for twin_id in SEEDED:
        consents = service.consents(twin_id)
        for purpose in service.settings.default_consent:
            if not (consents.get(purpose) and consents[purpose].granted):
                service.set_consent(twin_id, purpose, True, use=Use("fuzz", SELF))
