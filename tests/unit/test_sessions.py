"""Conversations with fakes: turns are remembered, reach the prompt, and steer retrieval of follow-ups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinchat.domain.models import Answer
from twinchat.services import SessionNotFound, TwinNotFound, TwinService
from twinchat.testing import FakeChatModel, fake_service


@pytest.fixture
def chat() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def service(tmp_path: Path, chat: FakeChatModel) -> TwinService:
    service = fake_service(tmp_path, chat_model=chat, min_relevance=0.2)
    history = tmp_path / "h.jsonl"
    history.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {
                    "customer_id": "ann",
                    "text": "Bought a red teapot with a bamboo handle",
                    "source": "purchase",
                },
                {
                    "customer_id": "ann",
                    "text": "Returned the blue vase because it leaked",
                    "source": "support",
                },
            ]
        )
    )
    service.ingest_files([history])
    return service


def test_a_session_remembers_both_sides_of_the_conversation(
    service: TwinService, chat: FakeChatModel
) -> None:
    session = service.start_session("ann")
    chat.enqueue("I bought a red teapot [E1].", "It has a bamboo handle [E1].")
    first = service.chat(session.session_id, "Which red teapot did you buy?")
    assert first.answer == "I bought a red teapot."
    service.chat(session.session_id, "What handle does the teapot have?")

    second_prompt = chat.calls[-1]
    assert [m.role for m in second_prompt] == ["system", "user", "assistant", "user"]
    assert second_prompt[1].content == "Which red teapot did you buy?"
    assert second_prompt[2].content == "I bought a red teapot."

    stored = service.session(session.session_id)
    assert [t.role for t in stored.turns] == ["user", "assistant", "user", "assistant"]
    assert stored.turns[1].citations == [first.citations[0].event_id]


def test_a_follow_up_retrieves_with_the_previous_question(service: TwinService, chat: FakeChatModel) -> None:
    session = service.start_session("ann")
    chat.enqueue("The teapot [E1].", "Bamboo [E1].")
    service.chat(session.session_id, "Tell me about the red teapot")
    # Alone, "and its handle?" shares too little with any event to count as evidence; read with the previous
    # question it finds the teapot.
    answer = service.chat(session.session_id, "and its handle?")
    assert not answer.abstained
    assert "teapot" in answer.citations[0].text


def test_chat_stream_yields_tokens_then_the_answer(service: TwinService, chat: FakeChatModel) -> None:
    session = service.start_session("ann")
    chat.enqueue("A red teapot [E1].")
    parts = list(service.chat_stream(session.session_id, "Which red teapot did you buy?"))
    assert isinstance(parts[-1], Answer) and any(isinstance(p, str) for p in parts[:-1])


def test_unknown_sessions_and_twins_are_clear_errors(service: TwinService) -> None:
    with pytest.raises(SessionNotFound, match="nope"):
        service.chat("nope", "hi")
    with pytest.raises(TwinNotFound):
        service.start_session("bob")
