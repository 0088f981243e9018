"""One error hierarchy for the whole domain.

The service maps each class to an HTTP status and a CLI exit code in one place
(`service/errors.py`); code that raises never thinks about transports.
"""

from __future__ import annotations

from typing import Any


class CloneFinderError(Exception):
    """Base of every error clonefinder raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInputError(CloneFinderError):
    """The caller sent something that breaks the contract (a field, a type, a format)."""

    code = "invalid_input"


class InvalidRecordError(InvalidInputError):
    """One profile record is malformed; `field` names the offending field when known."""

    code = "invalid_record"

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class ImageError(InvalidRecordError):
    """An avatar that cannot be used: not an image, corrupt, too large or a decompression bomb."""

    code = "invalid_image"


class AvatarFetchError(InvalidRecordError):
    """An `avatar_url` that could not or must not be fetched (time, size, private address)."""

    code = "avatar_fetch_failed"


class PayloadTooLargeError(InvalidInputError):
    """A body, file or image above the configured size limits."""

    code = "payload_too_large"


class UnsupportedMediaTypeError(InvalidInputError):
    """A body in a format the endpoint does not read (a bulk scan takes JSON, JSON Lines or a
    multipart form)."""

    code = "unsupported_media_type"


class NotFoundError(CloneFinderError):
    """The named profile (or other resource) does not exist."""

    code = "not_found"


class IndexStateError(CloneFinderError):
    """Saved index files that do not belong to this store or this model."""

    code = "index_state"


class ConfigurationError(CloneFinderError):
    """A setting that cannot work, or an optional backend whose extra is not installed."""

    code = "configuration"


# --- API keys: who may call, and how often ---------------------------------------------------


class AuthenticationError(CloneFinderError):
    """No API key, an unknown one or a revoked one."""

    code = "unauthorized"


class PermissionDeniedError(CloneFinderError):
    """A valid key whose role does not allow the operation."""

    code = "forbidden"


class RateLimitedError(CloneFinderError):
    """A key that sent more requests than its rate limit; `retry_after` is whole seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
