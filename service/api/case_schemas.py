"""Request and response models of the case, capture, evidence-export and audit endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.profile import HANDLE_SCHEMA_PATTERN, JSON_INTEGER, PLATFORM_SCHEMA_PATTERN
from models.result import Label
from service.cases.service import (
    MAX_NOTES_CHARS,
    MAX_TITLE_CHARS,
    CaseView,
    capture_document,
    case_document,
    item_document,
)
from service.store.cases import Captured, CaptureRow, CaseRow

StatusName = Literal["open", "reported", "taken_down", "closed"]
FormatName = Literal["json", "csv", "pdf", "bundle"]


class AccountIn(BaseModel):
    # Strict, here and in every request model below: JSON's own types only (`false` is no
    # line number, `"1"` no count), as the document states them.
    model_config = ConfigDict(extra="forbid", strict=True)

    platform: str = Field(
        pattern=PLATFORM_SCHEMA_PATTERN, description="lower-case slug: twitter, instagram, ..."
    )
    handle: str = Field(
        pattern=HANDLE_SCHEMA_PATTERN, description="the username, without a leading @"
    )


class CaseIn(BaseModel):
    """A new case: the victim (a stored profile), a title and notes."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "victim": {"platform": "twitter", "handle": "janedoe"},
                    "title": "Jane Doe: impersonation on Twitter",
                    "notes": "Reported by Jane on 2026-11-20.",
                }
            ]
        },
    )

    victim: AccountIn
    title: str | None = Field(default=None, max_length=MAX_TITLE_CHARS)
    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)


def _one_of_given(*names: str) -> dict[str, Any]:
    """Schema: at least one of `names` is given, and not null (else there is nothing to do)."""
    return {
        "anyOf": [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names
        ]
    }


class CaseUpdateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=_one_of_given("title", "notes", "status")
    )

    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_CHARS)
    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    status: StatusName | None = None


class ItemUpdateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=_one_of_given("notes", "status")
    )

    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    status: StatusName | None = None


_NULL: dict[str, Any] = {"type": "null"}


def _one_way_to_add() -> dict[str, Any]:
    """Schema: exactly one of the three ways to name what to add (the others absent)."""
    no_account = {"platform": _NULL, "handle": _NULL}
    return {
        "oneOf": [
            {
                "required": ["platform", "handle"],
                "properties": {
                    "platform": {"type": "string"},
                    "handle": {"type": "string"},
                    "from_check": {"const": False},
                    "scan_id": _NULL,
                },
            },
            {
                "required": ["from_check"],
                "properties": {"from_check": {"const": True}, "scan_id": _NULL, **no_account},
            },
            {
                "required": ["scan_id", "line"],
                "properties": {
                    "scan_id": {"type": "string"},
                    "line": {"type": "integer"},
                    "from_check": {"const": False},
                    **no_account,
                },
            },
        ]
    }


class ItemsIn(BaseModel):
    """What to add (each account is captured as it is now): an account by `platform` and
    `handle`; or `from_check: true`, every match of a check of the victim (`top_k`,
    `min_score` as for checks); or `scan_id` and `line`, the accounts of one result line of
    a bulk scan (0 is the first line)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"platform": "twitter", "handle": "jane_d0e"},
                {"from_check": True, "min_score": 0.8},
                {"scan_id": "3f2a...", "line": 17},
            ],
            **_one_way_to_add(),
        },
    )

    platform: str | None = Field(default=None, pattern=PLATFORM_SCHEMA_PATTERN)
    handle: str | None = Field(default=None, pattern=HANDLE_SCHEMA_PATTERN)
    from_check: bool = False
    top_k: Annotated[int, Field(ge=1, le=100), JSON_INTEGER] = 10
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    scan_id: str | None = Field(default=None, max_length=64)
    line: Annotated[int, Field(ge=0, le=2**62), JSON_INTEGER] | None = None


class CaseOut(BaseModel):
    id: int
    title: str
    victim: AccountIn
    notes: str
    status: StatusName
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, case: CaseRow) -> CaseOut:
        return cls.model_validate(case_document(case))


class CaptureOut(BaseModel):
    """One capture, never changed: `sha256` is the SHA-256 of `content` as canonical JSON
    (sorted keys, no spaces, UTF-8)."""

    id: int
    item_id: int
    captured_at: str
    sha256: str
    content: dict[str, Any]

    @classmethod
    def of(cls, capture: CaptureRow) -> CaptureOut:
        return cls.model_validate(capture_document(capture))


class ItemOut(BaseModel):
    id: int
    case_id: int
    platform: str
    handle: str
    source: str
    notes: str
    status: StatusName
    added_at: datetime
    updated_at: datetime
    score: float | None = Field(description="of the latest capture")
    label: Label | None = Field(description="of the latest capture")
    captures: list[CaptureOut]


class CaseDetailOut(CaseOut):
    items: list[ItemOut]

    @classmethod
    def of_view(cls, view: CaseView) -> CaseDetailOut:
        return cls.model_validate(
            {
                **case_document(view.case),
                "items": [
                    item_document(item, view.captures.get(item.id, [])) for item in view.items
                ],
            }
        )


class CaseListOut(BaseModel):
    cases: list[CaseOut]


class AddedOut(BaseModel):
    """One account added or captured again: its item, and the capture made now."""

    item_id: int
    new_item: bool
    platform: str
    handle: str
    capture: CaptureOut


class AddedListOut(BaseModel):
    added: list[AddedOut]

    @classmethod
    def of(cls, added: list[Captured]) -> AddedListOut:
        return cls(
            added=[
                AddedOut(
                    item_id=a.item.id,
                    new_item=a.new_item,
                    platform=a.item.platform,
                    handle=a.item.handle,
                    capture=CaptureOut.of(a.capture),
                )
                for a in added
            ]
        )


class PublicKeyOut(BaseModel):
    algorithm: Literal["Ed25519"]
    public_key_pem: str
    fingerprint: str = Field(description="SHA256: and the hex SHA-256 of the raw public key")


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the export as a file (Content-Disposition names it); `X-Content-SHA256` "
        "is its digest, as the audit log records it",
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
