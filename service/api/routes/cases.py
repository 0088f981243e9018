"""Cases: a victim, the accounts that impersonate it, immutable captures and evidence exports.

Only keys with the `cases` permission (investigator, admin) reach these. A key sees the cases
it opened; an administrator's sees every case. Another key's case answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from service.api.auth import require
from service.api.case_schemas import (
    EXPORT_RESPONSES,
    AddedListOut,
    CaptureOut,
    CaseDetailOut,
    CaseIn,
    CaseListOut,
    CaseOut,
    CaseUpdateIn,
    FormatName,
    ItemOut,
    ItemsIn,
    ItemUpdateIn,
)
from service.api.deps import CasesDep, RowId, body_of, export_response
from service.api.idempotency import IdempotentRoute, idempotent
from service.api.schemas import ERROR_RESPONSES, ErrorOut
from service.api.watchlist_schemas import inline_schema
from service.auth.roles import Caller
from service.cases.service import AddItems, Operator, item_document

CasesCaller = Annotated[Caller, Depends(require("cases"))]

router = APIRouter(prefix="/cases", tags=["cases"], route_class=IdempotentRoute)
IDEMPOTENT = [Depends(idempotent(require("cases")))]

CaseBody = Annotated[CaseIn, Depends(body_of(CaseIn))]
CaseUpdateBody = Annotated[CaseUpdateIn, Depends(body_of(CaseUpdateIn))]
ItemsBody = Annotated[ItemsIn, Depends(body_of(ItemsIn))]
ItemUpdateBody = Annotated[ItemUpdateIn, Depends(body_of(ItemUpdateIn))]


def _json_body(model: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    }


_CASE_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such case (or another key's)"},
}
_ITEM_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such case or item (or another key's case)"},
}


@router.post(
    "",
    status_code=201,
    response_model=CaseOut,
    summary="Open a case for a victim (a stored profile)",
    dependencies=IDEMPOTENT,
    responses={
        **ERROR_RESPONSES,
        404: {"model": ErrorOut, "description": "the victim is not a stored profile"},
    },
    openapi_extra=_json_body(CaseIn),
)
def create_case(caller: CasesCaller, body: CaseBody, cases: CasesDep) -> CaseOut:
    """The victim is named by platform and handle and must be stored (ingest it first)."""
    created = cases.create(
        Operator.of(caller),
        platform=body.victim.platform,
        handle=body.victim.handle,
        title=body.title,
        notes=body.notes,
    )
    return CaseOut.of(created)


@router.get("", response_model=CaseListOut, summary="The caller's cases")
def list_cases(caller: CasesCaller, cases: CasesDep) -> CaseListOut:
    return CaseListOut(cases=[CaseOut.of(c) for c in cases.all(Operator.of(caller))])


@router.get(
    "/{case_id}",
    response_model=CaseDetailOut,
    summary="A case with its items and every capture",
    responses=_CASE_NOT_FOUND,
)
def get_case(case_id: RowId, caller: CasesCaller, cases: CasesDep) -> CaseDetailOut:
    return CaseDetailOut.of_view(cases.view(Operator.of(caller), case_id))


@router.patch(
    "/{case_id}",
    response_model=CaseOut,
    summary="Change a case's title, notes or status",
    responses={**ERROR_RESPONSES, **_CASE_NOT_FOUND},
    openapi_extra=_json_body(CaseUpdateIn),
)
def update_case(
    case_id: RowId, caller: CasesCaller, body: CaseUpdateBody, cases: CasesDep
) -> CaseOut:
    """Status: open, reported, taken_down or closed. Recorded in the audit log."""
    updated = cases.update(
        Operator.of(caller), case_id, title=body.title, notes=body.notes, status=body.status
    )
    return CaseOut.of(updated)


@router.post(
    "/{case_id}/items",
    status_code=201,
    response_model=AddedListOut,
    summary="Add accounts to a case, each captured as it is now",
    dependencies=IDEMPOTENT,
    responses={
        **ERROR_RESPONSES,
        404: {
            "model": ErrorOut,
            "description": "no such case, stored account or scan result line",
        },
    },
    openapi_extra=_json_body(ItemsIn),
)
def add_items(
    case_id: RowId, caller: CasesCaller, body: ItemsBody, cases: CasesDep
) -> AddedListOut:
    """One way per request: `platform` and `handle`; `from_check: true` (the matches of a
    check of the victim); or `scan_id` and `line`. An account already in the case is captured
    again beside its earlier captures."""
    added = cases.add(
        Operator.of(caller),
        case_id,
        AddItems(
            platform=body.platform,
            handle=body.handle,
            from_check=body.from_check,
            top_k=body.top_k,
            min_score=body.min_score,
            scan_id=body.scan_id,
            scan_line=body.line,
        ),
    )
    return AddedListOut.of(added)


@router.get(
    "/{case_id}/items/{item_id}",
    response_model=ItemOut,
    summary="One item with every capture",
    responses=_ITEM_NOT_FOUND,
)
def get_item(case_id: RowId, item_id: RowId, caller: CasesCaller, cases: CasesDep) -> ItemOut:
    operator = Operator.of(caller)
    item = cases.item(operator, case_id, item_id)
    captures = cases.item_captures(operator, case_id, item_id)
    return ItemOut.model_validate(item_document(item, captures))


@router.patch(
    "/{case_id}/items/{item_id}",
    response_model=ItemOut,
    summary="Change an item's notes or status",
    responses={**ERROR_RESPONSES, **_ITEM_NOT_FOUND},
    openapi_extra=_json_body(ItemUpdateIn),
)
def update_item(
    case_id: RowId, item_id: RowId, caller: CasesCaller, body: ItemUpdateBody, cases: CasesDep
) -> ItemOut:
    operator = Operator.of(caller)
    item = cases.update_item(operator, case_id, item_id, notes=body.notes, status=body.status)
    return ItemOut.model_validate(
        item_document(item, cases.item_captures(operator, case_id, item_id))
    )


@router.post(
    "/{case_id}/items/{item_id}/captures",
    status_code=201,
    response_model=CaptureOut,
    summary="Capture an item again, as it is now (earlier captures stay)",
    dependencies=IDEMPOTENT,
    responses={
        **_ITEM_NOT_FOUND,
        **ERROR_RESPONSES,
    },
)
def capture_again(
    case_id: RowId, item_id: RowId, caller: CasesCaller, cases: CasesDep
) -> CaptureOut:
    return CaptureOut.of(cases.capture(Operator.of(caller), case_id, item_id).capture)


@router.get(
    "/{case_id}/export",
    response_class=Response,
    summary="The case's evidence: JSON, CSV, the PDF report, or a signed bundle (ZIP)",
    responses={**EXPORT_RESPONSES, **_CASE_NOT_FOUND, **ERROR_RESPONSES},
)
def export_case(
    case_id: RowId,
    caller: CasesCaller,
    cases: CasesDep,
    format: Annotated[FormatName, Query(description="json, csv, pdf or bundle")] = "bundle",
) -> Response:
    """Made from the captures, never from the live profiles. Recorded in the audit log with
    the export's SHA-256."""
    return export_response(cases.export(Operator.of(caller), case_id, format))
