"""`Idempotency-Key` on the POSTs that create something: a retry gets the first answer.

A route opts in with the `idempotent(require(permission))` dependency, on a router whose
`route_class` is `IdempotentRoute`. With the header, the request claims the key for its API
key before it runs (`service.store.idempotency`):

- the first request runs; its answer, if it succeeded (2xx), is kept with the key for a day,
  and an error gives the key back, so a retry runs again;
- a retry with the same request (method, path, query, content type and body) gets the kept
  answer, status, body and `Location`, marked `Idempotent-Replayed: true`;
- the same key with another request is 422 `idempotency_key_reused`;
- the same key while its first request still runs is 409 `idempotency_key_in_use`.

The request's digest is taken from the body as it arrives, whoever reads it, so a scan upload
still streams: its digest is known, and kept, once it has run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Message, Receive

from models.errors import InvalidInputError
from service.api.deps import EngineDep
from service.auth.roles import Caller
from service.core.errors import ConflictError
from service.store.idempotency import (
    MAX_KEY_LENGTH,
    Claimed,
    Completed,
    IdempotencyStore,
    InProgress,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces: a UUID, or any token a client makes up.
KEY_PATTERN = rf"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
# The headers of an answer that a replay repeats (the others are made anew).
_KEPT_HEADERS = ("content-type", "location")
# Where the request's idempotency state lives while it is handled.
_STATE = "idempotency"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        pattern=KEY_PATTERN,
        description="A key of the client's choosing (a UUID, say; 1 to 255 printable ASCII "
        "characters) that makes a retry safe: the same request with the same key, by the same "
        "API key within 24 hours, gets the first answer (`Idempotent-Replayed: true`) instead "
        "of creating again. The same key with another request is 422 "
        "`idempotency_key_reused`; while the first still runs, 409 `idempotency_key_in_use`.",
    ),
]


class IdempotencyKeyReusedError(InvalidInputError):
    """The key was used for another request (another body, path or query) by this API key."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUseError(ConflictError):
    """A request with this key is still running."""

    code = "idempotency_key_in_use"


class _Replay(Exception):
    """Raised by the dependency to answer with a kept answer instead of running the route."""

    def __init__(self, kept: Completed) -> None:
        super().__init__("replay")
        self.kept = kept


class _DigestedBody:
    """The request's `receive`, digesting the body as it passes (with what else identifies
    the request, so that the same key on another path or query does not match)."""

    def __init__(self, receive: Receive, request: Request) -> None:
        self._receive = receive
        self._digest = hashlib.sha256()
        identity = [
            request.method,
            request.url.path,
            request.url.query,
            request.headers.get("content-type", ""),
        ]
        self._digest.update(json.dumps(identity).encode("utf-8") + b"\n")
        self.complete = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not self.complete:
            self._digest.update(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        return message

    async def finish(self) -> str:
        """The digest, once the rest of the body (if any is left unread) has been read."""
        while not self.complete:
            message = await self.receive()
            if message["type"] != "http.request":
                break  # the client went away; the digest is of what came
        return self._digest.hexdigest()


@dataclass
class _Idempotency:
    """One request's key, body digest and claim, from the route to the dependency and back."""

    body: _DigestedBody
    store: IdempotencyStore | None = None
    claim: Claimed | None = field(default=None)


def idempotent(
    caller_of: Callable[..., Caller], *, streamed: bool = False
) -> Callable[..., Awaitable[None]]:
    """The dependency that makes a creating route honour `Idempotency-Key`.

    `caller_of` is the route's own key check (`require(permission)`): FastAPI runs it once
    for both, and keys are kept per API key. `streamed`: the route reads its body as a stream
    that may be larger than memory (a scan upload), so its digest is taken as the route reads
    it, not beforehand.
    """

    authenticated = Depends(caller_of)

    async def claim_idempotency_key(
        request: Request,
        *,
        caller: Caller = authenticated,
        engine: EngineDep,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> None:
        if idempotency_key is None:
            return
        state: _Idempotency | None = getattr(request.state, _STATE, None)
        if state is None:
            raise RuntimeError("an idempotent route must be an IdempotentRoute")
        if not streamed:
            await request.body()  # read through the digest (and kept for the route)
        request_hash = None if streamed else await state.body.finish()
        store = IdempotencyStore(engine.store)
        found = await run_in_threadpool(store.claim, caller.key_id, idempotency_key, request_hash)
        if isinstance(found, Claimed):
            state.store, state.claim = store, found
            return
        if found.request_hash is not None and request_hash is None:
            request_hash = await state.body.finish()  # reads the body only to compare it
        if found.request_hash is not None and found.request_hash != request_hash:
            raise IdempotencyKeyReusedError(
                f"the {IDEMPOTENCY_HEADER} {idempotency_key!r} was used for another request "
                "(another body, path or query); use a new key for a new request"
            )
        if isinstance(found, InProgress):
            raise IdempotencyKeyInUseError(
                f"a request with the {IDEMPOTENCY_HEADER} {idempotency_key!r} is still "
                "running; retry once it has answered"
            )
        raise _Replay(found)

    return claim_idempotency_key


class IdempotentRoute(APIRoute):
    """A route that keeps the answer of a request that claimed an idempotency key, gives the
    key back when the request fails, and answers a replay with the kept answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_idempotently(request: Request) -> Response:
            if IDEMPOTENCY_HEADER.lower() not in request.headers:
                return await handle(request)
            body = _DigestedBody(request.receive, request)
            request = Request(request.scope, body.receive)
            state = _Idempotency(body=body)
            setattr(request.state, _STATE, state)
            try:
                response = await handle(request)
            except _Replay as replay:
                return _replayed(replay.kept)
            except BaseException:
                await _release(state)
                raise
            await _keep(state, response)
            return response

        return handle_idempotently


def _replayed(kept: Completed) -> Response:
    return Response(
        content=kept.body,
        status_code=kept.status_code,
        headers={**kept.headers, REPLAYED_HEADER: "true"},
    )


async def _release(state: _Idempotency) -> None:
    if state.store is None or state.claim is None:
        return
    try:
        await run_in_threadpool(state.store.release, state.claim)
    except SQLAlchemyError:
        # The claim lapses on its own (service.store.idempotency.ABANDONED_AFTER).
        logger.exception("could not give back an idempotency key")


async def _keep(state: _Idempotency, response: Response) -> None:
    store, claim = state.store, state.claim
    if store is None or claim is None:
        return
    body = getattr(response, "body", None)
    if not 200 <= response.status_code < 300 or not isinstance(body, bytes):
        await _release(state)
        return
    headers = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    request_hash = await state.body.finish()
    try:
        await run_in_threadpool(
            lambda: store.complete(
                claim,
                request_hash=request_hash,
                status_code=response.status_code,
                headers=headers,
                body=body,
            )
        )
    except SQLAlchemyError:
        # The thing was created: answer so. A retry waits for the claim to lapse, then runs.
        logger.exception("could not keep the answer of an idempotent request")


def document_idempotency(operation: dict[str, Any]) -> None:
    """Complete the OpenAPI operation of an idempotent route: the 409 a concurrent duplicate
    gets, and the header that marks a replayed answer."""
    parameters = operation.get("parameters", [])
    if not any(p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER for p in parameters):
        return
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if str(status).startswith("2"):
            response.setdefault("headers", {})[REPLAYED_HEADER] = {
                "description": "`true` on an answer repeated for a retry with the same "
                f"`{IDEMPOTENCY_HEADER}`",
                "schema": {"type": "string", "enum": ["true"]},
            }
    responses.setdefault(
        "409",
        {
            "description": f"a request with the same `{IDEMPOTENCY_HEADER}` is still running",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
            "headers": {
                "Retry-After": {
                    "description": "whole seconds to wait before the retry",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    )
