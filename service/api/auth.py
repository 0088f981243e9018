"""The API-key dependency and its place in the OpenAPI document.

Usage in a route: `caller: Annotated[Caller, Depends(require("scans"))]`, declared before the
body's dependencies so a request without a valid key is refused before its body is parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.idempotency import document_idempotency
from service.api.schemas import ErrorOut
from service.auth.keys import ADMIN_KEY_FILE, Authenticator, RateLimiter, ensure_admin_key
from service.auth.roles import Caller, Permission
from service.core.errors import PROBLEM_MEDIA_TYPE
from service.core.observability import add_to_log_context
from service.core.settings import Settings
from service.store import KeyStore, Store

logger = logging.getLogger(__name__)

# auto_error=False: a missing key must answer with the contract's error shape (our 401), not
# FastAPI's own 403. Declaring them makes /docs offer an "Authorize" button for both forms.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="An API key as a bearer token: `Authorization: Bearer cf_...`",
)
_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="APIKeyHeader",
    description="An API key in its own header: `X-API-Key: cf_...`",
)

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyHeaderDep = Annotated[str | None, Depends(_api_key_header)]

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# What every operation that needs a key may answer besides its own statuses.
AUTH_RESPONSES: dict[str, str] = {
    "401": "no API key, or one that is unknown or revoked",
    "403": "the key's role does not allow this operation",
    "429": "the key is over its rate limit; `Retry-After` says when to retry",
    "503": "the service is not ready: its engine is still loading",
}

_AUTH_HEADERS: dict[str, dict[str, Any]] = {
    "401": {"WWW-Authenticate": {"description": "the scheme to use", "schema": {"type": "string"}}},
    "429": {
        "Retry-After": {
            "description": "whole seconds to wait before the next request",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def build_authenticator(store: Store, settings: Settings) -> Authenticator:
    """The authenticator over `store`'s keys, with the rate limit of `settings`."""
    limiter = RateLimiter(
        per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst
    )
    return Authenticator(KeyStore(store), limiter=limiter)


def start_authentication(store: Store, settings: Settings, *, demo: bool = False) -> Authenticator:
    """At a server's start: the first admin key if the store has none, then the authenticator.

    Logs where the admin key file is; with `demo`, the key itself too, since the demo is for
    trying the service out on one's own machine.
    """
    authenticator = build_authenticator(store, settings)
    path = (settings.data_dir / ADMIN_KEY_FILE).resolve()
    if ensure_admin_key(authenticator.keys, data_dir=settings.data_dir) is not None:
        logger.warning(
            "created the first API key (name admin, role admin) in %s, readable by its owner "
            "only; send it as 'Authorization: Bearer KEY', and create more keys with "
            "'clonefinder keys create'",
            path,
        )
    elif path.is_file():
        logger.info("the first admin key is in %s", path)
    if demo and path.is_file():
        key = path.read_text(encoding="ascii").strip()
        logger.info("demo: send 'Authorization: Bearer %s' with each /v1 request", key)
    return authenticator


def get_authenticator(request: Request) -> Authenticator:
    """The authenticator built with the engine; 503 while there is none (starting)."""
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise StarletteHTTPException(503, "the service is not ready: its engine is not loaded")
    return authenticator


def require(permission: Permission) -> Callable[..., Caller]:
    """A dependency that admits a request whose key's role has `permission`.

    The key comes from `Authorization: Bearer KEY` or, failing that, `X-API-Key: KEY`.
    401 without a valid key, 429 over the key's rate limit, 403 when its role lacks the
    permission (service/errors.py maps the errors).
    """
    return RequiredPermission(permission)


@dataclass(frozen=True)
class RequiredPermission:
    """`require(permission)`'s dependency; it keeps the permission so that the routes can be
    read against the authorisation matrix (service/auth.py)."""

    permission: Permission

    def __call__(
        self,
        request: Request,
        bearer: BearerDep,
        api_key: ApiKeyHeaderDep,
    ) -> Caller:
        authenticator = get_authenticator(request)
        presented = bearer.credentials if bearer is not None else api_key
        caller = authenticator.authenticate(presented, self.permission)
        add_to_log_context(key_name=caller.name)  # the request's log lines name its key
        if authenticator.touch_due(caller.key_id):
            # Here, not as a background task: those run only after a successful response, and
            # a key that only ever gets 404s was still used. At most once a minute per key.
            authenticator.touch(caller.key_id)
        return caller


def document_auth_errors(app: FastAPI) -> None:
    """Make the OpenAPI document list the answers every keyed operation may give.

    401, 403, 429 and 503 (not ready) on every operation that needs a key, and 413 on every
    one that takes a body (the size limit is a middleware). A dependency cannot add responses
    to the routes that use it; doing it here, once for the whole document, covers every
    router that declares `require(...)`, present or future.
    """
    build = app.openapi  # FastAPI's own builder, which caches in `app.openapi_schema`

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    if isinstance(operation, dict):
                        _add_shared_responses(operation)
                        document_idempotency(operation)
                        _as_problem_details(operation)
            _ensure_error_schema(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_shared_responses(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    # FastAPI documents its own validation-error body for 422; the handlers in
    # service/errors.py answer every 422 with the contract's error shape instead.
    invalid = responses.get("422", {}).get("content", {}).get("application/json", {})
    if invalid.get("schema") == {"$ref": "#/components/schemas/HTTPValidationError"}:
        invalid["schema"] = _ERROR_REF
    shared = dict(AUTH_RESPONSES) if operation.get("security") else {}
    if "requestBody" in operation:
        shared["413"] = "the body is larger than the limit"
    for status, description in shared.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
        if status in _AUTH_HEADERS:
            response["headers"] = _AUTH_HEADERS[status]
        responses.setdefault(status, response)


def _as_problem_details(operation: dict[str, Any]) -> None:
    """Error answers are `application/problem+json` (service/core/errors.py), whatever media
    type the route's declaration gave them."""
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {})
        if str(status)[0] in "45" and content.get("application/json", {}).get("schema") == (
            _ERROR_REF
        ):
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


def _ensure_error_schema(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorOut" not in schemas:
        full = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(full.pop("$defs", {}))
        schemas["ErrorOut"] = full
