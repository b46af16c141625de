"""Serving the pages: mounted in the API's FastAPI app, or alone (``twinchat ui``)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from twinchat.config import Settings
from twinchat.services import TwinService

STUDIO, PORTAL = "/studio", "/portal"


def mount(app: FastAPI, service: TwinService) -> FastAPI:
    """Add the research studio at /studio and the customer portal at /portal to ``app``."""
    # Gradio reads these when it is imported: no analytics, no version check, nothing fetched.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from ui.common import CSS, THEME
    from ui.portal_page import build_portal
    from ui.studio_page import build_studio

    options = {
        "theme": THEME,
        "css": CSS,
        "footer_links": [],
        # Answers and customer data are not kept in the browser's storage.
        "run_history": False,
        "show_error": True,
        "ssr_mode": False,
    }
    gr.mount_gradio_app(app, build_studio(service), path=STUDIO, **options)
    gr.mount_gradio_app(app, build_portal(service), path=PORTAL, **options)
    return app


def create_ui_app(settings: Settings, *, service: TwinService | None = None) -> FastAPI:
    """The two pages without the HTTP API, and an index linking them."""
    app = FastAPI(title="twinchat ui", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><title>twinchat</title><h1>twinchat</h1><p>Every answer is simulated.</p>"
            f'<ul><li><a href="{STUDIO}/">Research studio</a></li><li><a href="{PORTAL}/">Customer portal</a></li></ul>'
        )

    return mount(app, service or TwinService.from_settings(settings))


def serve(settings: Settings, *, host: str, port: int, service: TwinService | None = None) -> None:
    import uvicorn

    uvicorn.run(create_ui_app(settings, service=service), host=host, port=port, log_level="info")
