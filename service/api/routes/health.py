"""Liveness and readiness: `/v1/health` (the API's), and the probes and metrics an operator's
orchestrator and Prometheus ask for (`/livez`, `/readyz`, `/metrics`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.auth import require
from service.api.deps import EngineDep
from service.api.observability import readiness
from service.api.schemas import ErrorOut, HealthOut
from service.auth.roles import Caller

router = APIRouter(tags=["health"])
# At the root, where probes and scrapers look for them; outside the API's document (but for
# /metrics, which takes a key like the API), as the web page's routes are.
probes = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Liveness and readiness",
    responses={503: {"model": ErrorOut, "description": "not ready: the engine is not loaded"}},
)
def health(engine: EngineDep) -> HealthOut:
    """The store and indexes are loaded: profile count, index sizes and the embedding model."""
    return HealthOut.model_validate(engine.health())


@probes.get("/livez", include_in_schema=False)
async def livez() -> dict[str, Any]:
    """The process is up and answering (on the event loop: nothing else is asked)."""
    return {"status": "alive"}


@probes.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> JSONResponse:
    """200 when the engine is loaded, the store reachable and the indexes caught up with it;
    else 503, with what is not ready."""
    found = readiness(getattr(request.app.state, "engine", None))
    return JSONResponse(found.body(), status_code=200 if found.ready else 503)


@probes.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "the Prometheus text format"}
    },
)
def metrics(
    request: Request, caller: Annotated[Caller, Depends(require("metrics.read"))]
) -> Response:
    """Requests by route, method and status with their latency; check stages' latency;
    ingest counts; scan jobs by state; alert deliveries by outcome; index sizes; load times."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
