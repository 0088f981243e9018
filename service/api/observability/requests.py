"""Every HTTP request: an id (`X-Request-ID`) that its log lines and answer carry, one access
line, and its count and latency by route template."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from time import perf_counter
from typing import Any

from fastapi import FastAPI
from prometheus_client import start_http_server
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.observability.collectors import application_registry
from service.core.observability.logs import configure_logging, log_context
from service.core.observability.metrics import observe_request
from service.core.settings import Settings

access_logger = logging.getLogger("service.access")
logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A sent id is kept when it could be one of ours or a proxy's (UUIDs, trace ids): short, and
# nothing that could break a log line or a header.
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
UNMATCHED_ROUTE = "unmatched"  # a path no route serves: one series, whatever was asked


def request_id_of(headers: Headers) -> str:
    """The request's id as sent, when well-formed; else a new one."""
    sent = headers.get(REQUEST_ID_HEADER, "")
    return sent if _WELL_FORMED_ID.fullmatch(sent) else uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The route that answered, as declared (`/v1/profiles/{platform}/{handle}`): never the
    path itself, which may hold a credential (a watch link's token) and has no bound."""
    # Recent FastAPI keeps an included route as its router declared it (without the prefixes
    # of the routers it was included in) and says the path it serves in the request's
    # effective route context; earlier versions copy the route with the whole path.
    fastapi_scope = scope.get("fastapi")
    effective = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    route = scope.get("route")
    path = getattr(effective, "path_format", None) or getattr(route, "path_format", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class RequestObservability:
    """The outermost layer of the application (outside its error handlers, so that an answer
    to an unexpected error carries the id and is counted too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        status = 500  # what the client gets when nothing was sent before an error

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id):
            started = perf_counter()
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = perf_counter() - started
                route, method = route_template(scope), scope["method"]
                observe_request(route, method, status, seconds)
                fields: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                }
                (access_logger.warning if status >= 500 else access_logger.info)(
                    "%s %s %d %.1f ms",
                    method,
                    route,
                    status,
                    seconds * 1000,
                    extra={"fields": fields},
                )


def install_observability(app: FastAPI, settings: Settings) -> None:
    """The log format of the settings (now, so that the server's own start is logged so too);
    request ids, access lines and metrics for `app`'s requests; `/metrics`' registry in
    `app.state.metrics`; and with a metrics port, a server of /metrics without a key on it
    while `app` runs."""
    configure_logging(settings.log_format)
    app.state.metrics = application_registry(lambda: getattr(app.state, "engine", None))
    # Outside the middleware stack Starlette builds, whose outermost layer answers unexpected
    # errors: `add_middleware` would place this inside it.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestObservability(build_stack())  # type: ignore[method-assign]
    app.router.lifespan_context = _observed(app.router.lifespan_context, app, settings)


def _observed(
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]], app: FastAPI, settings: Settings
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def observed(application: Any) -> AsyncIterator[Any]:
        metrics_server = None
        if settings.metrics_port is not None:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.metrics_host, registry=app.state.metrics
            )
            logger.info(
                "metrics without a key on http://%s:%d/metrics",
                settings.metrics_host,
                settings.metrics_port,
            )
        try:
            async with lifespan(application) as state:
                yield state
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()

    return observed
