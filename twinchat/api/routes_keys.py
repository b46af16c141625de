"""API keys, for admins: create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from twinchat.api.deps import Key, Service, allow
from twinchat.api.schemas import KeyCreated, KeyOut, KeyRequest
from twinchat.domain.control import Use

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyRequest, service: Service, key: Key) -> dict:
    """A new key; `key` is in this response only, the server keeps a digest."""
    allow(key, "admin")
    made, secret = await run_in_threadpool(
        service.create_key, body.role, twin_id=body.twin_id, label=body.label, use=Use(key.actor, "admin")
    )
    return {**made.to_dict(), "key": secret}


@router.get("", response_model=list[KeyOut])
async def list_keys(service: Service, key: Key) -> list[dict]:
    allow(key, "admin")
    return [k.to_dict() for k in await run_in_threadpool(service.keys.list_keys)]


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, service: Service, key: Key) -> Response:
    """Revoke a key: requests with it get 401 from now on."""
    allow(key, "admin")
    await run_in_threadpool(service.revoke_key, key_id, use=Use(key.actor, "admin"))
    return Response(status_code=204)
