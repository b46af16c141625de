"""Conversations with a twin: start a session, send messages (JSON or streamed), read the transcript."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from twinchat.api.deps import Key, Service, visible
from twinchat.api.routes_twins import sse
from twinchat.api.schemas import AnswerOut, MessageRequest, SessionOut
from twinchat.domain.keys import ApiKey
from twinchat.domain.sessions import Session
from twinchat.services import SessionNotFound, TwinService

router = APIRouter(tags=["sessions"])


@router.post("/v1/twins/{twin_id}/sessions", response_model=SessionOut, status_code=201)
async def start_session(twin_id: str, service: Service, key: Key) -> dict:
    return (await run_in_threadpool(service.start_session, visible(key, twin_id))).to_dict()


async def _session(service: TwinService, key: ApiKey, session_id: str) -> Session:
    """The session, if the key may see its twin; otherwise the same 404 as for a session that does not exist."""
    session = await run_in_threadpool(service.session, session_id)
    if not key.may_see(session.twin_id):
        raise SessionNotFound(session_id)
    return session


@router.get("/v1/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: str, service: Service, key: Key) -> dict:
    return (await _session(service, key, session_id)).to_dict()


@router.post("/v1/sessions/{session_id}/messages", response_model=AnswerOut)
async def send_message(session_id: str, body: MessageRequest, service: Service, key: Key):  # type: ignore[no-untyped-def]
    """The twin's next turn; the session remembers both the message and the answer.

    With a customer key, a message that corrects the twin ("Actually, I ...") is stored as a correction.
    """
    use = key.use(body.purpose)
    session = await _session(service, key, session_id)
    if not body.stream:
        return (await run_in_threadpool(service.chat, session_id, body.message, use=use)).to_dict()
    await run_in_threadpool(service.authorize, session.twin_id, use, "chat")  # a 403 before the stream starts
    return StreamingResponse(
        sse(service.chat_stream(session_id, body.message, use=use)), media_type="text/event-stream"
    )
