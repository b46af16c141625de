"""OpenAI-compatible twins for real: the official openai SDK and LangChain's ChatOpenAI, unchanged, over HTTP.

The server is the app on uvicorn in a thread, with the real embedder, Chroma and the local LLM behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI

from tests.integration.conftest import served
from twinchat.domain.models import Answer
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

QUESTION = "What did you think of the cake stand?"


@pytest.fixture
def base_url(real_service: TwinService, history_file: Path) -> Iterator[str]:
    real_service.ingest_files([history_file], progress=False)
    with served(real_service) as url:
        yield f"{url}/v1"


@pytest.fixture
def key(real_service: TwinService) -> str:
    return real_service.create_key("researcher")[1]


@pytest.fixture
def answers(real_service: TwinService, monkeypatch: pytest.MonkeyPatch) -> list[Answer]:
    """The service's finished answers, as the server got them, to compare with what a client put together."""
    seen: list[Answer] = []
    ask_stream = real_service.ask_stream

    def recording(*args: Any, **kwargs: Any) -> Iterator[str | Answer]:
        for part in ask_stream(*args, **kwargs):
            if isinstance(part, Answer):
                seen.append(part)
            yield part

    monkeypatch.setattr(real_service, "ask_stream", recording)
    return seen


def test_the_openai_sdk_lists_twins_and_gets_answers_whole_and_streamed(
    base_url: str, key: str, answers: list[Answer]
) -> None:
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["twin:C-100", "twin:C-200", "twin:C-300"]
    assert client.models.retrieve("twin:C-100").owned_by == "twinchat"

    completion = client.chat.completions.create(
        model="twin:C-100", messages=[{"role": "user", "content": QUESTION}], temperature=0.5, max_tokens=100
    )
    text = completion.choices[0].message.content
    assert text and text == answers[-1].answer and "[E" not in text
    assert completion.choices[0].finish_reason == "stop" and completion.usage is not None
    assert completion.usage.completion_tokens > 0
    extras = (completion.model_extra or {})["twinchat"]
    assert extras["simulated"] is True and not extras["abstained"]
    assert any("cake stand" in c["text"] for c in extras["citations"])

    chunks = list(
        client.chat.completions.create(
            model="twin:C-100",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 3  # it arrives as it is generated
    assert "".join(pieces) == answers[-1].answer  # the pieces add up to the answer, citation markers out
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_the_openai_sdk_raises_its_own_errors(base_url: str, key: str, real_service: TwinService) -> None:
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    ask = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask)  # type: ignore[arg-type]
    assert not_found.value.code == "model_not_found" and "/v1/models" in not_found.value.message

    real_service.set_consent("C-200", "research", False)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="twin:C-200", messages=ask)  # type: ignore[arg-type]
    assert refused.value.code == "no_consent"

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=base_url, api_key="tck_nope", max_retries=0).models.list()


def test_langchain_chat_openai_invokes_and_streams_a_twin(
    base_url: str, key: str, answers: list[Answer]
) -> None:
    twin = ChatOpenAI(model="twin:C-100", base_url=base_url, api_key=key, max_retries=0, timeout=120)
    reply = twin.invoke(
        [
            SystemMessage("You are a helpful assistant."),
            HumanMessage("Did anything go wrong with an order?"),
            AIMessage("The cake stand arrived with a chipped plate."),
            HumanMessage("Did you get a refund for it?"),
        ]
    )
    assert isinstance(reply.content, str) and reply.content == answers[-1].answer
    # The follow-up is read with the previous question: the support ticket is found.
    assert any("refund" in c.text for c in answers[-1].citations)

    streamed = ChatOpenAI(
        model="twin:C-100", base_url=base_url, api_key=key, max_retries=0, timeout=120, stream_usage=True
    )
    chunks = list(streamed.stream(QUESTION))
    assert len([c for c in chunks if c.content]) > 3
    assert "".join(str(c.content) for c in chunks) == answers[-1].answer
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] > 0
