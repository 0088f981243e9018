"""The FastAPI application: `create_app(settings)`, with the engine built once at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from service.api.auth import build_authenticator, document_auth_errors, start_authentication
from service.api.observability import install_observability
from service.api.routes import cases as case_routes
from service.api.routes import checks, health, profiles
from service.api.routes import evidence as evidence_routes
from service.api.routes import scans as scan_routes
from service.api.routes import watching as watching_routes
from service.api.routes import watchlist as watchlist_routes
from service.api.routes import web as web_routes
from service.core.errors import BodySizeLimitMiddleware, install_error_handlers
from service.core.settings import Settings
from service.matching.engine import Engine
from service.scans.service import ScanService
from service.scans.worker import ScanWorker
from service.web import STATIC_DIR, WebPage

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """\
Find the social-media accounts that impersonate real people.

Ingest profile records, then check an identity: the answer lists the accounts that copy its
display name, handle, avatar or bio, each with a calibrated score, per-field signals, readable
reasons and which side is likely the copy. Errors are RFC 9457 problem details
(`application/problem+json`) that always carry `{"error": {"code", "message", "details"}}`.
Creating POSTs take an `Idempotency-Key` header that makes a retry safe.

Every endpoint but `/v1/health` needs an API key, sent as `Authorization: Bearer KEY` or
`X-API-Key: KEY` (401 without a valid one, 403 when the key's role does not allow the
operation, 429 with `Retry-After` above the key's rate limit). `clonefinder keys create` makes
keys; the server writes the first admin key to `DATA_DIR/admin.key` at its first start.
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
        # API keys: the first admin key on an empty store, and the key checks over the store.
        app.state.authenticator = await run_in_threadpool(
            lambda: start_authentication(app.state.engine.store, settings, demo=load_demo)
        )
        if load_demo:
            loaded = await run_in_threadpool(app.state.engine.load_demo)
            logger.info("demo profiles loaded: %d", loaded)
        if settings.web_mode != "off":
            app.state.web_page = WebPage(app.state.engine, settings)
            logger.info("web page (%s mode) at /", settings.web_mode)
        # Watchlist alerts' webhook deliveries are sent from background threads while serving.
        deliveries = app.state.engine.watchlist.start_deliveries()
        # Bulk scans: the jobs, and one worker in a thread unless the settings turn it off (the
        # thread then only applies what workers and other processes write to the store).
        app.state.scans = ScanService(app.state.engine.store, settings)
        await run_in_threadpool(app.state.scans.drop_abandoned_uploads)
        scan_worker = ScanWorker(app.state.engine, settings, take_jobs=settings.in_process_worker)
        scan_worker.start()
        try:
            yield
        finally:
            # A chunk cut short is redone by a worker once its lease runs out.
            await run_in_threadpool(lambda: scan_worker.stop(timeout=30))
            app.state.scans = None
            app.state.web_page = None
            await run_in_threadpool(deliveries.stop)
            if owned and app.state.engine is not None:
                await run_in_threadpool(app.state.engine.close)
            app.state.engine = None if owned else engine
            if owned:
                app.state.authenticator = None

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
    app.state.web_page = (
        WebPage(engine, settings) if engine is not None and settings.web_mode != "off" else None
    )
    app.state.authenticator = (
        None if engine is None else build_authenticator(engine.store, settings)
    )
    document_auth_errors(app)
    # Request ids, access lines and metrics; the log format; /metrics on a port of its own.
    install_observability(app, settings)
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # Scan uploads stream into the store, record by record.
        path_limits={"/v1/scans": settings.max_scan_upload_bytes},
    )

    v1 = APIRouter(prefix="/v1")
    v1.include_router(health.router)
    v1.include_router(profiles.router)
    v1.include_router(checks.router)
    v1.include_router(watchlist_routes.router)
    v1.include_router(scan_routes.router)
    v1.include_router(case_routes.router)
    v1.include_router(evidence_routes.router)
    app.include_router(v1)
    app.include_router(health.probes)  # /livez, /readyz, /metrics
    if settings.web_mode != "off":
        # The page: its files and the endpoints it calls (service/web).
        app.include_router(web_routes.router)
        app.include_router(watching_routes.router)  # the person's private watch page
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
