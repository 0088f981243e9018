"""The service's Prometheus metrics: what requests, checks, ingest and alert deliveries did in
this process (counters and histograms kept as they happen), and what the store and indexes
hold (read when scraped).

The metrics of the work are process-wide, as the process's CPU and memory are: the engine's
code records into them wherever it runs (a request, a scan worker, a delivery thread) without
being handed an object. What is read at scrape time belongs to one application's engine, so
each application has a registry of its own (`service.api.observability.collectors`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

logger = logging.getLogger(__name__)

CheckStage = Literal["parse", "avatar", "embedding", "candidates", "scoring"]
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

PROCESS = CollectorRegistry()
ProcessCollector(registry=PROCESS)
PlatformCollector(registry=PROCESS)

HTTP_REQUESTS = Counter(
    "clonefinder_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    registry=PROCESS,
)
HTTP_REQUEST_SECONDS = Histogram(
    "clonefinder_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=PROCESS,
)
CHECK_STAGE_SECONDS = Histogram(
    "clonefinder_check_stage_duration_seconds",
    "Time a batch of checks (one check, a scan's batch) spends in each stage",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=PROCESS,
)
PROFILES_INGESTED = Counter(
    "clonefinder_profiles_ingested",
    "Profile records ingested, by outcome (created, updated, rejected)",
    ["outcome"],
    registry=PROCESS,
)
ALERT_DELIVERIES = Counter(
    "clonefinder_alert_deliveries",
    "Alert delivery attempts, by channel (webhook, email) and outcome (delivered, retry, "
    "failed: no attempts left, claim_lost: another process had taken it)",
    ["channel", "outcome"],
    registry=PROCESS,
)
MODEL_LOAD_SECONDS = Gauge(
    "clonefinder_model_load_seconds",
    "Time the embedding model took to load at start",
    registry=PROCESS,
)
INDEX_LOAD_SECONDS = Gauge(
    "clonefinder_index_load_seconds",
    "Time the indexes took to open and catch up with the store (or be rebuilt) at start",
    registry=PROCESS,
)

# Each stage's series, made once: a check records several stages, and they are all exported
# from the start, before the first check.
_STAGES = {stage: CHECK_STAGE_SECONDS.labels(stage) for stage in get_args(CheckStage)}
for _outcome in ("created", "updated", "rejected"):
    PROFILES_INGESTED.labels(_outcome)


@contextmanager
def check_stage(stage: CheckStage) -> Iterator[None]:
    """Time the block as one pass through `stage` of the checks."""
    started = perf_counter()
    try:
        yield
    finally:
        _STAGES[stage].observe(perf_counter() - started)


@contextmanager
def timed_into(gauge: Gauge) -> Iterator[None]:
    """Set `gauge` to the seconds the block took (a one-off: a load at start)."""
    started = perf_counter()
    yield
    gauge.set(perf_counter() - started)


def count_ingested(outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        PROFILES_INGESTED.labels(outcome).inc()


_DELIVERY_OUTCOMES = {"delivered": "delivered", "pending": "retry", "failed": "failed"}


def count_delivery(channel: Literal["webhook", "email"], status: str | None) -> None:
    """One delivery attempt, by the status the store recorded for it (None: claim lost)."""
    ALERT_DELIVERIES.labels(channel, _DELIVERY_OUTCOMES.get(status or "", "claim_lost")).inc()


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "other"  # a client's made-up method
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(route, method).observe(seconds)
