"""Request and response models of the watchlist, alert and webhook-delivery endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.profile import HANDLE_SCHEMA_PATTERN, PLATFORM_SCHEMA_PATTERN
from models.reasons import explanations_of
from models.result import Impersonator, Label
from models.scoring import ScoringModel
from service.api.schemas import SOMETHING_TO_LOOK_FOR, ProfileIn
from service.evidence.plain_words import impersonation_form, label_words
from service.store.watchlist import AlertRow, DeliveryRow, EntryRow
from service.watchlist.mail import EMAIL_PATTERN, MAX_ADDRESS_LENGTH
from service.watchlist.service import AlertPage, Registered, alert_document, entry_document
from service.watchlist.webhooks import MAX_URL_LENGTH
from service.web.page import AVATAR_PATH

_WEB_LINK = re.compile(r"https?://\S+", flags=re.IGNORECASE)


class IdentityIn(ProfileIn):
    """The protected identity: a profile record (any of name, bio or avatar will do), or the
    platform and handle of a stored profile, whose stored fields fill in the rest."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"platform": "twitter", "handle": "janedoe"}],
            **SOMETHING_TO_LOOK_FOR,
        },
    )

    platform: str | None = Field(default=None, pattern=PLATFORM_SCHEMA_PATTERN)  # type: ignore[assignment]
    handle: str | None = Field(default=None, pattern=HANDLE_SCHEMA_PATTERN)  # type: ignore[assignment]


def _identity_inside_or_at_top(schema: dict[str, Any]) -> None:
    """The body's two shapes, as the document shows them: the identity under `identity`, the
    options beside it and nothing else; or the identity's own fields at the top level."""
    properties = schema["properties"]
    options = {name: properties[name] for name in ("threshold", "webhook_url", "email")}
    # The reference pydantic made for IdentityIn (it tracks its own), without the null.
    identity = next(dict(part) for part in properties["identity"]["anyOf"] if "$ref" in part)
    schema["examples"] = [
        {
            "identity": {"platform": "twitter", "handle": "janedoe"},
            "threshold": 0.8,
            "webhook_url": "https://hooks.example.test/clonefinder",
            "email": "jane@example.org",
        },
        {
            "display_name": "Jane Doe",
            "bio": "Marine biologist in Lisbon.",
            "avatar_url": "https://images.example.test/jane.jpg",
        },
    ]
    schema["anyOf"] = [
        {
            "type": "object",
            "required": ["identity"],
            "properties": {"identity": identity, **options},
            "additionalProperties": False,
        },
        {
            "allOf": [
                identity,
                {"properties": {"identity": {"type": "null"}, **options}},
            ]
        },
    ]


class WatchlistIn(BaseModel):
    """A new watchlist entry. The identity's fields may also be sent at the top level, next
    to `threshold`, `webhook_url` and `email`, instead of under `identity`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=lambda schema, _: _identity_inside_or_at_top(schema),
    )

    identity: IdentityIn | None = None
    threshold: float | None = Field(
        default=None,
        # The shipped scoring model's possible_clone threshold, which the service enforces.
        ge=ScoringModel.load().thresholds.possible_clone,
        le=1.0,
        description="least score that alerts (default: the likely_clone threshold; at least "
        "the possible_clone threshold)",
    )
    webhook_url: str | None = Field(
        default=None,
        # What the service takes (service.watchlist.webhooks.check_webhook_url), less what a pattern
        # cannot say: a literal private address is refused too.
        # (empty: no webhook).
        pattern=r"^$|^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.\-]+(?::[0-9]{1,4})?(?:[/?#][!-~]*)?$",
        max_length=MAX_URL_LENGTH,
        description="an http(s) address that receives each alert, signed",
    )
    email: str | None = Field(
        default=None,
        pattern=EMAIL_PATTERN,
        max_length=MAX_ADDRESS_LENGTH,
        description="an e-mail address that receives each alert once it is confirmed (a "
        "confirmation e-mail is sent first); only where the service has an SMTP server",
    )


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models written in place, for a request body the
    OpenAPI document shows through `openapi_extra` (where `#/$defs/...` would not resolve)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


class EntryOut(BaseModel):
    """A watchlist entry; its webhook secret is never shown again after registration."""

    id: int
    key_id: int = Field(description="the API key that registered it")
    identity: dict[str, Any]
    threshold: float
    webhook_url: str | None = None
    email: str | None = None
    email_confirmed: bool = Field(
        default=False, description="whether the e-mail address was confirmed (alerts go to it)"
    )
    created_at: datetime

    @classmethod
    def of(cls, entry: EntryRow) -> EntryOut:
        return cls.model_validate(entry_document(entry))


class EntryCreatedOut(EntryOut):
    webhook_secret: str | None = Field(
        default=None,
        description="signs every delivery to webhook_url (HMAC-SHA256); shown only now",
    )
    existing: bool = Field(
        default=False,
        description="the same watch was asked before by this key: its entry, unchanged (HTTP "
        "200, no secret, no link)",
    )
    watch_url: str | None = Field(
        default=None,
        description="the private link to the person's own watch page (its alerts, 'this is "
        "me', stop watching), needing no key; shown only now; null where the service has no "
        "web page",
    )

    @classmethod
    def registered(cls, registered: Registered, *, watch_url: str | None) -> EntryCreatedOut:
        return cls.model_validate(
            {
                **entry_document(registered.entry),
                "webhook_secret": registered.webhook_secret,
                "existing": registered.existing,
                "watch_url": watch_url,
            }
        )


class EntryListOut(BaseModel):
    entries: list[EntryOut]


class AlertOut(BaseModel):
    """A profile that matched a watchlist entry: the clone as stored when it alerted, and the
    same score, label, signals, reasons and side as a check's match."""

    id: int
    entry_id: int
    profile: dict[str, Any]
    score: float
    label: Label
    signals: dict[str, float | None]
    reasons: list[str]
    likely_impersonator: Impersonator
    created_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None = None
    answer: Literal["mine", "clone"] | None = Field(
        default=None,
        description="the person's word from their watch page: the account is theirs, or a clone",
    )

    @classmethod
    def of(cls, alert: AlertRow) -> AlertOut:
        return cls.model_validate(alert_document(alert))


class AlertPageOut(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null on the last"
    )

    @classmethod
    def of(cls, page: AlertPage) -> AlertPageOut:
        return cls(alerts=[AlertOut.of(a) for a in page.alerts], next_cursor=page.next_cursor)


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    ok: bool


class DeliveryOut(BaseModel):
    id: int
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None


class DeliveryListOut(BaseModel):
    deliveries: list[DeliveryOut]

    @classmethod
    def of(cls, rows: list[DeliveryRow]) -> DeliveryListOut:
        return cls(
            deliveries=[
                DeliveryOut(
                    id=row.id,
                    url=row.url,
                    status=row.status,
                    attempts=[
                        AttemptOut(
                            attempt=a.attempt,
                            at=a.started_at,
                            duration_ms=a.duration_ms,
                            status_code=a.status_code,
                            error=a.error,
                            ok=a.ok,
                        )
                        for a in row.attempts
                    ],
                    next_attempt_at=row.next_attempt_at,
                    created_at=row.created_at,
                    finished_at=row.finished_at,
                )
                for row in rows
            ]
        )


# -- the person's private watch page (service/web/static/watch.html) -------------------------


def watch_page_document(
    entry: EntryRow, alerts: list[AlertRow], *, your_avatar: str | None
) -> dict[str, Any]:
    """What the private page shows: who is watched, where alerts go, and each alert as a
    check's card."""
    return {
        "identity": {
            name: entry.identity[name]
            for name in ("platform", "handle", "display_name", "bio")
            if entry.identity.get(name)
        },
        "your_avatar": your_avatar,
        "email": entry.email,
        "email_confirmed": entry.email_confirmed_at is not None,
        "created_at": entry.created_at.isoformat(),
        "alerts": [alert_card(alert) for alert in alerts],
    }


def alert_card(alert: AlertRow) -> dict[str, Any]:
    """An alert as the page's cards show a check's match: the plain words beside the figures,
    the clone's photo and account addresses, the platform's impersonation form, and the
    person's answer."""
    profile = alert.profile
    sha = profile.get("avatar_sha256")
    link = profile.get("profile_url")
    return {
        "id": alert.id,
        "profile": profile,
        "score": alert.score,
        "label": alert.label,
        "label_words": label_words(alert.label),
        "signals": alert.signals,
        "reasons": alert.reasons,
        "explanations": [
            {"text": reason.text, "detail": reason.detail}
            for reason in explanations_of(alert.reasons)
        ],
        "likely_impersonator": alert.likely_impersonator,
        "avatar": AVATAR_PATH.format(sha256=sha) if sha else None,
        # http(s) only: a stored address is never a `javascript:` link on the page.
        "link": link if isinstance(link, str) and _WEB_LINK.fullmatch(link) else None,
        "report_form": impersonation_form(profile.get("platform")),
        "created_at": alert.created_at.isoformat(),
        "answer": alert.answer,
    }
