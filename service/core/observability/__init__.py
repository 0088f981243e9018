"""Operating the service: structured logs and the process's Prometheus metrics, recorded
wherever the work runs."""

from service.core.observability.logs import add_to_log_context, configure_logging, log_context
from service.core.observability.metrics import (
    INDEX_LOAD_SECONDS,
    MODEL_LOAD_SECONDS,
    check_stage,
    count_delivery,
    count_ingested,
    timed_into,
)

__all__ = [
    "INDEX_LOAD_SECONDS",
    "MODEL_LOAD_SECONDS",
    "add_to_log_context",
    "check_stage",
    "configure_logging",
    "count_delivery",
    "count_ingested",
    "log_context",
    "timed_into",
]
