"""Operating one application: request ids and access lines, the metrics it serves and its
readiness, over the process-wide logs and metrics of `service.core.observability`."""

from service.api.observability.readiness import Readiness, readiness
from service.api.observability.requests import REQUEST_ID_HEADER, install_observability

__all__ = ["REQUEST_ID_HEADER", "Readiness", "install_observability", "readiness"]
