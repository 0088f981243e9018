"""Bulk scans: durable jobs, done by workers, with progress and streamed results.

A job belongs to the key that created it; another key's job answers 404 (an administrator,
with the "keys" permission, sees every job).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from service.api.auth import require
from service.api.deps import ResultsOffset, ScansDep, ScanUploadDep
from service.api.idempotency import IdempotentRoute, idempotent
from service.api.scan_schemas import ScanJobOut, scan_request_body
from service.api.schemas import ERROR_RESPONSES, ErrorOut
from service.auth.roles import Caller

ScansCaller = Annotated[Caller, Depends(require("scans"))]

router = APIRouter(prefix="/scans", tags=["scans"], route_class=IdempotentRoute)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such scan job (or another key's)"}
}


@router.post(
    "",
    status_code=202,
    response_model=ScanJobOut,
    summary="Start a bulk scan: profiles in (JSON list or JSON Lines upload), job out",
    # The upload streams: its digest is taken as the route reads it.
    dependencies=[Depends(idempotent(require("scans"), streamed=True))],
    responses={
        202: {
            "description": "the job is queued; follow it at the Location",
            "headers": {
                "Location": {
                    "description": "the job's address, /v1/scans/{id}",
                    "schema": {"type": "string"},
                }
            },
        },
        **ERROR_RESPONSES,
        413: {"model": ErrorOut, "description": "the upload is above the scan size limit"},
        415: {
            "model": ErrorOut,
            "description": "not JSON, JSON Lines (application/x-ndjson) or multipart/form-data",
        },
    },
    openapi_extra={"requestBody": scan_request_body()},
)
def create_scan(
    caller: ScansCaller, upload: ScanUploadDep, scans: ScansDep, response: Response
) -> ScanJobOut:
    """The body is one of: a JSON list of profiles; a JSON object `{"profiles": [...],
    "mode", "top_k", "min_score", "ingest"}`; a JSON Lines body
    (`Content-Type: application/x-ndjson`); or a multipart form whose `file` field is a JSON
    Lines file. It streams into the store (any size up to the scan limit). Options may also be
    query parameters, which win. A record that cannot be read is not an error of the request:
    its result line says where and why.

    `mode=against_index` (default) checks each profile against the index: one result record
    per profile, in input order. `mode=clusters` finds the groups of accounts, in the upload
    and the index, that are copies of one identity. `ingest=true` also stores the profiles.
    """
    status = scans.create(upload, caller=caller)
    response.headers["Location"] = f"/v1/scans/{status.id}"
    return ScanJobOut.of(status)


@router.get(
    "/{job_id}",
    response_model=ScanJobOut,
    summary="A scan job's state and progress",
    responses={**_NOT_FOUND, **ERROR_RESPONSES},
)
def get_scan(job_id: str, caller: ScansCaller, scans: ScansDep) -> ScanJobOut:
    """State (queued, running, done, failed, cancelled), records processed of the total,
    rate, estimated seconds left, errors so far, and the times."""
    return ScanJobOut.of(scans.status(job_id, caller=caller))


@router.get(
    "/{job_id}/results",
    response_class=StreamingResponse,
    summary="A scan job's result records, as JSON Lines, streamed",
    responses={
        200: {
            "description": "result lines in input order, from `offset` on: all of them once "
            "the job is done; while it runs, those done so far without a gap",
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one JSON object a line"}
                }
            },
        },
        **_NOT_FOUND,
        **ERROR_RESPONSES,
    },
)
def scan_results(
    job_id: str, caller: ScansCaller, scans: ScansDep, offset: ResultsOffset = 0
) -> StreamingResponse:
    """Resumable: a client that got N lines asks again with `offset=N`."""
    lines = scans.results(job_id, caller=caller, offset=offset)
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.delete(
    "/{job_id}",
    response_model=ScanJobOut,
    summary="Cancel a scan job",
    responses={**_NOT_FOUND, **ERROR_RESPONSES},
)
def cancel_scan(job_id: str, caller: ScansCaller, scans: ScansDep) -> ScanJobOut:
    """Workers take no more of its records; results written so far stay readable. A job
    already finished is left as it is."""
    return ScanJobOut.of(scans.cancel(job_id, caller=caller))
