"""The customer in control, on fakes: consent per purpose, audit, corrections, forgetting, export, erasure.

The same behaviours run on real Chroma, MiniLM and SmolLM2 in tests/integration/test_control_real.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.api import client_for, history_records, survey_records
from twinchat.api.app import create_app
from twinchat.domain.control import LOCAL_CUSTOMER, ConsentDenied, Use
from twinchat.domain.survey import Question
from twinchat.services import MemoryNotFound, TwinNotFound, TwinService
from twinchat.testing import FakeChatModel, fake_service

RESEARCHER = Use("local:ada", "research")
PRODUCT = Use("key:shop", "product")

HISTORY = [
    ("ann", "I live in Paris", "crm"),
    ("ann", "Bought a red teapot and six blue mugs", "purchase"),
    ("ann", "Reviewed the garden hose: leaks, two stars", "review"),
    ("bob", "I live in Paris near the station", "crm"),
    ("bob", "Bought garden gloves and a watering can", "purchase"),
]
SURVEY = [
    ("ann", "Divorced"),
    ("bob", "Married"),
    ("cyd", "Married"),
    ("dan", "Never married"),
]


@pytest.fixture
def chat() -> FakeChatModel:
    return FakeChatModel(default="I live in Lyon now [E1].")


@pytest.fixture
def service(tmp_path: Path, chat: FakeChatModel) -> TwinService:
    service = fake_service(tmp_path, chat_model=chat, min_relevance=0.1)
    records = history_records(HISTORY)
    records += survey_records("gss:marital", "What is your marital status?", SURVEY)
    assert service.ingest_records(records).stored == len(records)
    return service


def memory_ids(service: TwinService, twin_id: str, text: str) -> list[str]:
    return [m["event_id"] for m in service.memories(twin_id) if text in m["text"]]


# --- consent -----------------------------------------------------------------------------------------------


def test_new_twins_get_the_default_consents_and_nothing_else(service: TwinService) -> None:
    consents = service.consents("ann")
    assert {p: c.granted if c else None for p, c in consents.items()} == {
        "research": True,
        "product": True,
        "marketing": None,
    }


def test_withdrawn_consent_refuses_that_purpose_at_once_and_says_why(service: TwinService) -> None:
    service.ask("ann", "Where do you live?", use=RESEARCHER)
    service.set_consent("ann", "research", False)
    with pytest.raises(ConsentDenied, match="ann: the customer withdrew consent for research on"):
        service.ask("ann", "Where do you live?", use=RESEARCHER)
    with pytest.raises(ConsentDenied):
        service.choose(
            "ann", Question("gss:marital", "Marital status?", ("Married", "Divorced")), use=RESEARCHER
        )
    with pytest.raises(ConsentDenied):
        list(service.survey([Question("q", "Why?")], ["ann"], use=RESEARCHER))
    session = service.start_session("ann")
    with pytest.raises(ConsentDenied):
        service.chat(session.session_id, "Hello", use=RESEARCHER)
    # Other purposes and other twins are untouched; the customer can always see their own twin.
    assert not service.ask("ann", "Where do you live?", use=PRODUCT).abstained
    assert not service.ask("bob", "Where do you live?", use=RESEARCHER).abstained
    assert service.memories("ann", use=LOCAL_CUSTOMER)
    service.set_consent("ann", "research", True)
    assert not service.ask("ann", "Where do you live?", use=RESEARCHER).abstained


def test_a_purpose_never_granted_is_refused(service: TwinService) -> None:
    with pytest.raises(ConsentDenied, match="never granted consent for marketing"):
        service.ask("ann", "Would you buy a teapot?", use=Use("local", "marketing"))


def test_a_survey_can_leave_out_refusing_twins_and_report_them(service: TwinService) -> None:
    service.set_consent("bob", "research", False)
    refused: list[str] = []
    question = Question(
        "gss:marital", "What is your marital status?", ("Married", "Divorced", "Never married")
    )
    rows = list(service.survey([question], ["ann", "bob"], use=RESEARCHER, refused=refused))
    assert [r["twin_id"] for r in rows] == ["ann"]
    assert len(refused) == 1 and "bob" in refused[0]


def test_unknown_purposes_and_twins_are_clear_errors(service: TwinService) -> None:
    with pytest.raises(ValueError, match="purpose: 'ads' is not one of research, product, marketing"):
        service.set_consent("ann", "ads", True)
    with pytest.raises(ValueError, match="purpose: 'ads'"):
        service.ask("ann", "Hi?", use=Use("x", "ads"))
    with pytest.raises(TwinNotFound):
        service.set_consent("nobody", "research", True)


# --- audit -------------------------------------------------------------------------------------------------


def test_every_use_and_change_is_audited_with_actor_purpose_and_evidence(service: TwinService) -> None:
    answer = service.ask("ann", "Where do you live?", use=PRODUCT)
    service.choose("ann", Question("gss:marital", "Marital status?", ("Married", "Divorced")), use=RESEARCHER)
    service.set_consent("ann", "product", False, use=Use("local:ann", "self"))
    with pytest.raises(ConsentDenied):
        service.ask("ann", "Where do you live?", use=PRODUCT)
    service.correct("ann", "I live in Lyon now, not Paris", use=Use("local:ann", "self"))
    service.export("ann", use=Use("local:ann", "self"))
    ingested, *entries = service.audit(twin_id="ann")
    assert (ingested.action, ingested.detail) == ("ingest", {"stored": 4})
    assert [(e.action, e.actor, e.purpose) for e in entries] == [
        ("ask", "key:shop", "product"),
        ("choose", "local:ada", "research"),
        ("consent", "local:ann", "self"),
        ("refused", "key:shop", "product"),
        ("correct", "local:ann", "self"),
        ("export", "local:ann", "self"),
    ]
    assert entries[0].evidence == [c.event_id for c in answer.citations] and entries[0].evidence
    assert entries[3].detail == {"attempted": "ask"}
    assert all(e.twin_id == "ann" for e in entries) and not service.audit(twin_id="nobody")


# --- corrections -------------------------------------------------------------------------------------------


def test_a_correction_supersedes_what_it_contradicts_and_nothing_else(service: TwinService) -> None:
    paris = memory_ids(service, "ann", "I live in Paris")
    untouched = {m["event_id"] for m in service.memories("ann")} - set(paris)
    result = service.correct("ann", "I no longer live in Paris, I moved to Lyon")
    assert result.superseded == paris
    rows = {m["event_id"]: m for m in service.memories("ann")}
    assert rows[result.event_id]["source"] == "correction" and rows[result.event_id]["valid"]
    old = rows[paris[0]]
    assert not old["valid"]
    assert old["status"]["state"] == "superseded" and old["status"]["invalidated_by"] == result.event_id
    assert old["status"]["invalid_since"]
    assert all(rows[e]["valid"] for e in untouched)
    # Bob's identical fact is his own: untouched.
    assert all(m["valid"] for m in service.memories("bob"))


def test_answers_use_the_correction_and_never_the_superseded_memory(service: TwinService) -> None:
    paris = memory_ids(service, "ann", "I live in Paris")[0]
    result = service.correct("ann", "I no longer live in Paris, I moved to Lyon")
    cited = [c.event_id for c in service.ask("ann", "Where do you live?").citations]
    assert cited[0] == result.event_id and paris not in cited
    assert paris not in [m.event.event_id for m in service.retrieve("ann", "Do you live in Paris?")]
    assert paris in [m["event_id"] for m in service.memories("ann")]  # kept in the history
    assert paris not in [m["event_id"] for m in service.memories("ann", include_invalid=False)]


def test_a_correction_naming_a_survey_answer_becomes_the_multiple_choice_answer(service: TwinService) -> None:
    question = Question(
        "gss:marital", "What is your marital status?", ("Married", "Divorced", "Never married")
    )
    assert service.choose("ann", question).answer == "Divorced"
    result = service.correct("ann", "Correction: my marital status is married")
    assert result.survey is not None and (result.survey.key, result.survey.answer) == (
        "gss:marital",
        "Married",
    )
    assert len(result.superseded) == 1
    assert service.choose("ann", question).answer == "Married"
    assert service.choose("dan", question).answer == "Never married"  # others keep theirs


def test_a_customer_corrects_their_twin_in_conversation(service: TwinService, chat: FakeChatModel) -> None:
    session = service.start_session("ann")
    me = Use("local:ann", "self")
    reply = service.chat(
        session.session_id, "Actually, I moved to Lyon, I don't live in Paris anymore", use=me
    )
    assert reply.model == "correction" and not reply.simulated and "replaces 1 earlier memory" in reply.answer
    assert [m["source"] for m in service.memories("ann")].count("correction") == 1
    # The same words from a researcher are a question to the twin, not a correction.
    before = len(chat.calls)
    service.chat(service.start_session("ann").session_id, "Actually, do you live in Paris?", use=RESEARCHER)
    assert len(chat.calls) == before + 1
    assert [m["source"] for m in service.memories("ann")].count("correction") == 1


def test_an_empty_correction_is_refused_and_stores_nothing(service: TwinService) -> None:
    count = service.store.count("ann")
    with pytest.raises(ValueError, match="statement: must not be empty"):
        service.correct("ann", "   ")
    assert service.store.count("ann") == count


# --- forget, memories, export, erase ----------------------------------------------------------------------


def test_forgetting_one_memory_removes_it_and_keeps_a_tombstone(service: TwinService) -> None:
    hose = memory_ids(service, "ann", "garden hose")[0]
    service.forget("ann", hose)
    assert not memory_ids(service, "ann", "garden hose")
    assert service.twin("ann").n_events == 3
    exported = service.export("ann")
    assert [f["event_id"] for f in exported["forgotten"]] == [hose]
    assert "garden hose" not in str(exported)
    with pytest.raises(MemoryNotFound, match="twinchat memories ann"):
        service.forget("ann", hose)


def test_memories_are_searchable_by_words_and_meaning(service: TwinService) -> None:
    found = [m["text"] for m in service.memories("ann", search="teapot")]
    assert found == ["Bought a red teapot and six blue mugs"]
    assert not service.memories("ann", search="bicycle")


def test_export_holds_everything_about_the_customer_and_nothing_about_others(service: TwinService) -> None:
    service.ask("ann", "Where do you live?", use=PRODUCT)
    service.correct("ann", "I no longer live in Paris, I moved to Lyon")
    exported = service.export("ann")
    assert exported["format"] == "twinchat-export/1" and exported["twin"]["twin_id"] == "ann"
    assert len(exported["events"]) == 5 and len(exported["corrections"]) == 1
    assert sum(not e["valid"] for e in exported["events"]) == 1
    assert exported["consents"]["research"]["granted"] is True and exported["consents"]["marketing"] is None
    assert [a["action"] for a in exported["audit"]] == ["ingest", "ask", "correct", "export"]
    assert exported["survey_answers"][0]["answer"] == "Divorced"
    assert "bob" not in str(exported) and "station" not in str(exported)


def test_erasure_removes_the_twin_and_leaves_only_a_tombstone(service: TwinService) -> None:
    service.ask("ann", "Where do you live?", use=PRODUCT)
    tombstone = service.erase("ann")
    with pytest.raises(TwinNotFound):
        service.twin("ann")
    assert service.store.count("ann") == 0 and not service.registry.survey_answers(twin_ids=["ann"])
    assert not service.audit(twin_id="ann")
    entries = service.audit()
    assert entries[-1].action == "erase" and entries[-1].twin_id == tombstone
    assert "ann" not in str([e.to_dict() for e in entries])
    assert [t.twin_id for t in service.twins()] == ["bob", "cyd", "dan"]


# --- over HTTP ---------------------------------------------------------------------------------------------


@pytest.fixture
def client(service: TwinService) -> TestClient:
    """Ann's own key: the customer in control of her twin."""
    return client_for(service, "customer", "ann")


@pytest.fixture
def product(service: TwinService) -> TestClient:
    return client_for(service, "product")


def test_the_api_corrects_lists_and_forgets_memories(client: TestClient) -> None:
    made = client.post(
        "/v1/twins/ann/corrections", json={"statement": "I no longer live in Paris, I moved to Lyon"}
    )
    assert made.status_code == 201 and len(made.json()["superseded"]) == 1
    rows = client.get("/v1/twins/ann/memories").json()
    assert sum(not r["valid"] for r in rows) == 1
    assert {r["status"]["state"] for r in rows if not r["valid"]} == {"superseded"}
    assert len(client.get("/v1/twins/ann/memories", params={"valid_only": True}).json()) == 4
    assert [r["text"] for r in client.get("/v1/twins/ann/memories", params={"search": "teapot"}).json()] == [
        "Bought a red teapot and six blue mugs"
    ]
    hose = next(r["event_id"] for r in rows if "hose" in r["text"])
    assert client.delete(f"/v1/twins/ann/memories/{hose}").status_code == 204
    again = client.delete(f"/v1/twins/ann/memories/{hose}")
    assert again.status_code == 404 and again.json()["error"] == "not_found"
    assert client.post("/v1/twins/ann/corrections", json={"statement": ""}).status_code == 422


def test_the_api_refuses_a_withdrawn_purpose_with_403_and_why(
    service: TwinService, client: TestClient, product: TestClient
) -> None:
    ask = {"question": "Where do you live?"}
    assert product.post("/v1/twins/ann/ask", json=ask).status_code == 200
    changed = client.put("/v1/twins/ann/consent/product", json={"granted": False})
    assert changed.status_code == 200 and changed.json()["granted"] is False
    refused = product.post("/v1/twins/ann/ask", json=ask)
    assert refused.status_code == 403 and refused.json()["error"] == "no_consent"
    assert "withdrew consent for product" in refused.json()["message"]
    assert product.post("/v1/twins/ann/ask", json={**ask, "stream": True}).status_code == 403
    session = product.post("/v1/twins/ann/sessions").json()["session_id"]
    assert product.post(f"/v1/sessions/{session}/messages", json={"message": "Hi"}).status_code == 403
    assert product.post("/v1/twins/bob/ask", json=ask).status_code == 200  # Bob did not withdraw
    researcher = client_for(service, "researcher")
    assert researcher.post("/v1/twins/ann/ask", json=ask).status_code == 200
    assert client.get("/v1/twins/ann/consent").json()["product"]["granted"] is False
    assert client.put("/v1/twins/ann/consent/ads", json={"granted": True}).status_code == 422
    audit = client.get("/v1/audit").json()
    actions = [(e["action"], e["purpose"]) for e in audit if e["action"] not in ("ingest", "key")]
    assert actions == [
        ("ask", "product"),
        ("consent", "self"),
        ("refused", "product"),
        ("refused", "product"),
        ("refused", "product"),
        ("ask", "research"),
    ]


def test_the_api_exports_and_erases(service: TwinService, client: TestClient) -> None:
    exported = client.get("/v1/twins/ann/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="twinchat-export-ann.json"'
    assert exported.json()["twin"]["twin_id"] == "ann" and len(exported.json()["events"]) == 4
    erased = client.delete("/v1/twins/ann")
    assert erased.status_code == 200 and erased.json()["tombstone"].startswith("erased-")
    assert client.get("/v1/twins/ann").status_code == 401  # her key went with her
    admin = client_for(service, "admin")
    assert admin.get("/v1/twins/ann").status_code == 404
    assert admin.delete("/v1/twins/ann").status_code == 404
    assert admin.get("/v1/audit").json()[-2]["twin_id"] == erased.json()["tombstone"]


# --- keys and roles ----------------------------------------------------------------------------------------


def test_no_key_or_a_bad_or_revoked_key_gets_401(service: TwinService) -> None:
    app = create_app(service.settings, service=service)
    anonymous = TestClient(app)
    missing = anonymous.get("/v1/twins")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "twinchat keys create" in missing.json()["message"]
    assert TestClient(app, headers={"Authorization": "Bearer tck_nope_x"}).get("/v1/twins").status_code == 401
    made, secret = service.create_key("product", label="shop")
    keyed = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert keyed.get("/v1/twins").status_code == 200
    service.revoke_key(made.key_id)
    assert keyed.get("/v1/twins").json()["message"] == "unknown or revoked API key"
    assert anonymous.get("/healthz").status_code == 200


def test_a_customer_key_sees_only_its_own_twin(service: TwinService, client: TestClient) -> None:
    assert [t["twin_id"] for t in client.get("/v1/twins").json()] == ["ann"]
    for method, path, body in [
        ("GET", "/v1/twins/bob", None),
        ("GET", "/v1/twins/bob/profile", None),
        ("GET", "/v1/twins/bob/memories", None),
        ("POST", "/v1/twins/bob/corrections", {"statement": "I live in Rome"}),
        ("PUT", "/v1/twins/bob/consent/research", {"granted": False}),
        ("GET", "/v1/twins/bob/export", None),
        ("DELETE", "/v1/twins/bob", None),
        ("POST", "/v1/twins/bob/ask", {"question": "Where do you live?"}),
        ("GET", "/v1/twins/nobody", None),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"] == "not_found"
    other = client_for(service, "researcher").post("/v1/twins/bob/sessions").json()["session_id"]
    assert client.get(f"/v1/sessions/{other}").status_code == 404
    assert all(e["twin_id"] == "ann" for e in client.get("/v1/audit", params={"twin_id": "bob"}).json())
    assert service.twin("bob").n_events == 3 and all(m["valid"] for m in service.memories("bob"))


def test_a_customer_corrects_their_twin_by_chatting_with_it(client: TestClient) -> None:
    session = client.post("/v1/twins/ann/sessions").json()["session_id"]
    reply = client.post(f"/v1/sessions/{session}/messages", json={"message": "Actually, I moved to Lyon"})
    assert reply.status_code == 200 and reply.json()["model"] == "correction"
    assert [m["source"] for m in client.get("/v1/twins/ann/memories").json()].count("correction") == 1


def test_each_role_does_what_it_is_for_and_no_more(service: TwinService, product: TestClient) -> None:
    researcher = client_for(service, "researcher")
    ask = {"question": "Where do you live?"}
    assert (
        researcher.post("/v1/twins/ann/ask", json={**ask, "purpose": "product"}).json()["error"]
        == "forbidden"
    )
    service.set_consent("ann", "marketing", True)
    assert product.post("/v1/twins/ann/ask", json={**ask, "purpose": "marketing"}).status_code == 200
    for client in (researcher, product):
        assert (
            client.post("/v1/twins/ann/corrections", json={"statement": "I live in Rome"}).status_code == 403
        )
        assert client.get("/v1/twins/ann/export").status_code == 403
        assert client.delete("/v1/twins/ann").status_code == 403
        assert client.get("/v1/audit").status_code == 403
        assert client.post("/v1/keys", json={"role": "admin"}).status_code == 403
    assert service.twin("ann").n_events == 4


def test_an_admin_manages_keys_over_the_api(service: TwinService) -> None:
    admin = client_for(service, "admin")
    made = admin.post("/v1/keys", json={"role": "customer", "twin_id": "bob", "label": "bob's app"})
    assert made.status_code == 201 and made.json()["key"].startswith("tck_")
    bob = TestClient(admin.app, headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert [t["twin_id"] for t in bob.get("/v1/twins").json()] == ["bob"]
    listed = admin.get("/v1/keys").json()
    assert [k["role"] for k in listed] == ["admin", "customer"] and "key" not in listed[1]
    assert admin.post("/v1/keys", json={"role": "customer"}).status_code == 422
    assert admin.post("/v1/keys", json={"role": "customer", "twin_id": "nobody"}).status_code == 404
    assert admin.delete(f"/v1/keys/{made.json()['key_id']}").status_code == 204
    assert bob.get("/v1/twins").status_code == 401
    assert admin.delete(f"/v1/keys/{made.json()['key_id']}").status_code == 404
    # Keys are stored as digests only.
    assert made.json()["key"].encode() not in (service.settings.home / "meta.db").read_bytes()
