"""The one place that maps domain errors to HTTP statuses, error bodies and CLI exit codes.

Code that raises only knows `models.errors`; the transports (HTTP API, command line) ask this
module what a given error means to their users, so both stay consistent.

Every HTTP error answer is an RFC 9457 problem details document (`application/problem+json`:
`type`, `title`, `status`, `detail`, `instance`) that also carries the contract's
`{"error": {"code", "message", "details"}}`, so clients of either kind read it.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import (
    AuthenticationError,
    CloneFinderError,
    ConfigurationError,
    IndexStateError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UnsupportedMediaTypeError,
)

logger = logging.getLogger(__name__)

# CLI exit statuses (interface.md section 2).
EXIT_OK = 0
EXIT_SOME_REJECTED = 1  # also: a resource that does not exist, an unexpected failure
EXIT_INVALID_INPUT = 2  # the input cannot be used at all (unreadable file, invalid query)
EXIT_SERVICE_STATE = 3  # the data dir, its indexes or a setting cannot work


# Most specific first: PayloadTooLargeError is an InvalidInputError.
class ConflictError(CloneFinderError):
    """The request collides with another one that is still running."""

    code = "conflict"


_HTTP_STATUS: tuple[tuple[type[CloneFinderError], int], ...] = (
    (PayloadTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (InvalidInputError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (IndexStateError, 503),
    (ConfigurationError, 500),
    # API keys: who may call, and how often.
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (RateLimitedError, 429),
)

_EXIT_CODE: tuple[tuple[type[CloneFinderError], int], ...] = (
    (InvalidInputError, EXIT_INVALID_INPUT),
    (NotFoundError, EXIT_SOME_REJECTED),
    (IndexStateError, EXIT_SERVICE_STATE),
    (ConfigurationError, EXIT_SERVICE_STATE),
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def http_status(exc: CloneFinderError) -> int:
    """The HTTP status that tells a client what kind of failure `exc` is."""
    for cls, status in _HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def http_headers(exc: CloneFinderError) -> dict[str, str] | None:
    """Headers the status of `exc` calls for (RFC 9110: 401 names the scheme, 429 and 409
    when to retry)."""
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, ConflictError):
        return {"Retry-After": "1"}  # the other request is usually done by then
    return None


def exit_code(exc: CloneFinderError) -> int:
    """The CLI exit status for a command that stopped on `exc`."""
    for cls, code in _EXIT_CODE:
        if isinstance(exc, cls):
            return code
    return EXIT_SOME_REJECTED


PROBLEM_MEDIA_TYPE = "application/problem+json"
# Each error code's problem type is this plus the code: an identifier that stays the same on
# every deployment (RFC 9457 advises absolute URIs), listed in the README's HTTP API section.
PROBLEM_TYPE_BASE = "https://clonefinder.dev/problems/"
# The web page's scripts (service/web/static) send this header on every request and read a
# body only when its type is application/json, so the page's answers keep that media type.
_PAGE_HEADER = b"x-clonefinder-page"

# Titles that the code's words alone would say badly; the others are the code in words.
_TITLES = {
    "internal": "Internal server error",
    "invalid_input": "Invalid input",
    "invalid_request": "Invalid request",
    "unavailable": "Service unavailable",
}


def problem_type(code: str) -> str:
    """The URI that names the kind of problem an error `code` is."""
    return PROBLEM_TYPE_BASE + code


def problem_title(code: str, status: int) -> str:
    """The same short summary for every error of `code` (RFC 9457: the title of its type)."""
    if code in _TITLES:
        return _TITLES[code]
    if code.startswith("http_"):
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return f"HTTP {status}"
    return code.replace("_", " ").capitalize()


def error_body(
    code: str,
    message: str,
    details: list[Any] | None = None,
    *,
    status: int,
    instance: str,
) -> dict[str, Any]:
    """Problem details for an error answer to the request at `instance` (its path), with the
    contract's `{"error": {"code", "message", "details"}}` beside them."""
    return {
        "type": problem_type(code),
        "title": problem_title(code, status),
        "status": status,
        "detail": message,
        "instance": instance,
        "error": {"code": code, "message": message, "details": jsonable_encoder(details or [])},
    }


def error_response(
    scope: Scope,
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error answer to the request of `scope`."""
    body = error_body(code, message, details, status=status, instance=_request_path(scope))
    from_page = any(name == _PAGE_HEADER for name, _ in scope.get("headers", ()))
    media_type = "application/json" if from_page else PROBLEM_MEDIA_TYPE
    return JSONResponse(body, status_code=status, headers=headers, media_type=media_type)


def domain_error_details(exc: CloneFinderError) -> list[dict[str, Any]]:
    """`exc.details`, or the offending field alone when the raiser gave only that."""
    if exc.details:
        return exc.details
    field = getattr(exc, "field", None)
    return [{"field": field, "message": exc.message}] if field else []


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CloneFinderError)
    status = http_status(exc)
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(
        request.scope,
        status,
        exc.code,
        exc.message,
        domain_error_details(exc),
        headers=http_headers(exc),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only loc/msg/type: `input` would echo (possibly huge) bodies, `ctx` may hold exceptions.
    details = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(request.scope, 422, "invalid_request", message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405 and message == "Method Not Allowed":
        message = f"method {request.method} is not allowed on {request.url.path}"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        # The router names the methods of the first route on the path; a path served by
        # several routes (GET and DELETE of one resource) allows all of theirs (RFC 9110).
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return error_response(request.scope, exc.status_code, code, message, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _request_path(scope: Scope) -> str:
    """The path as the client sent it (still percent-encoded, so a URI reference)."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("ascii", errors="replace")
    return str(scope.get("path") or "/")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app serves at the request's path (each asked as routing
    asks, so that included routers count too)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback stays in the server log; the client learns only that it failed.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request.scope, 500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of `app` answer with the contract's error shape, never a traceback."""
    app.add_exception_handler(CloneFinderError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


# What is read and dropped of a refused body before the 413 goes out: a client still sending
# when the server closes gets a reset instead of the answer (most clients send the whole body
# before they read). Bounded in bytes and time, so a refused body costs little.
_DRAIN_BYTES = 16 * 1024 * 1024
_DRAIN_SECONDS = 2.0


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a request's body, up to `_DRAIN_BYTES` or `_DRAIN_SECONDS`."""
    left = _DRAIN_BYTES
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


class BodySizeLimitMiddleware:
    """Refuses request bodies above `max_bytes` with 413, by Content-Length and while streaming.

    The streaming check matters for chunked uploads, which carry no Content-Length; whatever
    the application made of a truncated body is discarded and the client gets the 413.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Endpoints that stream their body into the store (bulk scan uploads) take more.
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            if 0 <= declared <= _DRAIN_BYTES:
                await _drain(receive)
            await self._refuse(scope, send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLargeError(self._message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLargeError:
            if not exceeded:
                raise
        if exceeded and not started:
            await _drain(receive)
            await self._refuse(scope, send, limit)

    def _message(self, limit: int) -> str:
        return f"request body is larger than the limit of {limit} bytes"

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        response = error_response(scope, 413, PayloadTooLargeError.code, self._message(limit))
        response.headers["connection"] = "close"
        await response(
            {"type": "http", "method": "POST", "path": "/", "headers": []},
            _no_body,
            send,
        )


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None
