"""Dependencies of the routes: the engine, the settings and the parsed request bodies.

Annotated aliases (as in full-stack-fastapi-template's `api/deps.py`) keep the routes to one
line of parsing and one engine call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio.from_thread
from fastapi import Depends, Query, Request, Response
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import InvalidInputError, PayloadTooLargeError
from models.profile import MAX_RECORD_DEPTH, YEARS_INSIDE_THE_RANGE, JsonInt, iso_time
from service.cases.service import Cases
from service.core.bounded_json import body_elements
from service.core.settings import Settings
from service.evidence import Export
from service.matching.engine import Engine
from service.matching.own_accounts import FIELD as OWN_ACCOUNTS_FIELD
from service.matching.own_accounts import OwnAccount, parse_own_accounts
from service.scans.service import MAX_LINE_NO, ScanService, ScanUpload
from service.watchlist.service import AlertQuery, RegisterRequest, Watchlist

# Store ids are 64-bit signed integers: a larger one can name nothing, and must be refused
# as a bad request rather than overflow the database driver.
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, FastApiPath(ge=1, le=MAX_ROW_ID)]


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


async def json_body(request: Request, settings: SettingsDep) -> Any:
    """The request body as JSON, within the record limits (`service.core.bounded_json`): a list's
    element that is too large, too deep or not JSON is left in its place as its
    InvalidRecordError, so that it alone is rejected. The body's size limit is enforced by
    the middleware beforehand."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidInputError("the request body is empty; send a JSON document")
    # Off the event loop: a body can be tens of megabytes of base64 avatars.
    return await run_in_threadpool(
        lambda: body_elements(raw, max_bytes=settings.max_record_bytes, max_depth=MAX_RECORD_DEPTH)
    )


JsonBody = Annotated[Any, Depends(json_body)]

BodyModel = TypeVar("BodyModel", bound=BaseModel)


def body_of(model: type[BodyModel]) -> Callable[..., BodyModel]:
    """A dependency that reads the body as JSON (422 `invalid_input` when it is not) and
    validates it against `model` (422 `invalid_request` naming the field), the same answers
    as every other body; FastAPI's own parsing would answer 400 to a body that is not JSON.
    The route documents the body with `openapi_extra`."""

    def dependency(body: JsonBody) -> BodyModel:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
            raise RequestValidationError(errors) from None

    dependency.__name__ = f"{model.__name__}_body"
    return dependency


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
    check_image_count(records, limit=settings.max_images_per_request)
    return ProfileBatch(items=[(f"index {i}", record) for i, record in enumerate(records)])


_AVATAR_FIELDS = ("avatar_base64", "avatar_url", "avatar_path")


def check_image_count(records: list[Any], *, limit: int) -> None:
    """413 when the records carry more than `limit` avatars: each costs a decode and hashing,
    a URL a fetch too, far more than the rest of a record (records-per-request cannot see it).
    """
    images = sum(
        1
        for record in records
        if isinstance(record, dict) and any(record.get(field) for field in _AVATAR_FIELDS)
    )
    if images > limit:
        raise PayloadTooLargeError(
            f"{images} avatars in one request; the limit is {limit} "
            "(split the list, or use a bulk scan)"
        )


ProfileBatchDep = Annotated[ProfileBatch, Depends(profile_batch)]


@dataclass(frozen=True)
class CheckRequest:
    record: dict[str, Any]
    top_k: int
    min_score: float | None
    own_accounts: tuple[OwnAccount, ...] = ()


_DEFAULT_TOP_K = 10


def check_request(
    body: JsonBody,
    top_k: Annotated[int | None, Query(ge=1, le=100, description="most matches")] = None,
    min_score: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="least score reported")
    ] = None,
) -> CheckRequest:
    """A check's profile record and options (`own_accounts` among them); query parameters
    win over body fields."""
    if not isinstance(body, dict):
        raise InvalidInputError(f"a check takes one profile object, got {_json_type(body)}")
    record = dict(body)
    body_top_k = _option(record.pop("top_k", None), "top_k", int, 1, 100)
    body_min_score = _option(record.pop("min_score", None), "min_score", float, 0.0, 1.0)
    own_accounts = parse_own_accounts(record.pop(OWN_ACCOUNTS_FIELD, None))
    chosen_top_k = top_k if top_k is not None else body_top_k
    return CheckRequest(
        record=record,
        top_k=int(chosen_top_k) if chosen_top_k is not None else _DEFAULT_TOP_K,
        min_score=min_score if min_score is not None else body_min_score,
        own_accounts=own_accounts,
    )


CheckRequestDep = Annotated[CheckRequest, Depends(check_request)]


def _option(value: Any, name: str, kind: type, low: float, high: float) -> Any:
    if value is None:
        return None
    message = f"field '{name}': must be {'an integer' if kind is int else 'a number'}"
    if isinstance(value, bool):
        raise InvalidInputError(message, details=[{"field": name, "message": message}])
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(JsonInt if kind is int else kind)
        parsed: Any = adapter.validate_python(value, strict=True)
    except ValidationError:
        raise InvalidInputError(message, details=[{"field": name, "message": message}]) from None
    if not low <= parsed <= high:
        message = f"field '{name}': must be between {low:g} and {high:g}"
        raise InvalidInputError(message, details=[{"field": name, "message": message}])
    return parsed


def _json_type(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- watchlists, alerts and webhook deliveries ---------------------------------------------


def get_watchlist(engine: EngineDep) -> Watchlist:
    return engine.watchlist


WatchlistDep = Annotated[Watchlist, Depends(get_watchlist)]


def watchlist_request(body: JsonBody, request: Request) -> RegisterRequest:
    """A new entry: the identity under `identity`, or as the body's own fields, with the
    options `threshold`, `webhook_url` and `email` beside it. The identity itself is validated
    by the watchlist, like a check's query."""
    if not isinstance(body, dict):
        raise InvalidInputError(f"a watchlist entry is one JSON object, got {_json_type(body)}")
    fields = dict(body)
    threshold = _option(fields.pop("threshold", None), "threshold", float, 0.0, 1.0)
    webhook_url = fields.pop("webhook_url", None)
    if webhook_url is not None and not isinstance(webhook_url, str):
        message = "field 'webhook_url': must be a string"
        raise InvalidInputError(message, details=[{"field": "webhook_url", "message": message}])
    email = fields.pop("email", None)
    if email is not None and not isinstance(email, str):
        message = "field 'email': must be a string"
        raise InvalidInputError(message, details=[{"field": "email", "message": message}])
    identity = fields.pop("identity", None)
    if identity is None:
        identity = fields
    elif not isinstance(identity, dict):
        message = "field 'identity': must be a profile object"
        raise InvalidInputError(message, details=[{"field": "identity", "message": message}])
    elif fields:
        message = (
            f"fields {sorted(fields)} are outside 'identity': send the identity's fields either "
            "under 'identity' or at the top level, not both"
        )
        raise InvalidInputError(message, details=[{"field": "identity", "message": message}])
    return RegisterRequest(
        identity=identity,
        threshold=threshold,
        webhook_url=webhook_url or None,
        email=email or None,
        link_base_url=str(request.base_url),
    )


WatchlistRequestDep = Annotated[RegisterRequest, Depends(watchlist_request)]


def _iso_time(value: Any) -> Any:
    # As a record's `created_at`: ISO 8601 only (pydantic alone reads `0.5` as seconds since
    # 1970), and a time the database can compare in UTC.
    return None if value is None else iso_time(value)


def _true_or_false(value: Any) -> Any:
    """A flag parameter as the document says it: `true` or `false`, not `1`, `yes` or `on`."""
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError("must be true or false")
        return value.lower() == "true"
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_time)]
TrueOrFalse = Annotated[bool, BeforeValidator(_true_or_false)]


def alert_query(
    entry_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="only this entry's alerts")
    ] = None,
    acknowledged: Annotated[
        TrueOrFalse | None,
        Query(description="only acknowledged (true) or unacknowledged (false)"),
    ] = None,
    since: Annotated[
        IsoTime | None,
        Query(
            description="only alerts created at or after this ISO time",
            json_schema_extra={"pattern": YEARS_INSIDE_THE_RANGE},
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[1-9][0-9]{0,18}$",
            description="the previous page's next_cursor: the next, older page",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="most alerts in the page")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="alerts to skip")] = 0,
) -> AlertQuery:
    return AlertQuery(
        entry_id=entry_id,
        acknowledged=acknowledged,
        since=since,
        cursor=cursor,
        limit=limit,
        offset=offset,
    )


AlertQueryDep = Annotated[AlertQuery, Depends(alert_query)]


# --- bulk scans ----------------------------------------------------------------------------


def get_scans(request: Request) -> ScanService:
    """The scan jobs service built at start-up; 503 while there is none."""
    scans: ScanService | None = getattr(request.app.state, "scans", None)
    if scans is None:
        raise StarletteHTTPException(503, "the service is not ready: its engine is not loaded")
    return scans


ScansDep = Annotated[ScanService, Depends(get_scans)]


def scan_upload(
    request: Request,
    mode: Annotated[
        Literal["against_index", "clusters"] | None,
        Query(description="against_index (default) or clusters"),
    ] = None,
    top_k: Annotated[int | None, Query(ge=1, le=100, description="most matches")] = None,
    min_score: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="least score reported")
    ] = None,
    ingest: Annotated[
        TrueOrFalse | None, Query(description="also ingest the profiles (needs profiles.write)")
    ] = None,
) -> ScanUpload:
    """A scan upload: its options from the query (they win over options in the body) and its
    body as a stream that the (blocking) route reads chunk by chunk."""
    return ScanUpload(
        content_type=request.headers.get("content-type", ""),
        options={"mode": mode, "top_k": top_k, "min_score": min_score, "ingest": ingest},
        chunks=_blocking_body(request),
    )


def _blocking_body(request: Request) -> Iterator[bytes]:
    """The request body, chunk by chunk as it arrives, for a route running in a worker
    thread: each chunk is awaited on the event loop, so the body is never held whole."""
    stream = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


ScanUploadDep = Annotated[ScanUpload, Depends(scan_upload)]
ResultsOffset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_LINE_NO,
        description="the result line to start at (0: the first); lines in order",
    ),
]


# --- cases and evidence --------------------------------------------------------------------


def get_cases(engine: EngineDep) -> Cases:
    return engine.cases


CasesDep = Annotated[Cases, Depends(get_cases)]


def export_response(export: Export) -> Response:
    """An export as a file download, with its digest as the audit log records it."""
    return Response(
        content=export.data,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "X-Content-SHA256": export.sha256,
        },
    )
