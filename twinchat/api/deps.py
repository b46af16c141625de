"""Dependencies shared by the routes: the service, and the API key of the caller with what it may do."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twinchat.domain.control import SELF, Use
from twinchat.domain.keys import ApiKey, Forbidden
from twinchat.services import TwinNotFound, TwinService

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `twinchat keys create --role ROLE [--twin ID]`, sent as `Bearer KEY`.",
)


class Unauthorized(PermissionError):
    """No key, or one that is unknown or revoked: HTTP 401."""


def get_service(request: Request) -> TwinService:
    return request.app.state.service


Service = Annotated[TwinService, Depends(get_service)]


def get_key(
    service: Service, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiKey:
    if credentials is None:
        raise Unauthorized("no API key: send `Authorization: Bearer KEY` (`twinchat keys create` makes one)")
    key = service.authenticate(credentials.credentials)
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    return key


Key = Annotated[ApiKey, Depends(get_key)]


def allow(key: ApiKey, *roles: str) -> None:
    if key.role not in roles:
        raise Forbidden(f"a {key.role} key may not do this; it needs a {' or '.join(roles)} key")


def visible(key: ApiKey, twin_id: str) -> str:
    """The twin id, if the key may see that twin; otherwise the same 404 as for a twin that does not exist."""
    if not key.may_see(twin_id):
        raise TwinNotFound(twin_id)
    return twin_id


def as_customer(key: ApiKey, twin_id: str) -> Use:
    """The customer (or an admin on their behalf) reading, correcting, exporting or erasing their own twin."""
    visible(key, twin_id)
    allow(key, "customer", "admin")
    return Use(key.actor, SELF)
