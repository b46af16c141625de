"""OpenAI-compatible twins: `POST /v1/chat/completions` and `GET /v1/models`, with `model: "twin:<id>"`.

The openai SDK and LangChain's ChatOpenAI talk to a twin unchanged. Errors on these routes come in OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`, with twinchat's error name as the code, because that
is what OpenAI clients read into their exceptions (`e.code == "no_consent"`); the status codes are the rest of
the API's, except that an invalid request is 400, as OpenAI answers it, rather than 422.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from twinchat.api.deps import Key, Service, Unauthorized, visible
from twinchat.api.schemas_openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelList,
    ModelOut,
    OpenAIErrorOut,
)
from twinchat.domain.control import ConsentDenied
from twinchat.domain.keys import Forbidden
from twinchat.domain.models import Answer, Twin
from twinchat.domain.sessions import Session, Turn, now
from twinchat.services import TwinNotFound, TwinService

PREFIX = "twin:"
MAX_QUESTION_CHARS = 4000  # as POST /v1/twins/{id}/ask
log = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    """A model id that names no twin this key may see: OpenAI's 404 `model_not_found`."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"the model {model!r} does not exist or you do not have access to it; models are twins, "
            f"named `{PREFIX}<twin id>`: `GET /v1/models` lists the ones this key may use"
        )


def openai_error(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The status and OpenAI-shaped body for an exception, or None for one that is not the caller's doing."""
    param: str | None = None
    message = str(exc)
    if isinstance(exc, Unauthorized):
        status, kind, code = 401, "authentication_error", "unauthorized"
    elif isinstance(exc, ConsentDenied):
        status, kind, code = 403, "permission_error", "no_consent"
    elif isinstance(exc, Forbidden):
        status, kind, code = 403, "permission_error", "forbidden"
    elif isinstance(exc, ModelNotFound | TwinNotFound):
        status, kind, code, param = 404, "invalid_request_error", "model_not_found", "model"
        if isinstance(exc, TwinNotFound):
            message = str(ModelNotFound(model_id(exc.twin_id)))
    elif isinstance(exc, RequestValidationError):
        status, kind, code = 400, "invalid_request_error", "invalid"
        errors = exc.errors()
        where = [str(p) for p in errors[0]["loc"][1:]] if errors else []
        param = ".".join(where) if where and not where[0].isdigit() else None  # not for a JSON decode error
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    elif isinstance(exc, ValueError):
        status, kind, code = 400, "invalid_request_error", "invalid"
    else:
        return None
    return status, {"error": {"message": message, "type": kind, "param": param or None, "code": code}}


class OpenAIErrorRoute(APIRoute):
    """A route whose errors, the key's and the body's included, come in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                shaped = openai_error(exc)
                if shaped is None:
                    raise
                status, body = shaped
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                return JSONResponse(status_code=status, content=body, headers=headers)

        return handle


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIErrorOut, "description": "invalid request (code `invalid`)"},
    401: {"model": OpenAIErrorOut, "description": "no key, or an unknown or revoked one"},
    403: {
        "model": OpenAIErrorOut,
        "description": "code `forbidden` (the role) or `no_consent` (the customer)",
    },
    404: {"model": OpenAIErrorOut, "description": "code `model_not_found`: no such twin for this key"},
}
router = APIRouter(tags=["openai"], route_class=OpenAIErrorRoute, responses=ERRORS)


def model_id(twin_id: str) -> str:
    return f"{PREFIX}{twin_id}"


def twin_of(model: str) -> str:
    if not model.startswith(PREFIX) or not model[len(PREFIX) :]:
        raise ModelNotFound(model)
    return model[len(PREFIX) :]


def model_out(twin: Twin) -> dict[str, Any]:
    return ModelOut(id=model_id(twin.twin_id), created=int(twin.created_at.timestamp())).model_dump()


@router.get("/v1/models", response_model=ModelList)
async def list_models(service: Service, key: Key) -> dict[str, Any]:
    """The twins this key may see, as OpenAI models (a customer key: its own twin)."""
    twins = await run_in_threadpool(service.twins)
    return {"object": "list", "data": [model_out(t) for t in twins if key.may_see(t.twin_id)]}


@router.get("/v1/models/{model}", response_model=ModelOut)
async def get_model(model: str, service: Service, key: Key) -> dict[str, Any]:
    return model_out(await run_in_threadpool(service.twin, visible(key, twin_of(model))))


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionRequest, service: Service, key: Key):  # type: ignore[no-untyped-def]
    """The twin's simulated answer to the last user message, with the earlier messages as the conversation.

    Not stored: a conversation kept by the server, and a customer's corrections said in it, are
    `POST /v1/twins/{id}/sessions`. twinchat's citations, abstention and `simulated: true` are in `twinchat`
    (in a stream: on the chunk that finishes the answer).
    """
    use = key.use(body.purpose)
    twin_id = visible(key, twin_of(body.model))
    earlier, question = as_session(twin_id, body)
    conversation = earlier.conversation()
    prompt_tokens = await run_in_threadpool(count, service, [m.content for m in conversation] + [question])
    # A 404 or 403 before any answer is generated or a stream starts; ask_stream checks again, and audits.
    await run_in_threadpool(service.authorize, twin_id, use, "chat")
    parts = service.ask_stream(
        twin_id,
        question,
        conversation=conversation,
        query=earlier.retrieval_query(question),
        use=use,
        action="chat",
    )
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = stream_chunks(
            parts,
            service,
            head={
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
            },
            prompt_tokens=prompt_tokens if include_usage else None,
        )
        return StreamingResponse(chunks, media_type="text/event-stream")
    answer = await run_in_threadpool(final_answer, parts)
    completion_tokens = await run_in_threadpool(count, service, [answer.answer])
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer.answer}, "finish_reason": "stop"}
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "twinchat": extras(answer),
    }


def as_session(twin_id: str, body: ChatCompletionRequest) -> tuple[Session, str]:
    """The request's earlier messages, read as a conversation that is not stored, and the user's question.

    System and developer messages are left out: a twin's instructions are its persona prompt.
    """
    *before, last = body.messages
    if last.role != "user":
        raise ValueError(f"messages: the last message must be the user's question; its role is {last.role!r}")
    if not last.text.strip():
        raise ValueError("messages: the last user message is empty")
    if len(last.text) > MAX_QUESTION_CHARS:
        raise ValueError(
            f"messages: the question has {len(last.text)} characters; at most {MAX_QUESTION_CHARS}"
        )
    at = now()
    turns = [Turn(m.role, m.text, at) for m in before if m.role in ("user", "assistant") and m.text.strip()]
    return Session("openai", twin_id, at, turns), last.text


def count(service: TwinService, texts: Iterable[str]) -> int:
    return sum(service.counter.count(text) for text in texts)


def final_answer(parts: Iterable[str | Answer]) -> Answer:
    answer = None
    for part in parts:
        if isinstance(part, Answer):
            answer = part
    assert answer is not None
    return answer


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def extras(answer: Answer) -> dict[str, Any]:
    return {
        "twin_id": answer.twin_id,
        "citations": [c.to_dict() for c in answer.citations],
        "abstained": answer.abstained,
        "simulated": True,
        "model": answer.model,
    }


def stream_chunks(
    parts: Iterator[str | Answer], service: TwinService, *, head: dict[str, Any], prompt_tokens: int | None
) -> Iterator[str]:
    """`chat.completion.chunk` events: the role, the text as it is generated, the finish, usage if asked, [DONE].

    A sync generator: Starlette iterates it in a thread pool, so the LLM never blocks the event loop.
    """

    def event(choices: list[dict[str, Any]], **more: Any) -> str:
        return f"data: {json.dumps({**head, 'choices': choices, **more}, ensure_ascii=False)}\n\n"

    def delta(change: dict[str, Any], *, finish: str | None = None, **more: Any) -> str:
        return event([{"index": 0, "delta": change, "logprobs": None, "finish_reason": finish}], **more)

    yield delta({"role": "assistant", "content": ""})
    # The finished answer's text is the model's with its markers removed by the prompter: the same tidy-up.
    text = CleanText(lambda raw: service.prompter.citations(raw, ())[0])
    try:
        for part in parts:
            if isinstance(part, Answer):
                if rest := text.finish(part.answer):
                    yield delta({"content": rest})
                yield delta({}, finish="stop", twinchat=extras(part))
                if prompt_tokens is not None:
                    yield event([], usage=usage(prompt_tokens, count(service, [part.answer])))
            elif piece := text.feed(part):
                yield delta({"content": piece})
    except Exception as exc:  # the response has started: the error goes in the stream, as OpenAI sends it
        log.exception("chat completion stream failed")
        shaped = openai_error(exc)
        failed = {"message": "the twin failed to answer", "type": "api_error", "param": None, "code": "error"}
        yield f"data: {json.dumps(shaped[1] if shaped else {'error': failed}, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


_MARKER_START = re.compile(r"\[[\sE\d,]*")  # what an [E1, E2] citation marker may look like before its "]"


class CleanText:
    """Streams an answer's text as the finished answer reads: [E1] markers out, spaces tidied.

    The streamed pieces then add up to the answer's text, as OpenAI clients expect. Text that may still be the
    start of a marker is held back until it is closed or cannot be one.

    >>> text = CleanText(lambda raw: " ".join(raw.replace("[E1]", "").split()).replace(" .", "."))
    >>> [text.feed(p) for p in ["I bought ", "a teapot [", "E1", "]", "."]]
    ['I bought', ' a teapot', '', '', '.']
    >>> text.finish("I bought a teapot.")
    ''
    """

    def __init__(self, clean: Callable[[str], str]) -> None:
        self.clean = clean
        self.raw = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        end = len(self.raw)
        opened = self.raw.rfind("[")
        if opened != -1 and _MARKER_START.fullmatch(self.raw, opened):
            end = opened
        return self._rest(self.clean(self.raw[:end]))

    def finish(self, final: str) -> str:
        """What is left of the final text; nothing if the streamed text went another way (it should not)."""
        return self._rest(final)

    def _rest(self, text: str) -> str:
        if not text.startswith(self.sent):
            return ""
        rest, self.sent = text[len(self.sent) :], text
        return rest
