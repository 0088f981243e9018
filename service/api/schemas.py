"""Request and response models of the HTTP API, as the OpenAPI document shows them.

Request bodies reach the engine as raw JSON (so a bad record in a list is rejected alone, with
its index and field); `ProfileIn` and `CheckIn` exist to document those bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.profile import StoredProfile
from models.result import Result


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
                    "avatar_url": "https://example.com/jane.jpg",
                    "created_at": "2015-03-01T12:00:00Z",
                    "followers_count": 1200,
                    "verified": False,
                }
            ]
        },
    )

    platform: str = Field(description="lower-case slug: twitter, instagram, linkedin, ...")
    handle: str = Field(description="the username, without a leading @")
    display_name: str | None = None
    bio: str | None = None
    avatar_path: str | None = Field(default=None, description="a local image file (server side)")
    avatar_url: str | None = Field(default=None, description="an http(s) image address")
    avatar_base64: str | None = Field(
        default=None, description="image bytes, base64; a data:image/...;base64, prefix is allowed"
    )
    id: str | None = Field(default=None, description="the platform's own account id")
    created_at: datetime | None = None
    followers_count: int | None = Field(default=None, ge=0)
    following_count: int | None = Field(default=None, ge=0)
    posts_count: int | None = Field(default=None, ge=0)
    verified: bool | None = None
    location: str | None = None
    url: str | None = None
    profile_url: str | None = None


class CheckIn(ProfileIn):
    """One identity to check: any of name, handle, bio or avatar will do."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"platform": "twitter", "handle": "janedoe", "display_name": "Jane Doe"}]
        },
    )

    platform: str | None = None  # type: ignore[assignment]
    handle: str | None = None  # type: ignore[assignment]
    top_k: int | None = Field(default=None, ge=1, le=100, description="most matches returned")
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="least score reported (default: possible_clone)"
    )


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
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorBodyOut


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "the request breaks the contract"},
    500: {"model": ErrorOut, "description": "internal error (no details are sent)"},
}
