"""The FastAPI application factory and the server entry point."""

from __future__ import annotations

import logging
import secrets
import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from twinchat import __version__
from twinchat.api.deps import Unauthorized
from twinchat.api.limits import BodyLimit
from twinchat.config import Settings
from twinchat.domain.control import ConsentDenied
from twinchat.domain.keys import Forbidden
from twinchat.services import KeyNotFound, MemoryNotFound, SessionNotFound, TwinNotFound, TwinService

log = logging.getLogger("twinchat.api")


def create_app(
    settings: Settings, *, service: TwinService | None = None, ui: bool = False, warm: bool = False
) -> FastAPI:
    """Build the app; pass a service to share one (and its loaded models) with the caller.

    ``ui``: also serve the research studio at /studio and the customer portal at /portal (Gradio).
    ``warm``: load the encoder and the store's indexes on a thread of their own, while the app starts serving.
    """
    app = FastAPI(
        title="twinchat",
        version=__version__,
        description="Conversational digital twins of customers. Every answer is simulated.",
    )
    app.state.settings = settings
    app.state.service = service or TwinService.from_settings(settings)
    app.state.service.open_store()  # a store it cannot open (a server down, another layout) stops the start
    if warm:
        threading.Thread(target=_warm, args=(app.state.service,), name="twinchat-warm", daemon=True).start()

    from twinchat.api import (
        routes_control,
        routes_data,
        routes_keys,
        routes_openai,
        routes_sessions,
        routes_simulations,
        routes_twins,
    )

    app.include_router(routes_twins.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_control.router)
    app.include_router(routes_keys.router)
    routes_data.install(app)  # events, panels, choose, survey jobs
    app.include_router(routes_simulations.router)
    app.include_router(routes_openai.router)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.exception_handler(TwinNotFound)
    @app.exception_handler(SessionNotFound)
    @app.exception_handler(MemoryNotFound)
    @app.exception_handler(KeyNotFound)
    async def _not_found(_: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": "not_found", "message": str(exc)})

    @app.exception_handler(ConsentDenied)
    async def _no_consent(_: Request, exc: ConsentDenied) -> JSONResponse:
        return JSONResponse(status_code=403, content={"error": "no_consent", "message": str(exc)})

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(status_code=403, content={"error": "forbidden", "message": str(exc)})

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            status_code=401,
            content={"error": "unauthorized", "message": str(exc)},
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(ValueError)
    async def _bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid", "message": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(status_code=422, content={"error": "invalid", "message": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (unknown path, wrong method, a body that is not JSON) in the error shape.
        names = {400: "invalid", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": names.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback; the caller gets the error shape and a reference.
        reference = secrets.token_hex(4)
        log.exception("internal error %s on %s %s", reference, request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={
                "error": "internal",
                "message": f"an internal error (reference {reference}); see the log",
            },
        )

    if ui:
        from ui.server import mount

        mount(app, app.state.service)
    return app


def _warm(service: TwinService) -> None:
    try:
        service.store.warm()
    except Exception:  # the first searches load what this did not; serving goes on either way
        log.warning("warming the store failed; the first searches will load what they need", exc_info=True)


def app_from_environment() -> FastAPI:
    """The API app on the Settings read from the environment: what each uvicorn worker process builds
    (``uvicorn twinchat.api.app:app_from_environment --factory --workers N``)."""
    return create_app(Settings(), warm=True)


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a number of worker processes the configured store cannot serve."""
    if workers < 1:
        raise ValueError(f"--workers: {workers} is not a number of processes; give 1 or more")
    if workers > 1 and settings.store_spec.startswith("chroma:"):
        raise ValueError(
            f"--workers {workers}: the store {settings.store_spec!r} is an embedded Chroma, which only one "
            "process may open; serve a Chroma server (`chroma run --path DIR --port 8001`) and set "
            "TWINCHAT_STORE=chroma+http://HOST:PORT, or serve with --workers 1"
        )


def serve(
    settings: Settings, *, host: str, port: int, service: TwinService | None = None, workers: int = 1
) -> None:
    """The HTTP API, with the studio and the portal (``ui``) in the same process.

    With ``workers`` > 1, that many processes serve the API on the same port, each building its service from
    the environment's Settings; they share the stores (a Chroma server and the SQL registry) and the survey
    jobs' files. The studio and portal are left out then: a Gradio app keeps its sessions in one process.
    """
    import uvicorn

    check_workers(settings, workers)
    if workers > 1:
        uvicorn.run(
            "twinchat.api.app:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
        )
        return
    app = create_app(settings, service=service, ui=True, warm=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
