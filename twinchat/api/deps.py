"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from twinchat.services import TwinService


def get_service(request: Request) -> TwinService:
    return request.app.state.service


Service = Annotated[TwinService, Depends(get_service)]
