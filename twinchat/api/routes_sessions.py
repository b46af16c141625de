"""Conversations with a twin: start a session, send messages (JSON or streamed), read the transcript."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from twinchat.api.deps import Service, use_for
from twinchat.api.routes_twins import sse
from twinchat.api.schemas import AnswerOut, MessageRequest, SessionOut

router = APIRouter(tags=["sessions"])


@router.post("/v1/twins/{twin_id}/sessions", response_model=SessionOut, status_code=201)
async def start_session(twin_id: str, service: Service) -> dict:
    return (await run_in_threadpool(service.start_session, twin_id)).to_dict()


@router.get("/v1/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: str, service: Service) -> dict:
    return (await run_in_threadpool(service.session, session_id)).to_dict()


@router.post("/v1/sessions/{session_id}/messages", response_model=AnswerOut)
async def send_message(session_id: str, body: MessageRequest, service: Service):  # type: ignore[no-untyped-def]
    """The twin's next turn; the session remembers both the message and the answer."""
    use = use_for(body.purpose)
    if not body.stream:
        return (await run_in_threadpool(service.chat, session_id, body.message, use=use)).to_dict()
    session = await run_in_threadpool(service.session, session_id)  # a 404 or 403 before the stream starts
    await run_in_threadpool(service.authorize, session.twin_id, use, "chat")
    return StreamingResponse(
        sse(service.chat_stream(session_id, body.message, use=use)), media_type="text/event-stream"
    )
