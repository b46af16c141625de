"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from twinchat.domain.control import SELF, Use
from twinchat.services import TwinService

# Until API keys exist every HTTP caller is one actor; the audit names it so, and keys will name each one.
API_ACTOR = "api:anonymous"


def get_service(request: Request) -> TwinService:
    return request.app.state.service


def as_customer() -> Use:
    """The customer acting on their own twin: reading, correcting, exporting or erasing it."""
    return Use(API_ACTOR, SELF)


Service = Annotated[TwinService, Depends(get_service)]
Customer = Annotated[Use, Depends(as_customer)]


def use_for(purpose: str) -> Use:
    """A product team or researcher using a twin for a purpose its customer must have consented to."""
    return Use(API_ACTOR, purpose)
