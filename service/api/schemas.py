"""Request and response models of the HTTP API, as the OpenAPI document shows them.

Request bodies reach the engine as raw JSON (so a bad record in a list is rejected alone, with
its index and field); `ProfileIn` and `CheckIn` exist to document those bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from models.profile import (
    EARLIEST_TIME,
    HANDLE_SCHEMA_PATTERN,
    LATEST_TIME,
    MAX_COUNT,
    MAX_TEXT_LENGTH,
    PLATFORM_SCHEMA_PATTERN,
    YEARS_INSIDE_THE_RANGE,
    StoredProfile,
)
from models.result import Result
from service.matching.own_accounts import MAX_OWN_ACCOUNTS


class ProfileIn(BaseModel):
    """A profile record (interface.md section 1); fields outside the table are kept."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "platform": "twitter",
                    "handle": "janedoe",
                    "display_name": "Jane Doe",
                    "bio": "Painter in Lisbon.",
                    "avatar_url": "https://images.example.test/jane.jpg",
                    "created_at": "2015-03-01T12:00:00Z",
                    "followers_count": 1200,
                    "verified": False,
                }
            ]
        },
    )

    platform: str = Field(
        pattern=PLATFORM_SCHEMA_PATTERN,
        description="lower-case slug: twitter, instagram, linkedin, ...",
    )
    handle: str = Field(
        pattern=HANDLE_SCHEMA_PATTERN, description="the username, without a leading @"
    )
    display_name: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    bio: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    avatar_path: None = Field(
        default=None,
        description="refused over HTTP: a server reads no local file (`clonefinder ingest` "
        "reads it, relative to the file that names it)",
    )
    avatar_url: str | None = Field(default=None, description="an http(s) image address")
    avatar_base64: str | None = Field(
        default=None, description="image bytes, base64; a data:image/...;base64, prefix is allowed"
    )
    id: str | None = Field(default=None, description="the platform's own account id")
    created_at: datetime | None = Field(
        default=None,
        description=f"ISO 8601; between {EARLIEST_TIME.date()} and {LATEST_TIME.date()} in UTC",
        # JSON Schema bounds no date-time: the years 0002 to 9998 lie inside the range in any
        # time zone, so a time the schema allows is one the service takes.
        json_schema_extra={"pattern": YEARS_INSIDE_THE_RANGE},
    )
    followers_count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    following_count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    posts_count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    verified: bool | None = None
    location: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    profile_url: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)


def _given(name: str) -> dict[str, Any]:
    # Blank text counts as missing, as the record's validation reads it.
    return {"required": [name], "properties": {name: {"type": "string", "pattern": r"\S"}}}


# What a check (or a watched identity) needs: a name, a bio or an avatar to compare, or the
# platform and handle of a stored profile to complete it from (404 when none is stored).
SOMETHING_TO_LOOK_FOR: dict[str, Any] = {
    "anyOf": [
        _given("display_name"),
        _given("bio"),
        _given("avatar_url"),
        _given("avatar_base64"),
        {
            "required": ["platform", "handle"],
            "properties": {"platform": {"type": "string"}, "handle": {"type": "string"}},
        },
    ]
}


class OwnAccountIn(BaseModel):
    """One of the checked person's own accounts, on another platform."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(pattern=PLATFORM_SCHEMA_PATTERN)
    handle: str = Field(pattern=HANDLE_SCHEMA_PATTERN)


class CheckIn(ProfileIn):
    """One identity to check: any of name, handle, bio or avatar will do."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"platform": "twitter", "handle": "janedoe", "display_name": "Jane Doe"}],
            **SOMETHING_TO_LOOK_FOR,
        },
    )

    platform: str | None = Field(default=None, pattern=PLATFORM_SCHEMA_PATTERN)  # type: ignore[assignment]
    handle: str | None = Field(default=None, pattern=HANDLE_SCHEMA_PATTERN)  # type: ignore[assignment]
    top_k: int | None = Field(default=None, ge=1, le=100, description="most matches returned")
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="least score reported (default: possible_clone)"
    )
    # Inline, not a reference: this schema is copied into the route's document as it is.
    own_accounts: Annotated[
        list[OwnAccountIn] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {
                        "type": "array",
                        "maxItems": MAX_OWN_ACCOUNTS,
                        "items": OwnAccountIn.model_json_schema(),
                    },
                    {"type": "null"},
                ],
                "description": "the person's own accounts on other platforms: never among "
                "the matches, returned apart in the result's `own_accounts`, and each stored "
                "one compared too (a candidate scores its best against any of them)",
            }
        ),
    ] = None


class RecordErrorOut(BaseModel):
    code: str
    message: str
    field: str | None = None


class IngestItemOut(BaseModel):
    """What became of one record of the body (index 0 for a single object)."""

    index: int
    status: Literal["created", "updated", "rejected"]
    platform: str | None = None
    handle: str | None = None
    error: RecordErrorOut | None = None


class IngestOut(BaseModel):
    created: int
    updated: int
    rejected: int
    results: list[IngestItemOut]


class ProfileOut(StoredProfile):
    """A stored profile: the record as ingested, without image bytes."""


class ResultOut(Result):
    """The result record of interface.md section 3."""


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    profiles: int
    # True when `profiles` is the database's estimate (PostgreSQL, at least 100,000 profiles)
    # rather than a count.
    profiles_estimated: bool = False
    indexes: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None


class ErrorBodyOut(BaseModel):
    code: str
    message: str
    details: list[Any] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every error answer: RFC 9457 problem details (`application/problem+json`) with the
    contract's `{"error": {"code", "message", "details"}}` beside them."""

    type: str = Field(
        description="the kind of problem, a URI per error code: "
        "`https://clonefinder.dev/problems/{code}`"
    )
    title: str = Field(description="a short summary of the kind of problem, the same for each")
    status: int = Field(description="the HTTP status of the answer")
    detail: str = Field(description="what went wrong with this request (the error's message)")
    instance: str = Field(description="the path of the request")
    error: ErrorBodyOut


# A check that names a stored profile by platform and handle, with nothing else to compare.
CHECK_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "the named profile is not stored"}
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "the request breaks the contract"},
    500: {"model": ErrorOut, "description": "internal error (no details are sent)"},
}
