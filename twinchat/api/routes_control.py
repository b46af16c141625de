"""The customer in control: memories, corrections, forgetting, consent, export, erasure; and the audit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from twinchat.api.deps import Key, Service, allow, as_customer
from twinchat.api.schemas import (
    AuditOut,
    ConsentOut,
    ConsentRequest,
    CorrectionOut,
    CorrectionRequest,
    ErasureOut,
    MemoryOut,
    PurposeIn,
)

router = APIRouter(tags=["customer control"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such twin (or memory)"}}


@router.get("/v1/twins/{twin_id}/memories", response_model=list[MemoryOut], responses=NOT_FOUND)
async def memories(
    twin_id: str,
    service: Service,
    key: Key,
    search: str | None = Query(default=None, max_length=500, description="Words or a phrase to look for."),
    valid_only: bool = Query(default=False, description="Leave out superseded and forgotten memories."),
) -> list[dict]:
    """What the twin knows: every memory with its source and validity, newest first."""
    use = as_customer(key, twin_id)
    return await run_in_threadpool(
        service.memories, twin_id, search=search, include_invalid=not valid_only, use=use
    )


@router.post(
    "/v1/twins/{twin_id}/corrections", response_model=CorrectionOut, status_code=201, responses=NOT_FOUND
)
async def correct(twin_id: str, body: CorrectionRequest, service: Service, key: Key) -> dict:
    """The customer's statement becomes an authoritative memory; the memories it contradicts are superseded."""
    use = as_customer(key, twin_id)
    return (await run_in_threadpool(service.correct, twin_id, body.statement, use=use)).to_dict()


@router.delete("/v1/twins/{twin_id}/memories/{event_id}", status_code=204, responses=NOT_FOUND)
async def forget(twin_id: str, event_id: str, service: Service, key: Key) -> Response:
    """Forget one memory; the twin keeps only a record that something was forgotten, when and by whom."""
    use = as_customer(key, twin_id)
    await run_in_threadpool(service.forget, twin_id, event_id, use=use)
    return Response(status_code=204)


@router.get("/v1/twins/{twin_id}/consent", response_model=dict[str, ConsentOut | None], responses=NOT_FOUND)
async def consents(twin_id: str, service: Service, key: Key) -> dict:
    """Consent per purpose (research, product, marketing); null where the customer was never asked."""
    as_customer(key, twin_id)
    recorded = await run_in_threadpool(service.consents, twin_id)
    return {p: c.to_dict() if c else None for p, c in recorded.items()}


@router.put("/v1/twins/{twin_id}/consent/{purpose}", response_model=ConsentOut, responses=NOT_FOUND)
async def set_consent(
    twin_id: str, purpose: PurposeIn, body: ConsentRequest, service: Service, key: Key
) -> dict:
    """Grant or withdraw consent for one purpose; it applies to the very next request."""
    use = as_customer(key, twin_id)
    return (await run_in_threadpool(service.set_consent, twin_id, purpose, body.granted, use=use)).to_dict()


@router.get("/v1/twins/{twin_id}/export", responses=NOT_FOUND)
async def export(twin_id: str, service: Service, key: Key) -> Response:
    """Everything held about the customer (format twinchat-export/1), as a JSON download."""
    import json

    use = as_customer(key, twin_id)
    document = await run_in_threadpool(service.export, twin_id, use=use)
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="twinchat-export-{twin_id}.json"'},
    )


@router.delete("/v1/twins/{twin_id}", response_model=ErasureOut, responses=NOT_FOUND)
async def erase(twin_id: str, service: Service, key: Key) -> dict:
    """Erase the customer: collection, metadata, derived data and caches. Cannot be undone."""
    use = as_customer(key, twin_id)
    return {"erased": True, "tombstone": await run_in_threadpool(service.erase, twin_id, use=use)}


@router.get("/v1/audit", response_model=list[AuditOut])
async def audit(
    service: Service,
    key: Key,
    twin_id: str | None = None,
    limit: int | None = Query(default=1000, ge=1, le=100_000),
) -> list[dict]:
    """Every use of and change to twins, oldest first: who, which twin, which purpose, which evidence.

    An admin key reads all of it; a customer key the entries about its own twin.
    """
    allow(key, "admin", "customer")
    if key.role == "customer":
        twin_id = key.twin_id
    return [e.to_dict() for e in await run_in_threadpool(service.audit, twin_id=twin_id, limit=limit)]
