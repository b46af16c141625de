"""Twins: list, get, ask (JSON or streamed as server-sent events)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from twinchat.api.deps import Key, Service, visible
from twinchat.api.schemas import AnswerOut, AskRequest, TwinOut
from twinchat.domain.models import Answer

router = APIRouter(prefix="/v1/twins", tags=["twins"])


@router.get("", response_model=list[TwinOut])
async def list_twins(service: Service, key: Key, panel: str | None = None) -> list[dict]:
    """The twins this key may see (a customer key: its own), optionally one panel's."""
    twins = await run_in_threadpool(service.twins, panel=panel)
    return [t.to_dict() for t in twins if key.may_see(t.twin_id)]


@router.get("/{twin_id}", response_model=TwinOut)
async def get_twin(twin_id: str, service: Service, key: Key) -> dict:
    return (await run_in_threadpool(service.twin, visible(key, twin_id))).to_dict()


@router.get("/{twin_id}/profile", responses={404: {"description": "no such twin"}})
async def get_profile(twin_id: str, service: Service, key: Key) -> dict:
    """What the twin knows: {"twin", "profile", "summary"}, as `twinchat show --json` prints it.

    ``twin.identifiers`` lists the customer's identifiers: in full for an admin or the customer's own key,
    masked for researcher and product keys."""
    from twinchat.domain.identity import masked
    from twinchat.domain.profile import show_document

    twin = await run_in_threadpool(service.twin, visible(key, twin_id))
    identifiers = await run_in_threadpool(service.identifiers, twin_id)
    if key.role not in ("admin", "customer"):  # others learn which identifiers exist, not what they are
        identifiers = [{"kind": i["kind"], "value": masked(i["kind"], i["value"])} for i in identifiers]
    return show_document(twin, await run_in_threadpool(service.profile, twin_id), identifiers)


@router.get(
    "/{twin_id}/predictions",
    responses={403: {"description": "no consent for marketing"}, 404: {"description": "no such twin"}},
)
async def get_predictions(twin_id: str, service: Service, key: Key, horizon_days: int = 90) -> dict:
    """Behaviour predictions (simulated): P(buys again) and expected purchases in ``horizon_days``, churn risk,
    interest drift per category, with their evidence and confidence; the `predictions` of `twinchat show`.

    A marketing use, checked against the customer's consent and audited (a customer key: their own twin)."""
    if not 1 <= horizon_days <= 730:
        raise ValueError("horizon_days: between 1 and 730")
    use = key.use("marketing")
    visible(key, twin_id)
    return await run_in_threadpool(service.predictions, twin_id, horizon_days=horizon_days, use=use)


@router.post(
    "/{twin_id}/ask",
    response_model=AnswerOut,
    responses={403: {"description": "no consent for this purpose"}, 404: {"description": "no such twin"}},
)
async def ask(twin_id: str, body: AskRequest, service: Service, key: Key):  # type: ignore[no-untyped-def]
    """The twin's simulated answer, grounded in its own history, with the events it used."""
    use = key.use(body.purpose)
    visible(key, twin_id)
    if not body.stream:
        answer = await run_in_threadpool(service.ask, twin_id, body.question, use=use)
        return answer.to_dict()
    # A 404 or 403 before the stream starts, not inside it.
    await run_in_threadpool(service.authorize, twin_id, use, "ask")
    return StreamingResponse(
        sse(service.ask_stream(twin_id, body.question, use=use)), media_type="text/event-stream"
    )


def sse(parts: Iterator[str | Answer]) -> Iterator[str]:
    # A sync generator: Starlette iterates it in a thread pool, so the LLM never blocks the event loop.
    for part in parts:
        if isinstance(part, Answer):
            yield f"event: answer\ndata: {json.dumps(part.to_dict(), ensure_ascii=False)}\n\n"
        else:
            yield f"event: token\ndata: {json.dumps(part, ensure_ascii=False)}\n\n"
