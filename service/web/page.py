"""What the web page's endpoints do, and who may call them without an API key.

Two modes (`Settings.web_mode`):

- `local` (the default, for one's own machine): no key, but only for a browser on this
  machine: the client address and the `Host` header must both be loopback. The address check
  keeps other machines out when the server listens on all interfaces; the `Host` check keeps
  out DNS rebinding (a web site whose name suddenly resolves to 127.0.0.1); the
  `X-Clonefinder-Page` header that every page request carries makes a browser ask first
  (a CORS preflight, which this server never grants) before another site's script may send
  one, so no other page open in the same browser can act through it.
- `public` (a deployment): anyone, with a rate limit per client address; a check, a watch
  and an evidence download compare only the fields that were sent (never a stored profile's,
  so a handle alone cannot read the index), show at most `web_max_matches` at the
  `possible_clone` threshold or above (a caller cannot lower it to rank the index), of each
  match only what an `individual` key may read (`service.auth.roles.PAGE_PROFILE_ACCESS`), and keep
  nothing of the upload. Only "Watch my identity" keeps something: the watchlist entry the
  person asked for.

Entries the page registers belong to an internal key named `web-page` (role `individual`),
whose secret is never known to anyone: an administrator's key sees their alerts.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from models.errors import (
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
)
from service.auth.keys import RateLimiter, hash_key, key_prefix, new_key
from service.auth.roles import PAGE_PROFILE_ACCESS, Caller
from service.cases.service import Operator
from service.core.settings import Settings
from service.evidence import Export
from service.evidence.plain_words import impersonation_form, label_words
from service.evidence.report import MissingFontsError
from service.matching.engine import Engine
from service.matching.own_accounts import FIELD as OWN_ACCOUNTS_FIELD
from service.matching.own_accounts import MAX_OWN_ACCOUNTS, OwnAccount, parse_own_accounts
from service.store import KeyStore
from service.store.audit import Actor
from service.watchlist.mail import page_url
from service.watchlist.service import RegisterRequest

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
PAGE_HEADER = "X-Clonefinder-Page"
# Headers a proxy adds to name the client it passes a request on for; browsers never send them.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
PAGE_KEY_NAME = "web-page"
AVATAR_PATH = "/web/api/avatars/{sha256}"
THUMBNAIL_PX = 192
# The form's fields, as profile-record fields; anything else in a page request is ignored
# (in particular top_k and min_score: the page's own limits apply).
_TEXT_FIELDS = ("platform", "handle", "display_name", "bio")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Avatars are fetched a card at a time, and the page asks for its info once per visit: these
# cheap requests have a bucket of their own, this many times a check's per match shown.
_CHEAP_PER_CHECK = 2


@dataclass(frozen=True)
class PageClient:
    """Who sends a page request: the client's address, the `Host` it asked for, whether it
    carries the page's own header, and whether a proxy passed it on (forwarding headers)."""

    address: str | None
    host: str | None
    from_page: bool
    forwarded: bool = False


def is_loopback_host(host: str | None) -> bool:
    """Whether a `Host` header (name or address, with or without a port) names this machine."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _is_loopback_address(name)


def _is_loopback_address(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def local_refusal(client: PageClient) -> str | None:
    """Why a `local`-mode page request is refused, or None when it may go on."""
    if not _is_loopback_address(client.address):
        return (
            "this server's page answers without a key only on its own machine; a deployment "
            "sets CLONEFINDER_WEB_MODE=public"
        )
    if not is_loopback_host(client.host):
        return "the page must be opened as localhost or 127.0.0.1 on this machine"
    if client.forwarded:
        # A proxy on this machine connects from loopback whoever its client is.
        return "the page answers without a key only to a browser on this machine, not a proxy"
    return None


def _client_bucket(address: str | None) -> int:
    """The rate-limit bucket of a client: its address, or its /64 for IPv6 (one host can
    hold a whole /64), as a stable integer."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        label = address or "unknown"
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
            label = str(ipaddress.ip_network(f"{ip}/64", strict=False))
        else:
            label = str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big")


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _field_error(name, "must be text")
    return value.strip() or None


def _field_error(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}", details=[{"field": field, "message": message}])


class WebPage:
    """The page's endpoints: who may call, then check, watch, evidence and avatars."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self.public = settings.web_mode == "public"
        # What the page shows of stored profiles, and whether a handle alone may name one.
        self._access = PAGE_PROFILE_ACCESS["public" if self.public else "local"]
        per_minute, burst = settings.web_rate_limit_per_minute, settings.web_rate_limit_burst
        self._limiter = RateLimiter(per_minute=per_minute, burst=burst)
        self._cheap_limiter = RateLimiter(
            per_minute=per_minute * settings.web_max_matches * _CHEAP_PER_CHECK,
            burst=burst * settings.web_max_matches * _CHEAP_PER_CHECK,
        )

    # -- who may call ---------------------------------------------------------------------------

    def admit(self, client: PageClient, *, cheap: bool = False, image: bool = False) -> None:
        """Refuse a request the mode does not allow (403), or one over the client's rate
        limit (429, public mode). `cheap`: a request counted in the larger bucket (info,
        avatars); `image`: one an `<img>` makes, which cannot carry the page's header."""
        if not image and not client.from_page:
            raise PermissionDeniedError(
                f"page requests carry the {PAGE_HEADER} header (sent by the page itself)"
            )
        if not self.public:
            refusal = local_refusal(client)
            if refusal is not None:
                raise PermissionDeniedError(refusal)
            return
        limiter = self._cheap_limiter if cheap else self._limiter
        wait = limiter.wait_s(_client_bucket(client.address))
        if wait > 0:
            retry_after = max(1, int(wait + 0.999))
            raise RateLimitedError(
                f"too many checks from your address; try again in {retry_after} s",
                retry_after=retry_after,
            )

    # -- what the page does ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the page shows before a check: the mode, the index size, the upload limit."""
        return {
            "mode": self._settings.web_mode,
            "profiles": self._engine.store.count(),
            "max_image_bytes": self._settings.max_image_bytes,
            "max_own_accounts": MAX_OWN_ACCOUNTS,
            "email": self._settings.sends_mail,
        }

    def record(self, raw: Any) -> dict[str, Any]:
        """The form as a check's profile record; a missing or wrong field is named.

        Platform and handle are required: a person says who they are. In public mode a
        check also needs something to compare (a name, a bio or a photo), since nothing is
        filled in from the store there."""
        if not isinstance(raw, dict):
            raise InvalidInputError("the page sends one JSON object")
        record: dict[str, Any] = {}
        for name in _TEXT_FIELDS:
            value = _text(raw, name)
            if value is not None:
                record[name] = value.lower() if name == "platform" else value
        avatar = raw.get("avatar_base64")
        if avatar is not None and not isinstance(avatar, str):
            raise _field_error("avatar_base64", "must be base64 text")
        if avatar:
            record["avatar_base64"] = avatar
        missing = [
            {"field": name, "message": "required"} for name in ("platform", "handle")
            if name not in record
        ]  # fmt: skip
        if missing:
            names = " and ".join(d["field"] for d in missing)
            raise InvalidInputError(f"{names}: required", details=missing)
        if self.public and not any(
            name in record for name in ("display_name", "bio", "avatar_base64")
        ):
            raise InvalidInputError(
                "add your display name, your bio or your photo: a check compares what you send",
                details=[{"field": None, "message": "nothing to compare"}],
            )
        return record

    def own_accounts(self, raw: Any) -> tuple[OwnAccount, ...]:
        """The accounts the person names as their own (`own_accounts`: at most
        MAX_OWN_ACCOUNTS `{"platform", "handle"}`); a bad one is named, as
        `own_accounts[1].handle`."""
        return parse_own_accounts(raw.get(OWN_ACCOUNTS_FIELD) if isinstance(raw, dict) else None)

    def check(self, raw: Any) -> dict[str, Any]:
        """The matches of what was sent, each with its avatar's address, account link, label
        in plain words and the platform's impersonation form (and `may_be_yours`, for the
        page to ask "Is this you?"); the person's own accounts apart (`own_accounts`, each
        with its avatar's address and link where found and readable); how many profiles
        were searched; and `query_avatar`, the address of the stored photo the check
        compared when none was sent (else None)."""
        record = self.record(raw)
        own_accounts = self.own_accounts(raw)
        with _avatar_errors(record):
            result = self._engine.check(
                record,
                top_k=self._settings.web_max_matches,
                access=self._access,
                own_accounts=own_accounts,
            )
        matches = []
        for match in result.matches:
            item = match.model_dump(mode="json")
            item.update(_shown(item["profile"]))
            item["label_words"] = label_words(match.label)
            item["report_form"] = impersonation_form(item["profile"].get("platform"))
            matches.append(item)
        own = []
        for account in result.own_accounts:
            item = account.model_dump(mode="json")
            item.update(_shown(item["profile"] or {}))
            own.append(item)
        return {
            "query": result.query.model_dump(mode="json"),
            "query_avatar": self._avatar_on_file(record),
            "searched": self._engine.store.count(),
            "matches": matches,
            OWN_ACCOUNTS_FIELD: own,
        }

    def _avatar_on_file(self, record: dict[str, Any]) -> str | None:
        """The address of the stored photo a check compared in place of one not sent: where a
        check may name a stored profile (local mode), the profile fills in what the form left
        out. None when a photo was sent, or no photo on file was compared and can be shown."""
        if "avatar_base64" in record or not self._access.by_name:
            return None
        row = self._engine.store.get(record["platform"], record["handle"])
        if row is None or row.avatar_sha256 is None or row.avatar_hashes is None:
            return None
        if self._engine.store.avatar(row.avatar_sha256) is None:
            return None
        return AVATAR_PATH.format(sha256=row.avatar_sha256)

    def watch(self, raw: Any, *, link_base_url: str | None = None) -> dict[str, Any]:
        """Register what was sent as a watchlist entry of the page's own key: the private
        link (`watch_url`, relative) the first time, `existing` when the same watch was asked
        before. `link_base_url`: the service's address, for the links of e-mails.

        The person's own accounts go with the entry and never alert it; `own_accounts` says
        which the entry holds (for an `existing` one, those named when it was made)."""
        record = self.record(raw)
        own_accounts = self.own_accounts(raw)
        webhook_url = _text(raw, "webhook_url") if isinstance(raw, dict) else None
        email = _text(raw, "email") if isinstance(raw, dict) else None
        with _avatar_errors(record):
            registered = self._engine.watchlist.register(
                self._page_caller(),
                RegisterRequest(
                    identity=record,
                    webhook_url=webhook_url,
                    email=email,
                    link_base_url=link_base_url,
                    own_accounts=own_accounts,
                ),
                access=self._access,
            )
        entry = registered.entry
        token = registered.page_token
        return {
            "id": entry.id,
            "existing": registered.existing,
            "watch_url": page_url("", token) if token else None,
            "threshold": entry.threshold,
            "webhook_url": entry.webhook_url,
            "webhook_secret": registered.webhook_secret,
            "email": entry.email,
            "created_at": entry.created_at.isoformat(),
            OWN_ACCOUNTS_FIELD: entry.identity.get(OWN_ACCOUNTS_FIELD) or [],
        }

    def evidence(self, raw: Any) -> Export:
        """The PDF evidence report of the same check the page showed."""
        record = self.record(raw)
        operator = Operator(
            actor=Actor(f"web page ({self._settings.web_mode})"), owner_key_id=None, scope=None
        )
        try:
            with _avatar_errors(record):
                return self._engine.cases.export_check(
                    operator,
                    record,
                    "pdf",
                    top_k=self._settings.web_max_matches,
                    access=self._access,
                    own_accounts=self.own_accounts(raw),
                )
        except MissingFontsError as exc:
            # The person reads one sentence; whoever runs the service finds the folders searched
            # in its log.
            logger.error("the page's evidence report cannot be made: %s", exc.message)
            raise ConfigurationError(exc.for_people) from exc

    def avatar(self, sha256: str) -> bytes:
        """A stored avatar as a small JPEG; only an address a result gave can name one."""
        if not _SHA256.fullmatch(sha256):
            raise NotFoundError("no such avatar")
        blob = self._engine.store.avatar(sha256)
        if blob is None:
            raise NotFoundError("no such avatar")
        # Stored avatars passed the decoder's size and pixel limits when they were ingested.
        with Image.open(io.BytesIO(blob.data)) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            image.seek(0)
            thumb = image.convert("RGB")
        thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        thumb.save(out, format="JPEG", quality=85)
        return out.getvalue()

    def _page_caller(self) -> Caller:
        """The internal key that owns the page's watchlist entries (made on first use).

        Read from the store on every watch, as a presented key is on every request, so that
        revoking it (from any process) turns watching off from the next request.
        """
        keys = KeyStore(self._engine.store)
        row = keys.get(PAGE_KEY_NAME)
        if row is None:
            # Nobody ever holds this key: only its hash of a random secret is stored.
            secret = new_key()
            try:
                row = keys.add(
                    name=PAGE_KEY_NAME,
                    role="individual",
                    key_hash=hash_key(secret + secrets.token_hex(8)),
                    prefix=key_prefix(secret),
                )
            except InvalidInputError:
                row = keys.get(PAGE_KEY_NAME)  # another process made it first
            assert row is not None
        if row.revoked:
            raise PermissionDeniedError(
                f"the page's key {PAGE_KEY_NAME!r} was revoked: watching is turned off"
            )
        return Caller(key_id=row.id, name=row.name, role="individual")


def _shown(profile: dict[str, Any]) -> dict[str, Any]:
    """What a card needs beside a stored profile: its avatar's address and a safe link."""
    sha = profile.get("avatar_sha256")
    return {
        "avatar": AVATAR_PATH.format(sha256=sha) if sha else None,
        "link": _web_link(profile.get("profile_url")),
    }


def _web_link(url: Any) -> str | None:
    """An account address the page may link to: http(s) only, never `javascript:`."""
    if isinstance(url, str) and re.match(r"https?://[^\s]+$", url, flags=re.IGNORECASE):
        return url
    return None


@contextmanager
def _avatar_errors(record: dict[str, Any]) -> Iterator[None]:
    """Name the photo field on a size error that names none (the decoder's byte and pixel
    limits), so that the page shows it next to the photo."""
    try:
        yield
    except PayloadTooLargeError as exc:
        if "avatar_base64" in record and not exc.details:
            exc.details = [{"field": "avatar_base64", "message": exc.message}]
        raise
