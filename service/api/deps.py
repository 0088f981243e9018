"""Dependencies of the routes: the engine, the settings and the parsed request bodies.

Annotated aliases (as in full-stack-fastapi-template's `api/deps.py`) keep the routes to one
line of parsing and one engine call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import InvalidInputError, PayloadTooLargeError
from service.engine import Engine
from service.settings import Settings


def get_engine(request: Request) -> Engine:
    """The engine built at start-up; 503 while there is none (starting, or it failed to load)."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise StarletteHTTPException(503, "the service is not ready: its engine is not loaded")
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def json_body(request: Request) -> Any:
    """The request body as JSON; the size limit is enforced by the middleware beforehand."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidInputError("the request body is empty; send a JSON document")
    try:
        # Off the event loop: a body can be tens of megabytes of base64 avatars.
        return await run_in_threadpool(json.loads, raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the request body is not valid JSON: {exc}") from None


JsonBody = Annotated[Any, Depends(json_body)]


@dataclass(frozen=True)
class ProfileBatch:
    """The records of a `POST /v1/profiles` body, each with its "index N"."""

    items: list[tuple[str, Any]]


def profile_batch(body: JsonBody, settings: SettingsDep) -> ProfileBatch:
    """One object or a list of them; records themselves are validated by the engine."""
    if isinstance(body, dict):
        records: list[Any] = [body]
    elif isinstance(body, list):
        records = body
    else:
        raise InvalidInputError(
            f"the body must be a profile object or a list of them, got {_json_type(body)}"
        )
    limit = settings.max_records_per_request
    if len(records) > limit:
        raise PayloadTooLargeError(
            f"{len(records)} records in one request; the limit is {limit} "
            "(split the list, or use a bulk scan)"
        )
    return ProfileBatch(items=[(f"index {i}", record) for i, record in enumerate(records)])


ProfileBatchDep = Annotated[ProfileBatch, Depends(profile_batch)]


@dataclass(frozen=True)
class CheckRequest:
    record: dict[str, Any]
    top_k: int
    min_score: float | None


_DEFAULT_TOP_K = 10


def check_request(
    body: JsonBody,
    top_k: Annotated[int | None, Query(ge=1, le=100, description="most matches")] = None,
    min_score: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="least score reported")
    ] = None,
) -> CheckRequest:
    """A check's profile record and options; query parameters win over body fields."""
    if not isinstance(body, dict):
        raise InvalidInputError(f"a check takes one profile object, got {_json_type(body)}")
    record = dict(body)
    body_top_k = _option(record.pop("top_k", None), "top_k", int, 1, 100)
    body_min_score = _option(record.pop("min_score", None), "min_score", float, 0.0, 1.0)
    chosen_top_k = top_k if top_k is not None else body_top_k
    return CheckRequest(
        record=record,
        top_k=int(chosen_top_k) if chosen_top_k is not None else _DEFAULT_TOP_K,
        min_score=min_score if min_score is not None else body_min_score,
    )


CheckRequestDep = Annotated[CheckRequest, Depends(check_request)]


def _option(value: Any, name: str, kind: type, low: float, high: float) -> Any:
    if value is None:
        return None
    message = f"field '{name}': must be {'an integer' if kind is int else 'a number'}"
    if isinstance(value, bool):
        raise InvalidInputError(message, details=[{"field": name, "message": message}])
    try:
        parsed: Any = TypeAdapter(kind).validate_python(value, strict=kind is int)
    except ValidationError:
        raise InvalidInputError(message, details=[{"field": name, "message": message}]) from None
    if not low <= parsed <= high:
        message = f"field '{name}': must be between {low:g} and {high:g}"
        raise InvalidInputError(message, details=[{"field": name, "message": message}])
    return parsed


def _json_type(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
