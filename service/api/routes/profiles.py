"""Ingest, read and erase profile records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from service.api.auth import require
from service.api.deps import EngineDep, ProfileBatchDep
from service.api.idempotency import IdempotentRoute, idempotent
from service.api.scan_schemas import any_record
from service.api.schemas import (
    ERROR_RESPONSES,
    ErrorOut,
    IngestItemOut,
    IngestOut,
    ProfileIn,
    ProfileOut,
    RecordErrorOut,
)
from service.auth.roles import Caller

router = APIRouter(prefix="/profiles", tags=["profiles"], route_class=IdempotentRoute)

_PROFILE_SCHEMA = ProfileIn.model_json_schema()
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no profile with that identity"}
}


@router.post(
    "",
    response_model=IngestOut,
    summary="Ingest one profile or a list of profiles",
    dependencies=[Depends(idempotent(require("profiles.write")))],
    responses={
        **ERROR_RESPONSES,
        413: {
            "model": ErrorOut,
            "description": "body, record count or image count above the limits",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        # Wider than a record: each element is validated on its own, and one
                        # that breaks the record's schema is `rejected` in `results` (with
                        # its index and field) while the others are kept.
                        "anyOf": [
                            {
                                "anyOf": [_PROFILE_SCHEMA, {"type": "object"}],
                                "description": "one profile record",
                            },
                            {"type": "array", "items": any_record(ProfileIn)},
                        ]
                    }
                }
            },
        }
    },
)
def ingest_profiles(
    caller: Annotated[Caller, Depends(require("profiles.write"))],
    batch: ProfileBatchDep,
    engine: EngineDep,
) -> IngestOut:
    """Upsert by (platform, handle), case-insensitively; a bad record is rejected alone."""
    report = engine.ingest(batch.items)
    index_of = {where: i for i, (where, _) in enumerate(batch.items)}
    results = [
        IngestItemOut(
            index=index_of.get(outcome.where, position),
            status=outcome.status,
            platform=outcome.platform,
            handle=outcome.handle,
            error=RecordErrorOut.model_validate(outcome.error) if outcome.error else None,
        )
        for position, outcome in enumerate(report.outcomes)
    ]
    return IngestOut(
        created=report.created, updated=report.updated, rejected=report.rejected, results=results
    )


@router.get(
    "/{platform}/{handle}",
    response_model=ProfileOut,
    summary="One stored profile",
    responses=_NOT_FOUND,
)
def get_profile(
    caller: Annotated[Caller, Depends(require("profiles.read"))],
    platform: str,
    handle: str,
    engine: EngineDep,
) -> ProfileOut:
    """The stored record (case-insensitive identity), without image bytes."""
    return ProfileOut.model_validate(engine.get_profile(platform, handle).model_dump())


@router.delete(
    "/{platform}/{handle}",
    status_code=204,
    response_class=Response,
    summary="Erase a profile from the store and every index",
    responses=_NOT_FOUND,
)
def delete_profile(
    caller: Annotated[Caller, Depends(require("profiles.write"))],
    platform: str,
    handle: str,
    engine: EngineDep,
) -> Response:
    """After this, no check returns the profile and GET answers 404."""
    engine.delete_profile(platform, handle)
    return Response(status_code=204)
