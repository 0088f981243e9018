"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import EngineDep
from service.api.schemas import ErrorOut, HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Liveness and readiness",
    responses={503: {"model": ErrorOut, "description": "not ready: the engine is not loaded"}},
)
def health(engine: EngineDep) -> HealthOut:
    """The store and indexes are loaded: profile count, index sizes and the embedding model."""
    return HealthOut.model_validate(engine.health())
