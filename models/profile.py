"""The profile record of interface.md section 1, as it comes in and as it is stored."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import InvalidRecordError

PLATFORM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
MAX_HANDLE_LENGTH = 256
MAX_TEXT_LENGTH = 10_000

# The fields of the contract's table; anything else is kept as `attributes`.
KNOWN_FIELDS = (
    "platform",
    "handle",
    "display_name",
    "bio",
    "avatar_path",
    "avatar_url",
    "avatar_base64",
    "id",
    "created_at",
    "followers_count",
    "following_count",
    "posts_count",
    "verified",
    "location",
    "url",
    "profile_url",
)


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def identity_key(platform: str, handle: str) -> tuple[str, str]:
    """The case-insensitive identity of a record: (`platform`, `handle`) folded."""
    return platform.strip().casefold(), handle.strip().lstrip("@").casefold()


class ProfileRecord(BaseModel):
    """One incoming profile, validated field by field.

    Unknown fields are collected into `attributes` rather than rejected, as the contract says.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    platform: str
    handle: str
    display_name: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    bio: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    avatar_path: str | None = None
    avatar_url: str | None = None
    avatar_base64: str | None = None
    id: str | None = None
    created_at: datetime | None = None
    followers_count: NonNegativeInt | None = None
    following_count: NonNegativeInt | None = None
    posts_count: NonNegativeInt | None = None
    verified: bool | None = None
    location: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    profile_url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)

    @field_validator("platform")
    @classmethod
    def _platform_slug(cls, value: str | None) -> str | None:
        if value is None:
            return None
        slug = value.strip().lower()
        if not PLATFORM_PATTERN.match(slug):
            raise ValueError("must be a lower-case slug such as 'twitter' (letters, digits, _ . -)")
        return slug

    @field_validator("handle")
    @classmethod
    def _handle_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        handle = value.strip().removeprefix("@")
        if not handle:
            raise ValueError("must not be empty")
        if len(handle) > MAX_HANDLE_LENGTH:
            raise ValueError(f"must be at most {MAX_HANDLE_LENGTH} characters")
        if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in handle):
            raise ValueError("must not contain spaces or control characters")
        return handle

    @field_validator("created_at")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_validator("display_name", "bio", "avatar_path", "avatar_url", "avatar_base64", "id")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        return value if value else None

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text, and no real profile contains one.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _attributes_without_nul(self) -> ProfileRecord:
        for key, value in (self.model_extra or {}).items():
            if "\x00" in key or _contains_nul(value):
                raise ValueError(f"attribute '{key}' must not contain NUL characters")
        return self

    @property
    def attributes(self) -> dict[str, Any]:
        """Fields outside the contract's table, kept verbatim."""
        extra = dict(self.model_extra or {})
        nested = extra.pop("attributes", None)
        if isinstance(nested, dict):
            return {**nested, **extra}
        if nested is not None:
            extra["attributes"] = nested
        return extra

    @property
    def key(self) -> tuple[str, str]:
        return identity_key(self.platform, self.handle)

    @property
    def has_avatar(self) -> bool:
        return bool(self.avatar_path or self.avatar_url or self.avatar_base64)


class ProfileQuery(ProfileRecord):
    """The profile a check looks for: like a record, but any field alone (a name, a photo) will do.

    When `platform` and `handle` name a stored profile, the check fills the rest from the store.
    """

    platform: str | None = None  # type: ignore[assignment]
    handle: str | None = None  # type: ignore[assignment]

    @property
    def key(self) -> tuple[str, str]:
        return identity_key(self.platform or "", self.handle or "")


def parse_query(raw: Any, *, where: str = "query") -> ProfileQuery:
    """Validate a check's query; a failure names the field, as for records."""
    return _validate(ProfileQuery, raw, where=where)  # type: ignore[return-value]


def parse_record(raw: Any, *, where: str) -> ProfileRecord:
    """Validate one raw record; a failure names `where` (a line or index) and the field."""
    return _validate(ProfileRecord, raw, where=where)


def _validate(model: type[ProfileRecord], raw: Any, *, where: str) -> ProfileRecord:
    if not isinstance(raw, dict):
        raise InvalidRecordError(
            f"{where}: a profile record must be a JSON object, got {type(raw).__name__}",
            details=[{"where": where, "field": None, "message": "not an object"}],
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or None
            details.append({"where": where, "field": field, "message": err["msg"]})
        first = details[0]
        prefix = f"{where}: field '{first['field']}'" if first["field"] else where
        raise InvalidRecordError(
            f"{prefix}: {first['message']}",
            field=first["field"],
            details=details,
        ) from None


class StoredProfile(BaseModel):
    """A profile as the store holds and returns it: no image bytes, only their digest."""

    platform: str
    handle: str
    display_name: str | None = None
    bio: str | None = None
    id: str | None = None
    created_at: datetime | None = None
    followers_count: int | None = None
    following_count: int | None = None
    posts_count: int | None = None
    verified: bool | None = None
    location: str | None = None
    url: str | None = None
    profile_url: str | None = None
    avatar_url: str | None = None
    avatar_sha256: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    ingested_at: datetime | None = None
    updated_at: datetime | None = None
