"""Watchlists: protected identities, checked against every profile ingested after them.

A caller registers an identity (a profile record, or a stored profile named by platform and
handle); the same watch asked again returns the first. From then on every ingest, by any route
and any process, compares each ingested profile with every entry, and a match at or above the
entry's threshold becomes an alert (once per entry and profile), with a signed webhook
delivery when the entry has a webhook URL and an e-mail when it has a confirmed address.

The person watched reaches their entry without a key, through a private link whose token is
shown once (`watched` and the methods after it): they see its alerts, say which accounts are
their own (those never alert again), replace the link, or stop the watch, which erases it.

Why it stays cheap: the watchlist is small next to the index, so each batch of ingested
profiles is compared with all entries at once, vectorised: avatar hashes by a Hamming range
search, bios by one matrix product, names and handles in rapidfuzz's C loops. From those four
similarities a precomputed table gives the most each pair could score (`ScoreBounds`); only
the pairs whose bound reaches their entry's threshold are compared and scored like a check,
and a pair that passes is finally scored exactly as `POST /v1/checks` of the entry would score
it, with how common the entry's avatar, bio and name are in the whole index.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import faiss
import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.bio import BioEmbedder, normalize_bio
from indexers.compare import Popularity, ProfileSide, compare
from models.bounds import ABSENT, STEPS, ScoreBounds
from models.errors import InvalidInputError, InvalidRecordError, NotFoundError
from models.profile import identity_key, parse_query
from models.result import Context, PairEvidence
from models.scoring import ScoringModel
from service.auth.keys import hash_key
from service.auth.roles import (
    PUBLIC_ACCESS,
    PUBLIC_PROFILE_FIELDS,
    ROLE_PROFILE_ACCESS,
    Caller,
    ProfileAccess,
)
from service.core.settings import Settings
from service.matching.matcher import Matcher, popularity_among
from service.matching.own_accounts import FIELD as OWN_ACCOUNTS_FIELD
from service.matching.own_accounts import OwnAccount
from service.matching.profile_sides import (
    AvatarReader,
    context_of,
    hashes_from_bytes,
    query_side,
    vector_from_bytes,
)
from service.store import KeyStore, ProfileRow, ProfileWrite, Store
from service.store.watchlist import (
    AlertFilter,
    AlertRow,
    AlertWrite,
    Answer,
    DeliveryRow,
    EntryRow,
    EntryWrite,
    WatchlistStore,
    watch_key,
)
from service.watchlist.mail import (
    MailSender,
    alert_mail,
    check_email_address,
    confirmation_mail,
)
from service.watchlist.webhooks import WebhookDispatcher, check_webhook_url

logger = logging.getLogger(__name__)

DEFAULT_ALERT_LIMIT = 50
MAX_ALERT_LIMIT = 500
SECRET_PREFIX = "whsec_"
# The private link's token, and the e-mail links' (confirm, stop): 256 random bits each.
PAGE_TOKEN_PREFIX = "cfw_"
EMAIL_TOKEN_PREFIX = "cfm_"
_MAX_TOKEN_CHARS = 100
_GONE = (
    "this link opens no watch: it was replaced by a newer link, or the watch was stopped and erased"
)

# An avatar adds to a score only above similarity 0.5 (fewer than UNRELATED_BITS / 2 bits
# apart); the range search looks one bit further, since it keeps distances below its radius.
# A pair further apart than that is at most this alike.
_AVATAR_RADIUS = avatar_hashing.UNRELATED_BITS // 2 + 1
_FAR_AVATAR = 1.0 - _AVATAR_RADIUS / avatar_hashing.UNRELATED_BITS


@dataclass(frozen=True)
class RegisterRequest:
    """A `POST /v1/watchlist` body: the identity record and the entry's options."""

    identity: dict[str, Any]
    threshold: float | None = None
    webhook_url: str | None = None
    email: str | None = None  # alerts are e-mailed here once it is confirmed
    # Where the e-mails' links point when the settings name no address: the service's
    # address as this request reached it (set by the route, never from the body).
    link_base_url: str | None = None
    # The person's own accounts on other platforms: kept with the identity (`own_accounts`),
    # and never alerted on, as the accounts they mark "this is me" on their private page.
    own_accounts: Sequence[OwnAccount] = ()


@dataclass(frozen=True)
class Registered:
    entry: EntryRow
    webhook_secret: str | None  # returned once, at registration
    existing: bool = False  # the same watch was asked before: that entry, nothing new
    page_token: str | None = None  # the private link's token, returned once


@dataclass(frozen=True)
class AlertQuery:
    entry_id: int | None = None
    acknowledged: bool | None = None
    since: datetime | None = None
    cursor: str | None = None
    limit: int = DEFAULT_ALERT_LIMIT
    offset: int = 0


@dataclass(frozen=True)
class AlertPage:
    alerts: list[AlertRow]
    next_cursor: str | None  # pass as `cursor` for the next (older) page; None at the end


def entry_document(entry: EntryRow) -> dict[str, Any]:
    """An entry as the API shows it: never its webhook secret."""
    return {
        "id": entry.id,
        "key_id": entry.key_id,
        "identity": entry.identity,
        "threshold": entry.threshold,
        "webhook_url": entry.webhook_url,
        "email": entry.email,
        "email_confirmed": entry.email_confirmed_at is not None,
        "created_at": entry.created_at,
    }


def alert_document(alert: AlertRow) -> dict[str, Any]:
    """An alert as the API lists it and as a webhook receives it (JSON-ready)."""
    return {
        "id": alert.id,
        "entry_id": alert.entry_id,
        "profile": alert.profile,
        "score": alert.score,
        "label": alert.label,
        "signals": alert.signals,
        "reasons": alert.reasons,
        "likely_impersonator": alert.likely_impersonator,
        "created_at": _iso(alert.created_at),
        "acknowledged": alert.acknowledged_at is not None,
        "acknowledged_at": _iso(alert.acknowledged_at) if alert.acknowledged_at else None,
        "answer": alert.answer,
    }


def _iso(moment: datetime) -> str:
    # As the API's JSON writes times (UTC with a Z), so a webhook body reads like the API.
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _payload(alert: AlertRow) -> str:
    return json.dumps(alert_document(alert), ensure_ascii=False, separators=(",", ":"))


def _bio_key(bio: str | None) -> str:
    return normalize_bio(bio).casefold()


def _entry_side(entry: EntryRow) -> ProfileSide:
    return ProfileSide(
        display_name=entry.display_name,
        name_key=entry.name_key,
        handle=entry.identity.get("handle"),
        handle_norm=entry.handle_norm,
        bio=entry.bio,
        avatar_hashes=hashes_from_bytes(entry.avatar_hashes),
        bio_vector=vector_from_bytes(entry.bio_vector),
        context=Context(
            created_at=entry.account_created_at,
            followers_count=entry.followers_count,
            verified=entry.verified,
        ),
    )


def _write_side(write: ProfileWrite) -> ProfileSide:
    """An ingested profile as comparison sees it, from what was just stored (no read back)."""
    return ProfileSide(
        display_name=write.record.display_name,
        name_key=write.name_key,
        handle=write.record.handle,
        handle_norm=write.handle_norm,
        bio=write.record.bio,
        avatar_hashes=hashes_from_bytes(write.avatar_hashes),
        bio_vector=vector_from_bytes(write.bio_vector),
        context=context_of(write.record),
    )


class _EntrySet:
    """Every entry with its features, arranged for screening a batch against all at once."""

    def __init__(self, version: tuple[int, int], rows: list[EntryRow], *, bio_dim: int) -> None:
        self.version = version
        self.rows = rows
        self.sides = [_entry_side(row) for row in rows]
        for side in self.sides:
            if side.bio_vector is not None and len(side.bio_vector) != bio_dim:
                # Registered under another embedding model: its bio cannot be compared.
                side.bio_vector = None
        sides = self.sides
        self.own_keys = [_declared_own_keys(row.identity) for row in rows]
        self.thresholds = np.asarray([row.threshold for row in rows], dtype=np.float64)

        self.has_bio = np.asarray([s.bio_vector is not None for s in sides], dtype=bool)
        self.bio_matrix = np.zeros((len(sides), bio_dim), dtype=np.float32)
        for i, side in enumerate(sides):
            if side.bio_vector is not None:
                self.bio_matrix[i] = side.bio_vector
        self.bio_keys: dict[str, list[int]] = {}
        for i, side in enumerate(sides):
            if side.bio_vector is not None and _bio_key(side.bio):
                self.bio_keys.setdefault(_bio_key(side.bio), []).append(i)

        self.has_avatar = np.asarray([s.avatar_hashes is not None for s in sides], dtype=bool)
        self.avatar_index: faiss.IndexBinaryFlat | None = None
        self.avatar_owner = np.zeros(0, dtype=np.int64)
        with_avatar = np.flatnonzero(self.has_avatar)
        if len(with_avatar):
            codes = np.concatenate(
                [avatar_hashing.index_codes(sides[i].avatar_hashes) for i in with_avatar]  # type: ignore[arg-type]
            )
            self.avatar_owner = np.repeat(with_avatar.astype(np.int64), avatar_hashing.VIEWS)
            self.avatar_index = faiss.IndexBinaryFlat(avatar_hashing.CODE_BYTES * 8)
            self.avatar_index.add(np.ascontiguousarray(codes))

        self.names = [side.name_key for side in sides]
        self.handles = [side.handle_norm for side in sides]

    def __len__(self) -> int:
        return len(self.rows)

    def screen(self, sides: Sequence[ProfileSide], *, bounds: ScoreBounds) -> dict[int, list[int]]:
        """For each entry (by position), the positions of `sides` whose bound reaches its
        threshold: every pair that can alert, and few that cannot."""
        shape = (len(sides), len(self.rows))
        far = ScoreBounds.steps(np.asarray(_FAR_AVATAR))

        avatar = np.full(shape, ABSENT, dtype=np.intp)
        side_avatar = np.asarray([s.avatar_hashes is not None for s in sides], dtype=bool)
        avatar[np.ix_(side_avatar, self.has_avatar)] = far
        with_avatar = np.flatnonzero(side_avatar)
        if self.avatar_index is not None and len(with_avatar):
            queries = np.concatenate(
                [avatar_hashing.query_codes(sides[i].avatar_hashes) for i in with_avatar.tolist()]  # type: ignore[arg-type]
            )
            lims, distances, hits = self.avatar_index.range_search(
                np.ascontiguousarray(queries), _AVATAR_RADIUS
            )
            per_query: np.ndarray = (lims[1:] - lims[:-1]).astype(np.int64)  # FAISS: uint64
            query_of_hit = np.repeat(np.arange(len(queries)), per_query)
            side_of_hit = with_avatar[query_of_hit // (2 * avatar_hashing.VIEWS)]
            entry_of_hit = self.avatar_owner[hits]
            alike = 1.0 - distances.astype(np.float64) / avatar_hashing.UNRELATED_BITS
            np.maximum.at(avatar, (side_of_hit, entry_of_hit), ScoreBounds.steps(alike))

        bio = np.full(shape, ABSENT, dtype=np.intp)
        side_bio = np.asarray(
            [
                s.bio_vector is not None and len(s.bio_vector) == self.bio_matrix.shape[1]
                for s in sides
            ],
            dtype=bool,
        )
        with_bio = np.flatnonzero(side_bio)
        if len(with_bio) and self.has_bio.any():
            vectors = np.stack([sides[i].bio_vector for i in with_bio.tolist()])  # type: ignore[misc]
            cosines = np.clip(vectors @ self.bio_matrix[self.has_bio].T, 0.0, 1.0)
            bio[np.ix_(side_bio, self.has_bio)] = ScoreBounds.steps(cosines)
            for i in with_bio.tolist():
                for entry in self.bio_keys.get(_bio_key(sides[i].bio), ()):
                    bio[i, entry] = STEPS  # the same text: "copied verbatim" counts

        name = ScoreBounds.steps(text.name_similarities([s.name_key for s in sides], self.names))
        handle = ScoreBounds.steps(
            text.handle_similarities([s.handle_norm for s in sides], self.handles)
        )
        bound = bounds.table[avatar, bio, name, handle]
        # A score is rounded to 4 places before it meets a threshold.
        side_positions, entry_positions = np.nonzero(bound >= self.thresholds[None, :] - 1e-4)
        pairs: dict[int, list[int]] = {}
        for side, entry in zip(side_positions.tolist(), entry_positions.tolist(), strict=True):
            pairs.setdefault(entry, []).append(side)
        return pairs


class Watchlist:
    """Register and list protected identities; check ingested profiles against them; list and
    acknowledge alerts and their webhook deliveries.

    Thread-safe: the entry set is an immutable snapshot, swapped under a lock when another
    process (or this one) adds or erases an entry.
    """

    def __init__(
        self,
        *,
        store: Store,
        embedder: BioEmbedder,
        avatars: AvatarReader,
        scorer: ScoringModel,
        matcher: Matcher,
        settings: Settings,
    ) -> None:
        self.store = WatchlistStore(store)
        self._profiles = store
        self._keys = KeyStore(store)
        self._embedder = embedder
        self._avatars = avatars
        self._scorer = scorer
        self._matcher = matcher
        self._settings = settings
        self._reload_lock = threading.Lock()
        self._snapshot = _EntrySet((0, 0), [], bio_dim=embedder.dim)
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever this process stores alerts that have webhook deliveries."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start_deliveries(self) -> WebhookDispatcher:
        """Start sending due webhook deliveries and e-mails from background threads (in `serve`
        and `worker`); the returned loop's `stop()` ends them. Alerts this process stores wake
        it at once; those of other processes are found by polling the store."""
        mailer = MailSender(self._settings) if self._settings.sends_mail else None
        dispatcher = WebhookDispatcher(self.store, settings=self._settings, mailer=mailer)
        self.add_listener(dispatcher.wake)
        dispatcher.start()
        return dispatcher

    # -- entries ------------------------------------------------------------------------------

    def register(
        self, caller: Caller, request: RegisterRequest, *, access: ProfileAccess | None = None
    ) -> Registered:
        """Store a protected identity for `caller`'s key.

        The identity is validated like a check's query; naming a stored profile by platform and
        handle completes it from the store when the caller may read stored profiles by name
        (`access`, by default the caller's role's); otherwise only the fields sent are kept
        and compared, and whether the named profile exists is not told. Its features are kept
        as registered. A webhook entry gets a new signing secret, and every entry a private
        link, returned here and never again.

        The same watch asked again by the same key (the same identity, threshold, webhook and
        e-mail address: `watch_key`) returns the entry it made, `existing`, with no secret or
        link. An e-mail address is sent a confirmation e-mail, and nothing else until it is
        confirmed.
        """
        access = caller.access if access is None else access
        threshold = self._threshold(request.threshold)
        webhook_url = (
            check_webhook_url(
                request.webhook_url, allow_private=self._settings.avatar_fetch_allow_private
            )
            if request.webhook_url
            else None
        )
        email = check_email_address(request.email) if request.email else None
        if email is not None and not self._settings.sends_mail:
            message = (
                "field 'email': this service sends no e-mail (no SMTP server is set up); "
                "leave it out and keep the private link"
            )
            raise InvalidInputError(message, details=[{"field": "email", "message": message}])
        link_base_url = self._settings.smtp_link_base_url or request.link_base_url
        if email is not None and not link_base_url:
            raise InvalidInputError("an e-mail address needs the service's address for its links")
        query = parse_query(request.identity, where="identity")
        named = bool(query.platform and query.handle)
        own = (
            self._profiles.get(query.platform, query.handle)  # type: ignore[arg-type]
            if named and access.by_name
            else None
        )
        if own is None and not (query.display_name or query.bio or query.has_avatar):
            if named and access.by_name:
                raise NotFoundError(
                    f"no stored profile {query.platform}/{query.handle}: ingest it first, or "
                    "send the identity's display name, bio or avatar"
                )
            raise InvalidRecordError(
                "identity: needs a display name, a bio, an avatar, or the platform and handle "
                "of a stored profile"
                if access.by_name
                else "identity: needs a display name, a bio or an avatar: only the fields sent "
                "are compared",
                field=None,
                details=[{"where": "identity", "field": None, "message": "nothing to protect"}],
            )

        # base_dir=None: a network client never makes the service read its own files.
        avatar = self._avatars.read(query, base_dir=None)
        side = query_side(query, own, avatar=avatar, clues="each")
        if query.bio:
            side.bio_vector = self._embedder.embed_bios([query.bio])[0]
        identity = _identity_of(own)
        for name in ("platform", "handle", "display_name", "bio"):
            if getattr(query, name):
                identity[name] = getattr(query, name)
        if avatar is not None:
            identity["avatar_sha256"] = avatar.blob.sha256
            identity.pop("avatar_url", None)
            if query.avatar_url:
                identity["avatar_url"] = query.avatar_url
        given = query.model_dump(
            mode="json", include={"created_at", "followers_count", "verified"}, exclude_none=True
        )
        identity.update(given)
        if request.own_accounts:
            identity[OWN_ACCOUNTS_FIELD] = [
                {"platform": account.platform, "handle": account.handle}
                for account in request.own_accounts
            ]

        platform_key, handle_key = (
            identity_key(query.platform, query.handle) if named else (None, None)  # type: ignore[arg-type]
        )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32) if webhook_url else None
        page_token = PAGE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        entry, existing = self.store.add_entry_once(
            EntryWrite(
                key_id=caller.key_id,
                platform_key=platform_key,
                handle_key=handle_key,
                profile_id=own.id if own is not None else None,
                identity=identity,
                display_name=side.display_name,
                name_key=side.name_key,
                handle_norm=side.handle_norm,
                bio=side.bio,
                bio_vector=None if side.bio_vector is None else side.bio_vector.tobytes(),
                avatar_hashes=None if side.avatar_hashes is None else side.avatar_hashes.tobytes(),
                account_created_at=side.context.created_at,
                followers_count=side.context.followers_count,
                verified=side.context.verified,
                threshold=threshold,
                webhook_url=webhook_url,
                webhook_secret=secret,
                watch_key=watch_key(
                    platform_key=platform_key,
                    handle_key=handle_key,
                    name_key=side.name_key,
                    avatar_sha256=identity.get("avatar_sha256"),
                    bio=side.bio,
                    threshold=threshold,
                    webhook_url=webhook_url,
                    email=email,
                ),
                page_token_hash=hash_key(page_token),
                email=email,
                email_token=EMAIL_TOKEN_PREFIX + secrets.token_urlsafe(32) if email else None,
                link_base_url=link_base_url if email else None,
            ),
            confirmation=confirmation_mail if email else None,
        )
        if existing:
            logger.info("watchlist entry %d asked for again by key %d", entry.id, caller.key_id)
            return Registered(entry=entry, webhook_secret=None, existing=True)
        logger.info("watchlist entry %d registered by key %d", entry.id, caller.key_id)
        if email:
            self._wake_listeners()  # the confirmation e-mail
        return Registered(entry=entry, webhook_secret=secret, page_token=page_token)

    def entries(self, caller: Caller) -> list[EntryRow]:
        """The caller's entries (every key's with the `watchlist.all` permission)."""
        return self.store.entries(key_id=_scope(caller))

    def entry(self, caller: Caller, entry_id: int) -> EntryRow:
        entry = self.store.entry(entry_id, key_id=_scope(caller))
        if entry is None:
            raise NotFoundError(f"no watchlist entry {entry_id}")
        return entry

    def delete(self, caller: Caller, entry_id: int) -> None:
        """Erase an entry with its alerts and deliveries."""
        if not self.store.delete_entry(entry_id, key_id=_scope(caller)):
            raise NotFoundError(f"no watchlist entry {entry_id}")

    def _threshold(self, value: float | None) -> float:
        thresholds = self._scorer.thresholds
        if value is None:
            return thresholds.likely_clone
        if not thresholds.possible_clone <= value <= 1.0:
            message = (
                f"field 'threshold': must be between {thresholds.possible_clone:g} "
                "(the possible_clone threshold) and 1"
            )
            raise InvalidInputError(message, details=[{"field": "threshold", "message": message}])
        return float(value)

    # -- alerts -------------------------------------------------------------------------------

    def alerts(self, caller: Caller, query: AlertQuery) -> AlertPage:
        """The caller's alerts matching `query`, newest first, a page at a time."""
        scope = _scope(caller)
        if query.entry_id is not None and self.store.entry(query.entry_id, key_id=scope) is None:
            raise NotFoundError(f"no watchlist entry {query.entry_id}")
        before_id = _parse_cursor(query.cursor)
        since = query.since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        rows = self.store.alerts(
            AlertFilter(
                key_id=scope,
                entry_id=query.entry_id,
                acknowledged=query.acknowledged,
                since=since,
                before_id=before_id,
                limit=query.limit,
                offset=query.offset,
            )
        )
        next_cursor = str(rows[-1].id) if len(rows) == query.limit and rows else None
        return AlertPage(alerts=[_as_read_by(caller, row) for row in rows], next_cursor=next_cursor)

    def acknowledge(self, caller: Caller, alert_id: int) -> AlertRow:
        alert = self.store.acknowledge(alert_id, key_id=_scope(caller))
        if alert is None:
            raise NotFoundError(f"no alert {alert_id}")
        return _as_read_by(caller, alert)

    def deliveries(self, caller: Caller, alert_id: int) -> list[DeliveryRow]:
        """Every webhook delivery of one alert, with every attempt made."""
        if self.store.alert(alert_id, key_id=_scope(caller)) is None:
            raise NotFoundError(f"no alert {alert_id}")
        return self.store.deliveries(alert_id)

    # -- the person's own view, through the private link ----------------------------------

    def watched(self, page_token: Any) -> EntryRow:
        """The entry a private link opens; NotFoundError when it opens none."""
        entry = None
        if _plausible_token(page_token, PAGE_TOKEN_PREFIX):
            entry = self.store.entry_by_page_token(hash_key(page_token))
        if entry is None:
            raise NotFoundError(_GONE)
        return entry

    def watched_alerts(self, entry: EntryRow) -> list[AlertRow]:
        """The entry's alerts, newest first, each clone cut to its public fields: the link's
        holder has no key, and reads as little as the least key does."""
        rows = self.store.alerts(AlertFilter(key_id=None, entry_id=entry.id, limit=MAX_ALERT_LIMIT))
        return [replace(row, profile=PUBLIC_ACCESS.profile(row.profile)) for row in rows]

    def answer(self, page_token: Any, alert_id: int, answer: Answer) -> AlertRow:
        """Record "this is me" (`mine`: that account never alerts this entry again) or "a
        clone" on one of the entry's alerts."""
        entry = self.watched(page_token)
        alert = self.store.answer(alert_id, entry_id=entry.id, answer=answer)
        if alert is None:
            raise NotFoundError(f"no alert {alert_id} on this watch")
        logger.info("alert %d of entry %d answered: %s", alert_id, entry.id, answer)
        return replace(alert, profile=PUBLIC_ACCESS.profile(alert.profile))

    def new_link(self, page_token: Any) -> str:
        """A new private link in place of this one, which stops opening the entry now."""
        entry = self.watched(page_token)
        token = PAGE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        if not self.store.replace_page_token(
            entry.id, old_hash=hash_key(page_token), new_hash=hash_key(token)
        ):
            raise NotFoundError(_GONE)
        logger.info("watchlist entry %d: private link replaced", entry.id)
        return token

    def stop(self, page_token: Any) -> None:
        """Erase the entry, with its photo's hashes, its alerts and its deliveries."""
        self._erase(self.watched(page_token))

    def confirm_email(self, email_token: Any) -> EntryRow:
        """Confirm the entry's address: its alerts are e-mailed from now on."""
        confirmed = self.store.confirm_email(self._by_email_token(email_token).id)
        if confirmed is None:
            raise NotFoundError(_GONE)
        logger.info("watchlist entry %d: e-mail address confirmed", confirmed.id)
        return confirmed

    def stop_by_email(self, email_token: Any) -> None:
        """The e-mails' stop link: erase the entry, as `stop` does."""
        self._erase(self._by_email_token(email_token))

    def _by_email_token(self, email_token: Any) -> EntryRow:
        entry = None
        if _plausible_token(email_token, EMAIL_TOKEN_PREFIX):
            entry = self.store.entry_by_email_token(email_token)
        if entry is None:
            raise NotFoundError(_GONE)
        return entry

    def _erase(self, entry: EntryRow) -> None:
        if not self.store.delete_entry(entry.id, key_id=None):
            raise NotFoundError(_GONE)
        logger.info("watchlist entry %d stopped and erased by the person watched", entry.id)

    def _wake_listeners(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- the ingest hook ----------------------------------------------------------------------

    def on_ingested(self, ingested: Sequence[tuple[int, ProfileWrite]]) -> list[AlertRow]:
        """Check just-stored profiles (store id and what was written) against every entry;
        returns the alerts created now.

        Never raises: the profiles are stored and acknowledged whatever happens here, so a
        failure is logged rather than turned into a failed ingest.
        """
        if not ingested:
            return []
        try:
            entries = self._current_entries()
            if not len(entries):
                return []
            return self._check(entries, ingested)
        except Exception:
            logger.exception("watchlist check of %d ingested profiles failed", len(ingested))
            return []

    def _current_entries(self) -> _EntrySet:
        version = self.store.version()
        snapshot = self._snapshot
        if snapshot.version == version:
            return snapshot
        with self._reload_lock:
            if self._snapshot.version != version:
                # The version is read before the rows: an entry added in between makes the
                # next call reload again, never a stale set pass for current.
                rows = self.store.entries(key_id=None) if version[0] else []
                self._snapshot = _EntrySet(version, rows, bio_dim=self._embedder.dim)
                logger.info("watchlist reloaded: %d entries", len(rows))
            return self._snapshot

    def _check(
        self, entries: _EntrySet, ingested: Sequence[tuple[int, ProfileWrite]]
    ) -> list[AlertRow]:
        latest = dict(ingested)  # a batch may write one identity twice: the last write counts
        ids = list(latest)
        writes = [latest[i] for i in ids]
        sides = [_write_side(w) for w in writes]
        keys = [w.record.key for w in writes]

        # First pass: the score without popularity, which can only be higher than the real one
        # (popularity only discounts likeness), so a pair below its threshold here is done.
        hopeful: dict[int, list[int]] = {}
        for position, candidates in entries.screen(sides, bounds=self._matcher.bounds).items():
            entry = entries.rows[position]
            chosen = [
                c
                for c in sorted(candidates)
                if ids[c] != entry.profile_id
                and not (entry.platform_key and keys[c] == (entry.platform_key, entry.handle_key))
                and keys[c] not in entries.own_keys[position]
            ]
            if not chosen:
                continue
            evidence = compare(entries.sides[position], [sides[c] for c in chosen])
            scores = self._scorer.probabilities(evidence)
            above = [
                c
                for c, p in zip(chosen, scores, strict=True)
                if round(float(p), 4) >= entry.threshold
            ]
            if above:
                hopeful[position] = above
        if not hopeful:
            return []

        # Second pass, for the few left: exactly the score a check of the entry would give,
        # with how common its avatar, bio and name are (the indexes asked once for all).
        found: list[tuple[EntryRow, int, PairEvidence, Any]] = []
        for (position, chosen), popularity in zip(
            hopeful.items(), self._popularities(entries, list(hopeful)), strict=True
        ):
            entry, side = entries.rows[position], entries.sides[position]
            evidence = compare(side, [sides[c] for c in chosen], popularity=popularity)
            for c, pair, verdict in zip(
                chosen, evidence, self._scorer.score(evidence), strict=True
            ):
                if verdict.score >= entry.threshold:
                    found.append((entry, ids[c], pair, verdict))
        if not found:
            return []
        # Accounts the person said are their own never alert their entry again, even stored
        # anew under another id.
        own = self.store.own_accounts(sorted({entry.id for entry, *_ in found}))
        if own:
            found = [f for f in found if (f[0].id, *latest[f[1]].record.key) not in own]

        stored = {row.id: row for row in self._profiles.get_many([f[1] for f in found])}
        owners = self._owner_access()
        new = [
            AlertWrite(
                entry_id=entry.id,
                key_id=entry.key_id,
                profile_id=profile_id,
                # The alert is its entry's owner's to read, here and in the webhook body.
                profile=owners.get(entry.key_id, PUBLIC_ACCESS).profile(
                    _profile_document(stored[profile_id])
                ),
                score=verdict.score,
                label=verdict.label,
                signals=pair.signals(),
                reasons=verdict.reasons,
                likely_impersonator=verdict.likely_impersonator,
                webhook_url=entry.webhook_url,
            )
            for entry, profile_id, pair, verdict in found
            if profile_id in stored  # erased in the meantime: nothing left to alert on
        ]
        created = self.store.add_alerts(
            new, payload=_payload, mail=alert_mail if self._settings.sends_mail else None
        )
        for alert in created:
            logger.info(
                "alert %d: profile %d matches watchlist entry %d (score %.3f)",
                alert.id,
                alert.profile_id,
                alert.entry_id,
                alert.score,
            )
        delivered = {e.id for e, *_ in found if e.webhook_url or e.email}
        if any(alert.entry_id in delivered for alert in created):
            self._wake_listeners()
        return created

    def _owner_access(self) -> dict[int, ProfileAccess]:
        """What each key may read; a key that is gone reads the least any role reads."""
        return {row.id: ROLE_PROFILE_ACCESS[row.role] for row in self._keys.list()}

    def _popularities(self, entries: _EntrySet, positions: list[int]) -> list[Popularity]:
        """How common each entry's avatar, bio and name are among the indexed profiles, as a
        check of the entry counts them (`Matcher.match_many` does the same per query)."""
        sides = [entries.sides[p] for p in positions]
        found = self._matcher.candidates_many(
            sides, exclude_ids=[entries.rows[p].profile_id for p in positions]
        )
        by_id = {
            row.id: row
            for row in self._profiles.get_many(sorted({i for c in found for i in c.ids}))
        }
        return [
            popularity_among(side, candidates, [by_id[i] for i in candidates.ids if i in by_id])
            for side, candidates in zip(sides, found, strict=True)
        ]


def _scope(caller: Caller) -> int | None:
    """The key whose entries and alerts `caller` sees; None for every key's."""
    return None if caller.can("watchlist.all") else caller.key_id


def _as_read_by(caller: Caller, alert: AlertRow) -> AlertRow:
    """An alert with its clone cut to what `caller` may read (an alert stored before the
    owner's reads were applied at alerting time holds the full record)."""
    if caller.access.every_field:
        return alert
    return replace(alert, profile=caller.access.profile(alert.profile))


def _plausible_token(token: Any, prefix: str) -> bool:
    """Whether `token` can be one of ours, before it is looked up."""
    return isinstance(token, str) and token.startswith(prefix) and len(token) <= _MAX_TOKEN_CHARS


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    # ASCII digits only (`isdigit` alone takes "²"), and an id the database can hold.
    if not (cursor.isascii() and cursor.isdigit()) or not 1 <= int(cursor) <= 2**63 - 1:
        message = "cursor: not a cursor returned by this listing"
        raise InvalidInputError(message, details=[{"field": "cursor", "message": message}])
    return int(cursor)


def _declared_own_keys(identity: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """The identities of the accounts a person declared as their own when they asked to be
    watched (`RegisterRequest.own_accounts`), as records' keys."""
    declared = identity.get(OWN_ACCOUNTS_FIELD)
    if not isinstance(declared, list):
        return frozenset()
    return frozenset(
        identity_key(account["platform"], account["handle"])
        for account in declared
        if isinstance(account, dict)
        and isinstance(account.get("platform"), str)
        and isinstance(account.get("handle"), str)
    )


def _identity_of(row: ProfileRow | None) -> dict[str, Any]:
    """The identity a stored profile gives an entry: who it is and what it looks like."""
    if row is None:
        return {}
    shown = row.to_stored().model_dump(mode="json", exclude_none=True)
    return {name: value for name, value in shown.items() if name in _IDENTITY_FIELDS}


# An identity is the public face of a profile (what anyone may read of it), less its address.
_IDENTITY_FIELDS = PUBLIC_PROFILE_FIELDS - {"profile_url"}


def _profile_document(row: ProfileRow) -> dict[str, Any]:
    """The clone as a check's match shows it: the stored record, no image bytes."""
    return row.to_stored().model_dump(mode="json", exclude_none=True)
