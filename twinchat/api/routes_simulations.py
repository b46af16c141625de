"""Strategy tests over HTTP: a campaign's variants tested on a panel's twins, as `twinchat simulate` does."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from twinchat.api.deps import Key, Service, allow
from twinchat.api.routes_data import NOT_FOUND, TOO_MANY, Problem, at_most
from twinchat.api.schemas_data import SimulationRequest
from twinchat.domain.campaign import Campaign, CampaignError
from twinchat.services import TwinNotFound

router = APIRouter(tags=["simulations"])
MARKETERS = ("admin", "product")  # the roles that may use twins for marketing (twinchat.domain.keys)


@router.post(
    "/v1/simulations",
    responses={403: {"description": "the key may not use twins for marketing"}, **NOT_FOUND, **TOO_MANY},
)
async def simulate(body: SimulationRequest, request: Request, service: Service, key: Key) -> dict[str, Any]:
    """Test a campaign on a panel (or given twins), synchronously: the results.json of `twinchat simulate`.

    A marketing use (admin and product keys): twins whose customers have not consented are left out, counted
    under `twins.refused` and listed under `refused`; every use and refusal is audited. Every number is
    simulated. At most TWINCHAT_API_MAX_ITEMS twins per request.
    """
    allow(key, *MARKETERS)
    use = key.use("marketing")
    try:
        campaign = Campaign.from_dict(body.campaign, source="campaign")
    except CampaignError as exc:
        raise ValueError(str(exc)) from None
    panel = body.panel or (campaign.panel if body.twin_ids is None else None)
    if (panel is None) == (body.twin_ids is None):
        given = "both were given" if panel is not None else "neither was given"
        raise ValueError(
            f"panel, twin_ids: name a panel (here or in the campaign) or list twin_ids ({given})"
        )
    if panel is not None:
        twin_ids = [t.twin_id for t in await run_in_threadpool(service.twins, panel=panel)]
        if not twin_ids:
            raise Problem(404, "not_found", f"panel {panel!r} has no twins; GET /v1/panels lists them")
    else:
        twin_ids = list(dict.fromkeys(body.twin_ids or []))
        if not twin_ids:
            raise ValueError("twin_ids: list at least one twin")
        known = {t.twin_id for t in await run_in_threadpool(service.twins)}
        missing = [t for t in twin_ids if t not in known]
        if missing:
            raise TwinNotFound(", ".join(missing))
    at_most(request, len(twin_ids), "twins")
    return await run_in_threadpool(service.simulate, replace(campaign, panel=panel), twin_ids, use=use)
