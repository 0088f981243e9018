"""One identity check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.api.auth import require
from service.api.deps import CheckRequestDep, EngineDep
from service.api.schemas import CHECK_NOT_FOUND, ERROR_RESPONSES, CheckIn, ResultOut
from service.auth.roles import Caller

router = APIRouter(prefix="/checks", tags=["checks"])


@router.post(
    "",
    response_model=ResultOut,
    summary="Find the likely impersonators of one identity",
    responses={**ERROR_RESPONSES, **CHECK_NOT_FOUND},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CheckIn.model_json_schema()}},
        }
    },
)
def check(
    caller: Annotated[Caller, Depends(require("checks"))],
    request: CheckRequestDep,
    engine: EngineDep,
) -> ResultOut:
    """A profile record in (platform and handle optional), the result record out.

    `top_k` and `min_score` may come as query parameters or body fields. `own_accounts`
    names the person's own accounts on other platforms: never matches, listed apart, and
    each stored one compared too. An `individual` key has only the fields it sends compared
    (its own accounts are only kept out of the matches), sees no match below the
    possible_clone threshold and, of each match, only its public profile fields.
    """
    result = engine.check(
        request.record,
        top_k=request.top_k,
        min_score=request.min_score,
        access=caller.access,
        own_accounts=request.own_accounts,
    )
    return ResultOut.model_validate(result.model_dump())
