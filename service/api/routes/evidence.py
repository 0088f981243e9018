"""Evidence outside cases: the signing key's public half, and the evidence of one's own check
(an individual has no cases, but may file what its check found)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from service.api.auth import require
from service.api.case_schemas import EXPORT_RESPONSES, FormatName, PublicKeyOut
from service.api.deps import CasesDep, CheckRequestDep, export_response
from service.api.schemas import CHECK_NOT_FOUND, ERROR_RESPONSES, CheckIn
from service.auth.roles import Caller
from service.cases.service import Operator

EvidenceCaller = Annotated[Caller, Depends(require("evidence"))]

router = APIRouter(prefix="/evidence", tags=["evidence"])


@router.get(
    "/public-key",
    response_model=PublicKeyOut,
    summary="The Ed25519 public key that evidence bundles are signed with",
)
def public_key(caller: EvidenceCaller, cases: CasesDep) -> PublicKeyOut:
    """Compare its fingerprint with the one `clonefinder evidence verify` prints for a
    bundle: a bundle proves only that it was signed by the key inside it."""
    return PublicKeyOut.model_validate(cases.public_key())


@router.post(
    "/checks",
    response_class=Response,
    summary="Run a check and export its result as evidence (JSON, CSV, PDF or bundle)",
    responses={**EXPORT_RESPONSES, **ERROR_RESPONSES, **CHECK_NOT_FOUND},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CheckIn.model_json_schema()}},
        }
    },
)
def export_check(
    caller: EvidenceCaller,
    request: CheckRequestDep,
    cases: CasesDep,
    format: Annotated[FormatName, Query(description="json, csv, pdf or bundle")] = "bundle",
) -> Response:
    """The body is a check's (`POST /v1/checks`); each match is captured now, as a case item
    would be. Nothing is stored but the audit entry."""
    export = cases.export_check(
        Operator.of(caller),
        request.record,
        format,
        top_k=request.top_k,
        min_score=request.min_score,
        access=caller.access,
        own_accounts=request.own_accounts,
    )
    return export_response(export)
