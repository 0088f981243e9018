"""The profile record of interface.md section 1, as it comes in and as it is stored."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import InvalidRecordError

MAX_HANDLE_LENGTH = 256
# The validators' rules below, as JSON-schema patterns for the API's document: a platform is
# folded to lower case, a handle loses one leading "@", both lose the blanks around them.
PLATFORM_SCHEMA_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\s*$"
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f]"  # no blank, no control character
HANDLE_SCHEMA_PATTERN = (
    rf"^\s*(?:@{_VISIBLE}{{1,{MAX_HANDLE_LENGTH}}}"
    rf"|[^@\s\x00-\x1f\x7f-\x9f]{_VISIBLE}{{0,{MAX_HANDLE_LENGTH - 1}}})\s*$"
)
# A platform before it is folded to lower case (ASCII only: "\u212a".lower() is "k").
_PLATFORM_AS_SENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# A handle's characters: no blank and no control character. Invisible format characters
# (a zero-width space) are kept: clones use them, and the name index folds them away.
_HANDLE_CHARACTERS = re.compile(f"{_VISIBLE}*")
MAX_TEXT_LENGTH = 10_000
# Counts: 2**53 - 1, the largest integer every JSON reader holds exactly (RFC 7493), far
# inside the 64-bit signed integers they are stored as (SQLite INTEGER, PostgreSQL BIGINT).
MAX_COUNT = 2**53 - 1
# Levels of nesting in one record, the record object itself being the first: room for the
# nested attributes a platform's API returns (a dozen levels at most), far below the depth at
# which a decoder or an encoder would run out of stack.
MAX_RECORD_DEPTH = 32
# Digits of the longest integer read from JSON: Python's own limit on converting text to int.
MAX_INT_DIGITS = 4300
_MAX_JSON_INT = 10**MAX_INT_DIGITS
# Times kept or compared (`created_at`), once in UTC: a day inside the range of `datetime`, so
# that no time zone a database converts them to on the way back can push them out.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
# A schema's words for those times: JSON Schema bounds no date-time, but every moment of the
# years 0002 to 9998 lies inside the range in any time zone, so a time that matches this is
# one the service takes.
YEARS_INSIDE_THE_RANGE = (
    r"^(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"
)
_SHOWN_KEY_LENGTH = 64


def json_integer(value: Any) -> Any:
    """An integer as JSON Schema counts one: a number without a fraction (`12` or `12.0`),
    never text (`"12"`) nor a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


# JSON's own types only: `"1200"` for a count, `"yes"` or `1` for a flag are type errors of
# the field, not guesses (CSV cells, all text, are typed by their reader).
# Bounds go before it in an `Annotated` (`Annotated[int, Field(ge=0), JSON_INTEGER]`): after
# it, the API's document would lose them.
JSON_INTEGER = BeforeValidator(json_integer)
JsonInt = Annotated[int, JSON_INTEGER]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT), JSON_INTEGER]
Flag = Annotated[bool, Strict()]

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


def iso_time(value: Any) -> datetime:
    """A time from outside, as the store keeps it: ISO 8601 text (or a datetime), aware, in UTC,
    between `EARLIEST_TIME` and `LATEST_TIME`. Raises ValueError otherwise: pydantic alone would
    read a number, or text of digits, as seconds since 1970, and `0001-01-01T00:00:00+01:00`
    overflows once in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO 8601 date-time text, such as 2015-03-01T12:00:00Z")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        value = None
    if value is None or not EARLIEST_TIME <= value <= LATEST_TIME:
        raise ValueError(
            f"must lie between {EARLIEST_TIME.date().isoformat()} and "
            f"{LATEST_TIME.date().isoformat()} once in UTC"
        )
    return value


@dataclass(frozen=True)
class UnreadableNumber:
    """A JSON number that a reader left unconverted (more than `MAX_INT_DIGITS` digits, NaN,
    Infinity): in its place, the record's validation rejects it by field."""

    reason: str


class AttributeProblem(ValueError):
    """A field outside the contract's table that cannot be kept; names the field, which a
    model validator's error would not."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"attribute {field!r} {problem}")
        self.field = field


def shown_key(key: str) -> str:
    """A field name from the input, fit to quote in a message: short, printable, UTF-8."""
    shown = "".join(
        ch if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF else f"\\u{ord(ch):04x}"
        for ch in key[:_SHOWN_KEY_LENGTH]
    )
    return shown + ("..." if len(key) > _SHOWN_KEY_LENGTH else "")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None: PostgreSQL refuses NUL, and a lone
    surrogate (a half of a `\\ud83d\\ude00` pair sent alone) is not Unicode text at all."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    return None


def json_value_problem(
    value: Any, *, depth: int = 1, max_depth: int = MAX_RECORD_DEPTH
) -> str | None:
    """Why `value` (at nesting level `depth` of a record) cannot be kept as JSON, or None.

    Walked with a stack, not recursion, so a value nested any deep is answered, not a crash.
    """
    pending: list[tuple[Any, int]] = [(value, depth)]
    while pending:
        item, level = pending.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, int):
            if abs(item) >= _MAX_JSON_INT:
                return f"must not hold an integer of more than {MAX_INT_DIGITS} digits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "must not hold NaN or an infinite number"
        elif isinstance(item, UnreadableNumber):
            return f"must not hold {item.reason}"
        elif isinstance(item, dict | list):
            if level > max_depth:
                return f"must not be nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key in item:
                    problem = text_problem(key) if isinstance(key, str) else "keys must be text"
                    if problem:
                        return f"key {shown_key(str(key))!r}: {problem}"
                pending.extend((child, level + 1) for child in item.values())
            else:
                pending.extend((child, level + 1) for child in item)
        else:
            return f"must hold only JSON values, not {type(item).__name__}"
    return None


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
    followers_count: Count | None = None
    following_count: Count | None = None
    posts_count: Count | None = None
    verified: Flag | None = None
    location: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    profile_url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)

    @field_validator("platform")
    @classmethod
    def _platform_slug(cls, value: str | None) -> str | None:
        if value is None:
            return None
        slug = value.strip()
        if not _PLATFORM_AS_SENT.fullmatch(slug):
            raise ValueError("must be a lower-case slug such as 'twitter' (letters, digits, _ . -)")
        return slug.lower()

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
        if not _HANDLE_CHARACTERS.fullmatch(handle):
            raise ValueError("must not contain spaces or control characters")
        return handle

    @field_validator("*", mode="before")
    @classmethod
    def _readable_number(cls, value: Any) -> Any:
        if isinstance(value, UnreadableNumber):
            raise ValueError(f"must not be {value.reason}")
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _iso_time(cls, value: Any) -> Any:
        return None if value is None else iso_time(value)

    @field_validator("display_name", "bio", "avatar_path", "avatar_url", "avatar_base64", "id")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        return value if value else None

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text, a lone surrogate cannot be written as UTF-8,
        # and no real profile contains either.
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _storable_attributes(self) -> ProfileRecord:
        for key, value in (self.model_extra or {}).items():
            problem = text_problem(key) or json_value_problem(value, depth=2)
            if problem:
                raise AttributeProblem(shown_key(key), problem)
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
            cause = (err.get("ctx") or {}).get("error")
            field = ".".join(str(part) for part in err["loc"]) or getattr(cause, "field", None)
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
