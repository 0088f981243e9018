"""Request and response models of the bulk-scan endpoints, as the OpenAPI document shows them.

Scan bodies are read as streams (never parsed whole), so `ScanRequestIn` and the form and
JSON Lines schemas exist to document them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import ProfileIn
from service.scans.service import ScanStatus


class ScanOptionsOut(BaseModel):
    mode: Literal["against_index", "clusters"]
    top_k: int
    min_score: float | None = None
    ingest: bool


class ScanRequestIn(BaseModel):
    """A scan as one JSON document: the profiles, and the options beside them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "profiles": [
                        {"platform": "twitter", "handle": "jane_d0e", "display_name": "Jane Doe"}
                    ],
                    "mode": "against_index",
                    "min_score": 0.5,
                }
            ]
        },
    )

    profiles: list[ProfileIn]
    # An option sent as null is an option not sent: its default (or the query parameter).
    mode: Literal["against_index", "clusters"] | None = Field(
        default=None,
        description="against_index (the default): each profile checked against the index; "
        "clusters: groups of accounts (in the upload and the index) that are copies of one "
        "identity",
    )
    top_k: int | None = Field(
        default=None, ge=1, le=100, description="most matches per profile (default 10)"
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="least score reported (default: possible_clone)"
    )
    ingest: bool | None = Field(
        default=None,
        description="also ingest the scanned profiles (needs the profiles.write permission)",
    )


class ScanFormIn(BaseModel):
    """A scan as a form upload: the JSON Lines file, and the options as fields."""

    model_config = ConfigDict(extra="forbid")

    file: bytes = Field(
        json_schema_extra={"format": "binary"}, description="JSON Lines, one profile a line"
    )
    mode: Literal["against_index", "clusters"] | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    ingest: bool | None = None


class ScanJobOut(BaseModel):
    """A scan job's state and progress."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    options: ScanOptionsOut
    total: int = Field(description="input records")
    processed: int = Field(description="input records done so far")
    errors: int = Field(description="records that could not be checked (see their result lines)")
    result_lines: int = Field(description="result lines written so far")
    rate: float | None = Field(description="records per second since the job started")
    eta_s: float | None = Field(description="estimated seconds left, at that rate")
    error: str | None = Field(default=None, description="why the job failed")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results_url: str

    @classmethod
    def of(cls, status: ScanStatus) -> ScanJobOut:
        return cls(
            id=status.id,
            state=status.state,
            options=ScanOptionsOut.model_validate(status.options),
            total=status.total,
            processed=status.processed,
            errors=status.errors,
            result_lines=status.result_lines,
            rate=status.rate,
            eta_s=status.eta_s,
            error=status.error,
            created_at=status.created_at,
            started_at=status.started_at,
            finished_at=status.finished_at,
            results_url=f"/v1/scans/{status.id}/results",
        )


def scan_request_body() -> dict[str, Any]:
    """The POST /v1/scans request body for the OpenAPI document: three ways to send it."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        _any_records(_inlined(ScanRequestIn.model_json_schema())),
                        {"type": "array", "items": any_record(ProfileIn)},
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": "JSON Lines: one profile record a line; options as query "
                    "parameters",
                }
            },
            "multipart/form-data": {"schema": _inlined(ScanFormIn.model_json_schema())},
        },
    }


def any_record(model: type[BaseModel]) -> dict[str, Any]:
    """An element of a list of records: shown as `model`, but any value is taken, since a
    record that breaks the schema is no error of the request (its result says where and
    why, the rest of the list goes on)."""
    return {
        "anyOf": [_inlined(model.model_json_schema()), {}],
        "description": "a profile record; any other value is rejected alone, in its result",
    }


def _any_records(request: dict[str, Any]) -> dict[str, Any]:
    request["properties"]["profiles"] = {"type": "array", "items": any_record(ProfileIn)}
    return request


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$defs` references replaced by the definitions themselves, so
    it can sit anywhere in the OpenAPI document."""
    definitions = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(definitions[ref.removeprefix("#/$defs/")]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result
