"""The FastAPI application: `create_app(settings)`, with the engine built once at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api.routes import checks, health, profiles
from service.engine import Engine
from service.errors import BodySizeLimitMiddleware, install_error_handlers
from service.settings import Settings

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """\
Find the social-media accounts that impersonate real people.

Ingest profile records, then check an identity: the answer lists the accounts that copy its
display name, handle, avatar or bio, each with a calibrated score, per-field signals, readable
reasons and which side is likely the copy. Errors are always
`{"error": {"code", "message", "details"}}`.
"""


def create_app(
    settings: Settings, *, engine: Engine | None = None, load_demo: bool = False
) -> FastAPI:
    """The API application for `settings`.

    The engine (model, store, indexes) is opened once in the lifespan and closed at shutdown
    (the lifespan, not the caller, because uvicorn re-raises SIGTERM once it has stopped);
    `load_demo` fills an empty store with the bundled demo profiles at start. An `engine`
    handed in is used as is and left open, since its owner closes it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        if owned:
            logger.info("opening the engine on %s", settings.data_dir.resolve())
            app.state.engine = await run_in_threadpool(Engine.open, settings)
        if load_demo:
            loaded = await run_in_threadpool(app.state.engine.load_demo)
            logger.info("demo profiles loaded: %d", loaded)
        try:
            yield
        finally:
            if owned and app.state.engine is not None:
                await run_in_threadpool(app.state.engine.close)
            app.state.engine = None if owned else engine

    app = FastAPI(
        title="clonefinder",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)

    v1 = APIRouter(prefix="/v1")
    v1.include_router(health.router)
    v1.include_router(profiles.router)
    v1.include_router(checks.router)
    app.include_router(v1)
    return app
