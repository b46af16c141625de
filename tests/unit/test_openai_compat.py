"""OpenAI-compatible twins on fakes: the chat completion and model formats, conversations, keys and errors.

The official openai SDK and LangChain's ChatOpenAI run against the real pieces in
tests/integration/test_openai_sdk.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api import client_for, history_records
from twinchat.api.routes_openai import CleanText
from twinchat.domain.models import Message
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, fake_service

HISTORY = [
    ("ann", "Bought a red teapot with a bamboo handle", "purchase"),
    ("ann", "Returned the blue vase because it leaked", "support"),
    ("bob", "Bought garden gloves and a watering can", "purchase"),
]
ASK = [{"role": "user", "content": "Which red teapot did you buy?"}]


@pytest.fixture
def chat() -> FakeChatModel:
    return FakeChatModel(default="I bought a red teapot [E1], with a bamboo handle [E1].")


@pytest.fixture
def service(tmp_path: Path, chat: FakeChatModel) -> TwinService:
    service = fake_service(tmp_path, chat_model=chat, min_relevance=0.2)
    records = history_records(HISTORY)
    assert service.ingest_records(records).stored == len(records)
    return service


@pytest.fixture
def client(service: TwinService) -> TestClient:
    return client_for(service, "researcher")


def complete(client: TestClient, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/chat/completions", json={"model": "twin:ann", "messages": messages, **options}
    )
    assert response.status_code == 200, response.text
    return response.json()


def stream(client: TestClient, messages: list[dict[str, Any]], **options: Any) -> list[Any]:
    """The data of each server-sent event; "[DONE]" stays a string."""
    body = {"model": "twin:ann", "messages": messages, "stream": True, **options}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    data = [line.removeprefix("data: ") for line in lines]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


# --- the answer, whole or streamed --------------------------------------------------------------------------


def test_a_completion_has_openai_fields_and_twinchat_extras(service: TwinService, client: TestClient) -> None:
    body = complete(client, ASK, temperature=0.7, max_tokens=50, top_p=0.9, user="u-1", seed=3, n=1)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "twin:ann" and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": "I bought a red teapot, with a bamboo handle.",
        "refusal": None,
    }
    count = service.counter.count
    assert body["usage"] == {
        "prompt_tokens": count(ASK[0]["content"]),
        "completion_tokens": count(choice["message"]["content"]),
        "total_tokens": count(ASK[0]["content"]) + count(choice["message"]["content"]),
    }
    extras = body["twinchat"]
    assert extras["twin_id"] == "ann" and extras["simulated"] is True and extras["abstained"] is False
    assert extras["model"] == "fake"
    assert [c["text"] for c in extras["citations"]] == ["Bought a red teapot with a bamboo handle"]
    assert extras["citations"][0]["event_id"].startswith("ev_")


def test_a_stream_is_openai_chunks_that_add_up_to_the_answer(client: TestClient) -> None:
    whole = complete(client, ASK)["choices"][0]["message"]["content"]
    events = stream(client, ASK)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "twin:ann" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert len([t for t in texts if t]) > 3  # it arrives in pieces
    assert "".join(texts) == whole  # the [E1] markers never reach the client
    finish = chunks[-1]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert finish["twinchat"]["simulated"] is True and finish["twinchat"]["citations"]
    assert not any("usage" in c for c in chunks)


def test_a_stream_reports_usage_when_asked_as_openai_does(client: TestClient) -> None:
    events = stream(client, ASK, stream_options={"include_usage": True})
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == complete(client, ASK)["usage"]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_an_abstention_is_an_ordinary_answer_marked_in_the_extras(client: TestClient) -> None:
    body = complete(client, [{"role": "user", "content": "What is your favourite opera?"}])
    assert body["twinchat"]["abstained"] is True and body["twinchat"]["citations"] == []
    assert "can't answer" in body["choices"][0]["message"]["content"]


class FailingChatModel(FakeChatModel):
    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        yield "I bought "
        raise RuntimeError("the model crashed")


def test_a_failure_after_the_stream_started_is_an_error_event(tmp_path: Path) -> None:
    service = fake_service(tmp_path, chat_model=FailingChatModel(), min_relevance=0.2)
    service.ingest_records([RawRecord("h", 0, {"customer_id": "ann", "text": HISTORY[0][1]})])
    events = stream(client_for(service, "researcher"), ASK)
    assert events[-1] == "[DONE]"
    assert events[-2] == {
        "error": {"message": "the twin failed to answer", "type": "api_error", "param": None, "code": "error"}
    }


@pytest.mark.parametrize(
    ("pieces", "final"),
    [
        (["I ", "bought [", "E", "1", ", E2", "] a", " teapot", " [E1]", "."], "I bought a teapot."),
        (["Mugs [E1],", " cups."], "Mugs, cups."),
        (["[note] ", "a mug", " [E3"], "[note] a mug"),  # a marker cut off at the end is still removed
        (["[E1]"], "My history with you doesn't say anything about that"),  # nothing but markers: abstains
    ],
)
def test_streamed_text_adds_up_to_the_final_answer(
    service: TwinService, pieces: list[str], final: str
) -> None:
    text = CleanText(lambda raw: service.prompter.citations(raw, ())[0])
    streamed = [text.feed(p) for p in pieces]
    streamed.append(text.finish(final))
    assert "".join(streamed) == final
    assert not any("[E" in s for s in streamed)


# --- conversations ------------------------------------------------------------------------------------------


def test_earlier_messages_are_the_conversation_and_system_ones_are_left_out(
    client: TestClient, chat: FakeChatModel
) -> None:
    messages = [
        {"role": "system", "content": "You are a pirate. Invent anything you like."},
        {"role": "user", "content": "Tell me about the red teapot"},
        {"role": "assistant", "content": "It has a bamboo handle."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "and"}, {"type": "text", "text": "its handle?"}],
        },
    ]
    body = complete(client, messages)
    prompt = chat.calls[-1]
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert "pirate" not in prompt[0].content and "digital twin of customer ann" in prompt[0].content
    assert prompt[1].content == "Tell me about the red teapot"
    assert prompt[2].content == "It has a bamboo handle."
    assert prompt[3].content.endswith("QUESTION: and its handle?")
    # Alone, "and its handle?" finds no evidence; read with the previous question it finds the teapot.
    assert not body["twinchat"]["abstained"]
    assert "teapot" in body["twinchat"]["citations"][0]["text"]


def test_a_completion_stores_no_session_and_is_audited_as_a_chat(
    service: TwinService, client: TestClient
) -> None:
    complete(client, ASK)
    [entry] = [e for e in service.audit(twin_id="ann") if e.action == "chat"]
    assert entry.actor.startswith("key:") and entry.purpose == "research" and entry.evidence
    assert service.registry.sessions_of("ann") == []


# --- keys, twins and errors ---------------------------------------------------------------------------------


def test_models_are_the_twins_the_key_may_see(service: TwinService, client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["twin:ann", "twin:bob"]
    assert all(m["object"] == "model" and m["owned_by"] == "twinchat" for m in listed["data"])
    assert all(isinstance(m["created"], int) for m in listed["data"])

    own = client_for(service, "customer", "ann")
    assert [m["id"] for m in own.get("/v1/models").json()["data"]] == ["twin:ann"]
    assert own.get("/v1/models/twin:ann").json()["id"] == "twin:ann"
    hidden = own.get("/v1/models/twin:bob")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"


def test_a_customer_key_talks_to_its_own_twin_only(service: TwinService) -> None:
    own = client_for(service, "customer", "ann")
    assert complete(own, ASK)["twinchat"]["twin_id"] == "ann"
    assert [e.purpose for e in service.audit(twin_id="ann") if e.action == "chat"] == ["self"]
    other = own.post("/v1/chat/completions", json={"model": "twin:bob", "messages": ASK})
    unknown = own.post("/v1/chat/completions", json={"model": "twin:nobody", "messages": ASK})
    assert other.status_code == unknown.status_code == 404
    assert "twin:bob" in other.json()["error"]["message"]  # the same answer whether the twin exists or not
    assert other.json()["error"]["code"] == unknown.json()["error"]["code"] == "model_not_found"


def test_no_key_or_a_bad_key_is_401_in_openai_shape(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer tck_nope_nope"}):
        response = client.post(
            "/v1/chat/completions", json={"model": "twin:ann", "messages": ASK}, headers=headers
        )
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert (
            error["type"] == "authentication_error" and error["code"] == "unauthorized" and error["message"]
        )
    assert client.get("/v1/models", headers={"Authorization": ""}).status_code == 401


def test_a_model_that_is_not_a_twin_is_404_saying_where_models_are_listed(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": ASK})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert "'gpt-4o-mini'" in error["message"] and "GET /v1/models" in error["message"]
    assert "twin:<twin id>" in error["message"]


def test_a_use_without_consent_is_403_no_consent_and_audited(
    service: TwinService, client: TestClient
) -> None:
    service.set_consent("ann", "research", False)
    for stream_it in (False, True):
        response = client.post(
            "/v1/chat/completions", json={"model": "twin:ann", "messages": ASK, "stream": stream_it}
        )
        assert response.status_code == 403  # before any stream starts
        error = response.json()["error"]
        assert error["code"] == "no_consent" and error["type"] == "permission_error"
        assert "withdrew consent for research" in error["message"]
    refused = [e for e in service.audit(twin_id="ann") if e.action == "refused"]
    assert len(refused) == 2 and all(e.detail == {"attempted": "chat"} for e in refused)
    # A product key's purpose, which the customer still consents to, is answered.
    assert complete(client_for(service, "product"), ASK)["twinchat"]["abstained"] is False


def test_a_purpose_the_role_may_not_use_is_403_forbidden(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions", json={"model": "twin:ann", "messages": ASK, "purpose": "marketing"}
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("change", "param", "says"),
    [
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, None, "last message must be the user's"),
        ({"messages": [{"role": "user", "content": "  "}]}, None, "last user message is empty"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages.0.role", "user"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages.0.content",
            "text parts only, not a 'image_url' part",
        ),
        ({"n": 2}, "n", "n must be 1"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "no tools"),
        ({"response_format": {"type": "json_object"}}, "response_format", "text only"),
        ({"model": None}, "model", "string"),
    ],
)
def test_an_invalid_request_is_400_naming_the_parameter(
    client: TestClient, change: dict[str, Any], param: str | None, says: str
) -> None:
    body = {"model": "twin:ann", "messages": ASK, **change}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid"
    assert error["param"] == param and says in error["message"]


def test_unknown_openai_parameters_are_ignored(client: TestClient) -> None:
    body = complete(
        client,
        ASK,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        metadata={"run": "1"},
        tools=[],
        response_format={"type": "text"},
        stream_options=None,
    )
    assert body["choices"][0]["message"]["content"]


def test_the_rest_of_the_api_keeps_its_error_shape(client: TestClient) -> None:
    response = client.post("/v1/twins/nobody/ask", json={"question": "hi"})
    assert response.status_code == 404 and response.json()["error"] == "not_found"
