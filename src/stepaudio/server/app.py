"""`create_app(engine, settings, store)`: the FastAPI application, with everything passed in.

Nothing is global: tests build an app around any engine and a temporary store. The real-time WebSocket
(`/v1/realtime`) attaches through `mount_realtime` (`realtime_ws.realtime_mount()`); the web page is at `/`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from stepaudio import __version__
from stepaudio.engines.base import Engine
from stepaudio.server.api_schema import install_openapi
from stepaudio.server.context import ServerContext
from stepaudio.server.errors import install_error_handlers
from stepaudio.server.guard import EdgeGuard
from stepaudio.server.openai import rest_router
from stepaudio.server.settings import ServerSettings
from stepaudio.server.streaming import CapabilityGate
from stepaudio.store.voices import VoiceStore

RealtimeMount = Callable[[FastAPI, ServerContext], None]
STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    engine: Engine,
    settings: ServerSettings,
    store: VoiceStore,
    *,
    mount_realtime: RealtimeMount | None = None,
) -> FastAPI:
    app = FastAPI(title="stepaudio", version=__version__,
                  description="OpenAI-compatible speech, transcription, chat and voice APIs for Step-Audio engines.")
    gate = CapabilityGate(settings.max_queue, dict(engine.concurrency))  # as many at once as the engine serves
    context = ServerContext(engine=engine, settings=settings, store=store, gate=gate)
    app.state.context = context
    install_error_handlers(app)
    app.include_router(rest_router())
    if mount_realtime is not None:  # /v1/realtime: WebSocket sessions (server/realtime_ws.py)
        mount_realtime(app, context)
    _mount_page(app)
    install_openapi(app, context)
    app.add_middleware(EdgeGuard, settings=settings)
    if settings.cors_origins:  # outermost, so preflight and error responses carry the CORS headers
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-Api-Key"])
    return app


def _mount_page(app: FastAPI) -> None:
    """The web page (plain HTML/JS package data, no build step) at `/`, its assets under `/static`."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
