"""Watchlist entries, their alerts and their deliveries (webhooks, e-mails) in the store:
tables and data access.

An entry is a protected identity with the features a comparison needs, kept as registered (a
snapshot), so that checking a newly ingested profile against every entry never reads the
profiles table. A second identical watch by the same key finds the first (`watch_key`) instead
of adding an entry. Alerts are unique per (entry, profile): inserting one that exists is a
no-op, which is what makes "the same clone never alerts twice" hold across processes.
Deliveries are durable rows that a worker claims for a while (a lease), so two processes never
send the same attempt; each webhook attempt is logged in its own row.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from models.result import Impersonator, Label
from service.store.store import _WRITE_OPTION, Store, _utcnow
from service.store.tables import BigId, JSONDocument, UTCDateTime, metadata

DeliveryStatus = Literal["pending", "delivered", "failed"]
# The person's word on an alert: the account is theirs, or it is a clone.
Answer = Literal["mine", "clone"]
MailKind = Literal["confirm", "alert"]

watchlist_entries = Table(
    "watchlist_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The API key that registered the entry (no foreign key: keys live in their own module
    # and a revoked key keeps its id).
    Column("key_id", Integer, nullable=False),
    # The protected identity's (platform, handle), folded, when it has one: never alerted on.
    Column("platform_key", Text),
    Column("handle_key", Text),
    # The stored profile the entry was registered from, if any (no foreign key: a profile can
    # be erased while the entry stays).
    Column("profile_id", Integer),
    Column("identity", JSONDocument, nullable=False),
    # What comparison needs, computed once at registration.
    Column("display_name", Text),
    Column("name_key", Text, nullable=False),
    Column("handle_norm", Text, nullable=False),
    Column("bio", Text),
    Column("bio_vector", LargeBinary),
    Column("avatar_hashes", LargeBinary),
    Column("account_created_at", UTCDateTime),
    Column("followers_count", Integer),
    Column("verified", Boolean),
    Column("threshold", Float, nullable=False),
    Column("webhook_url", Text),
    # Needed in clear to sign every delivery; shown to the caller once, at registration.
    Column("webhook_secret", Text),
    Column("created_at", UTCDateTime, nullable=False),
    # The same watch asked again by the same key finds this entry (see `watch_key`).
    Column("watch_key", String(64)),
    # The private link's token is shown once; only its SHA-256 is kept, as for API keys.
    Column("page_token_hash", String(64)),
    # Alerts are e-mailed here once the address is confirmed. The e-mail token confirms the
    # address or stops the watch (never reads it); it is written into every alert e-mail's
    # stop link, so it is kept in clear, like the webhook secret.
    Column("email", Text),
    Column("email_token", String(64)),
    Column("email_confirmed_at", UTCDateTime),
    Column("link_base_url", Text),  # where the e-mails' links point
    # Never reuse an id: (count, max id) is the cheap version other processes compare.
    sqlite_autoincrement=True,
)
Index("ix_watchlist_entries_key_id", watchlist_entries.c.key_id)
Index(
    "ix_watchlist_entries_key_id_watch_key",
    watchlist_entries.c.key_id,
    watchlist_entries.c.watch_key,
)
Index("ix_watchlist_entries_page_token_hash", watchlist_entries.c.page_token_hash, unique=True)
Index("ix_watchlist_entries_email_token", watchlist_entries.c.email_token, unique=True)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "entry_id",
        Integer,
        ForeignKey("watchlist_entries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("key_id", Integer, nullable=False),  # the entry's, so listings filter on one table
    Column("profile_id", Integer, nullable=False),  # the clone (no foreign key: erasable)
    Column("profile", JSONDocument, nullable=False),  # the clone as it was when it alerted
    Column("score", Float, nullable=False),
    Column("label", String(32), nullable=False),
    Column("signals", JSONDocument, nullable=False),
    Column("reasons", JSONDocument, nullable=False),
    Column("likely_impersonator", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime),
    Column("answer", String(16)),  # the person's word (`Answer`), from the private page
    Column("answered_at", UTCDateTime),
    UniqueConstraint("entry_id", "profile_id"),
    sqlite_autoincrement=True,
)
Index("ix_alerts_key_id", alerts.c.key_id)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),  # the exact body, the same on every attempt
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # A worker's claim: nobody else sends this delivery until the lease runs out.
    Column("claim_token", String(64)),
    Column("claimed_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    sqlite_autoincrement=True,
)
Index("ix_webhook_deliveries_alert_id", webhook_deliveries.c.alert_id)
Index(
    "ix_webhook_deliveries_status_next_attempt_at",
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_attempt_at,
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        Integer,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("ok", Boolean, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_webhook_attempts_delivery_id", webhook_attempts.c.delivery_id)

mail_deliveries = Table(
    "mail_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "entry_id",
        Integer,
        ForeignKey("watchlist_entries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE")),
    Column("kind", String(16), nullable=False),  # MailKind
    Column("to_address", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("stop_url", Text),  # the List-Unsubscribe address
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claim_token", String(64)),
    Column("claimed_until", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    sqlite_autoincrement=True,
)
Index("ix_mail_deliveries_entry_id", mail_deliveries.c.entry_id)
Index(
    "ix_mail_deliveries_status_next_attempt_at",
    mail_deliveries.c.status,
    mail_deliveries.c.next_attempt_at,
)


def watch_key(
    *,
    platform_key: str | None,
    handle_key: str | None,
    name_key: str,
    avatar_sha256: str | None,
    bio: str | None,
    threshold: float,
    webhook_url: str | None,
    email: str | None,
) -> str:
    """What makes two watches the same watch: the same identity (the same platform and
    handle; without them, the same folded name and photo, or the same bio when it has neither),
    the same threshold, and alerts going to the same webhook and e-mail address.

    Migration 0007 keeps a frozen copy of this for the entries it fills in.
    """
    if platform_key and handle_key:
        who = ["account", platform_key, handle_key]
    else:
        photo = avatar_sha256 or ""
        text_of_bio = "" if (name_key or photo) else " ".join((bio or "").split()).casefold()
        who = ["face", name_key or "", photo, text_of_bio]
    parts = [*who, f"{float(threshold):.4f}", webhook_url or "", (email or "").casefold()]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def _status_after(*, ok: bool, retry_at: datetime | None) -> DeliveryStatus:
    """Where one attempt leaves a webhook delivery or an e-mail."""
    if ok:
        return "delivered"
    return "pending" if retry_at is not None else "failed"


def _settle(
    conn: Connection,
    table: Table,
    claimed: ClaimedDelivery | ClaimedMail,
    status: DeliveryStatus,
    retry_at: datetime | None,
    **recorded: Any,
) -> bool:
    """Release a claimed row of `table` with its new `status` (and any `recorded` columns);
    False when the claim was lost (its lease ran out and another worker took it over)."""
    now = _utcnow()
    changed = conn.execute(
        update(table)
        .where(
            table.c.id == claimed.id,
            table.c.claim_token == claimed.token,
            table.c.status == "pending",
        )
        .values(
            status=status,
            attempts=claimed.attempt,
            next_attempt_at=retry_at if retry_at is not None else now,
            claim_token=None,
            claimed_until=None,
            finished_at=None if status == "pending" else now,
            **recorded,
        )
    ).rowcount
    return bool(changed)


# -- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryWrite:
    """A new watchlist entry, its features computed."""

    key_id: int
    platform_key: str | None
    handle_key: str | None
    profile_id: int | None
    identity: dict[str, Any]
    display_name: str | None
    name_key: str
    handle_norm: str
    bio: str | None
    bio_vector: bytes | None
    avatar_hashes: bytes | None
    account_created_at: datetime | None
    followers_count: int | None
    verified: bool | None
    threshold: float
    webhook_url: str | None
    webhook_secret: str | None
    watch_key: str | None = None
    page_token_hash: str | None = None
    email: str | None = None
    email_token: str | None = None
    link_base_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class EntryRow(EntryWrite):
    id: int
    created_at: datetime
    email_confirmed_at: datetime | None = None


@dataclass(frozen=True)
class OutgoingMail:
    """An e-mail to send: to whom, what it says, and its one-click stop address."""

    kind: MailKind
    to_address: str
    subject: str
    body: str
    stop_url: str | None


@dataclass(frozen=True)
class ClaimedMail(OutgoingMail):
    """A mail delivery this worker may send now (see `ClaimedDelivery`)."""

    id: int
    attempt: int
    token: str


@dataclass(frozen=True)
class AlertWrite:
    """A match at or above an entry's threshold, to be stored unless it exists."""

    entry_id: int
    key_id: int
    profile_id: int
    profile: dict[str, Any]
    score: float
    label: Label
    signals: dict[str, float | None]
    reasons: list[str]
    likely_impersonator: Impersonator
    webhook_url: str | None


@dataclass(frozen=True)
class AlertRow:
    id: int
    entry_id: int
    key_id: int
    profile_id: int
    profile: dict[str, Any]
    score: float
    label: Label
    signals: dict[str, float | None]
    reasons: list[str]
    likely_impersonator: Impersonator
    created_at: datetime
    acknowledged_at: datetime | None
    answer: Answer | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    ok: bool


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    alert_id: int
    url: str
    status: DeliveryStatus
    attempts: list[AttemptRow]
    next_attempt_at: datetime | None  # None once delivered or failed for good
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker may send now: nobody else will until `claimed_until`."""

    id: int
    url: str
    payload: str
    secret: str
    attempt: int  # the number of the attempt about to be made, from 1
    token: str


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    ok: bool


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts a listing returns; `key_id` None means every key's."""

    key_id: int | None
    entry_id: int | None = None
    acknowledged: bool | None = None
    since: datetime | None = None
    before_id: int | None = None  # the cursor: alerts older than this one
    limit: int = 50
    offset: int = 0


_ENTRY_COLUMNS = [c for c in watchlist_entries.c]
_ALERT_COLUMNS = [c for c in alerts.c]


def _of_key(table: Table, key_id: int | None) -> ColumnElement[bool]:
    """The rows one API key owns; every key's with None (a caller with "watchlist.all")."""
    return true() if key_id is None else table.c.key_id == key_id


def _entry_row(row: Row[Any]) -> EntryRow:
    values = row._asdict()
    for name in ("bio_vector", "avatar_hashes"):
        if values[name] is not None and type(values[name]) is not bytes:
            values[name] = bytes(values[name])  # some drivers hand back memoryview
    return EntryRow(**values)


def _alert_row(row: Row[Any]) -> AlertRow:
    values = row._asdict()
    values["label"] = cast(Label, values["label"])
    values["likely_impersonator"] = cast(Impersonator, values["likely_impersonator"])
    values["answer"] = cast("Answer | None", values["answer"])
    return AlertRow(**values)


def _pending_mail(mail: OutgoingMail, *, entry_id: int, alert_id: int | None) -> dict[str, Any]:
    now = _utcnow()
    return {
        **mail.__dict__,
        "entry_id": entry_id,
        "alert_id": alert_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


class WatchlistStore:
    """Entries, alerts and deliveries in the store's database (SQLite or PostgreSQL).

    Thread-safe like `Store`: each call checks a connection out of the engine's pool; writes
    take SQLite's write lock at BEGIN, as the store's own writes do.
    """

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})
        self._dialect = store.engine.dialect.name
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        self._alert_insert = (
            dialect_insert(alerts)
            .on_conflict_do_nothing(index_elements=[alerts.c.entry_id, alerts.c.profile_id])
            .returning(*_ALERT_COLUMNS)
        )

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    # -- entries ----------------------------------------------------------------------------

    def add_entry(self, entry: EntryWrite) -> EntryRow:
        values = {**entry.__dict__, "created_at": _utcnow()}
        with self._writing() as conn:
            row = conn.execute(
                insert(watchlist_entries).values(**values).returning(*_ENTRY_COLUMNS)
            ).one()
        return _entry_row(row)

    def add_entry_once(
        self, entry: EntryWrite, *, confirmation: Callable[[EntryRow], OutgoingMail] | None
    ) -> tuple[EntryRow, bool]:
        """The key's entry of the same watch (`entry.watch_key`) if it has one, else `entry`
        stored now, with the e-mail `confirmation(stored)` makes queued in the same
        transaction; and whether the entry existed."""
        same = and_(
            watchlist_entries.c.key_id == entry.key_id,
            watchlist_entries.c.watch_key == entry.watch_key,
        )
        with self._writing() as conn:
            if self._dialect == "postgresql":
                # SQLite's write lock, taken at BEGIN, serialises registrations; PostgreSQL's
                # transactions would each see no entry and both insert.
                lock = int(entry.watch_key or "0", 16) & (2**63 - 1)
                conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
            found = conn.execute(
                select(*_ENTRY_COLUMNS).where(same).order_by(watchlist_entries.c.id).limit(1)
            ).first()
            if found is not None:
                return _entry_row(found), True
            values = {**entry.__dict__, "created_at": _utcnow()}
            stored = _entry_row(
                conn.execute(
                    insert(watchlist_entries).values(**values).returning(*_ENTRY_COLUMNS)
                ).one()
            )
            if confirmation is not None:
                conn.execute(
                    insert(mail_deliveries).values(
                        **_pending_mail(confirmation(stored), entry_id=stored.id, alert_id=None)
                    )
                )
        return stored, False

    def entry_by_page_token(self, token_hash: str) -> EntryRow | None:
        stmt = select(*_ENTRY_COLUMNS).where(watchlist_entries.c.page_token_hash == token_hash)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _entry_row(row)

    def entry_by_email_token(self, token: str) -> EntryRow | None:
        stmt = select(*_ENTRY_COLUMNS).where(watchlist_entries.c.email_token == token)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _entry_row(row)

    def replace_page_token(self, entry_id: int, *, old_hash: str, new_hash: str) -> bool:
        """Put a new private link in place of the old one; False when the old one no longer
        opens the entry (replaced meanwhile, or the entry erased)."""
        with self._writing() as conn:
            changed = conn.execute(
                update(watchlist_entries)
                .where(
                    watchlist_entries.c.id == entry_id,
                    watchlist_entries.c.page_token_hash == old_hash,
                )
                .values(page_token_hash=new_hash)
            ).rowcount
        return bool(changed)

    def confirm_email(self, entry_id: int) -> EntryRow | None:
        """Mark the entry's address confirmed (the first time counts)."""
        with self._writing() as conn:
            conn.execute(
                update(watchlist_entries)
                .where(
                    watchlist_entries.c.id == entry_id,
                    watchlist_entries.c.email.is_not(None),
                    watchlist_entries.c.email_confirmed_at.is_(None),
                )
                .values(email_confirmed_at=_utcnow())
            )
            row = conn.execute(
                select(*_ENTRY_COLUMNS).where(watchlist_entries.c.id == entry_id)
            ).first()
        return None if row is None else _entry_row(row)

    def entries(self, *, key_id: int | None) -> list[EntryRow]:
        """The entries of one key (every key's with None), oldest first."""
        stmt = (
            select(*_ENTRY_COLUMNS)
            .where(_of_key(watchlist_entries, key_id))
            .order_by(watchlist_entries.c.id)
        )
        with self._engine.connect() as conn:
            return [_entry_row(r) for r in conn.execute(stmt)]

    def entry(self, entry_id: int, *, key_id: int | None) -> EntryRow | None:
        stmt = select(*_ENTRY_COLUMNS).where(
            watchlist_entries.c.id == entry_id, _of_key(watchlist_entries, key_id)
        )
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _entry_row(row)

    def delete_entry(self, entry_id: int, *, key_id: int | None) -> bool:
        """Erase an entry with its alerts and deliveries; False when there is none to erase."""
        condition = and_(watchlist_entries.c.id == entry_id, _of_key(watchlist_entries, key_id))
        with self._writing() as conn:
            found = conn.execute(select(watchlist_entries.c.id).where(condition)).first()
            if found is None:
                return False
            # Children first: no reliance on the database enforcing ON DELETE CASCADE.
            alert_ids = select(alerts.c.id).where(alerts.c.entry_id == entry_id)
            delivery_ids = select(webhook_deliveries.c.id).where(
                webhook_deliveries.c.alert_id.in_(alert_ids)
            )
            conn.execute(
                delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(delivery_ids))
            )
            conn.execute(
                delete(webhook_deliveries).where(webhook_deliveries.c.alert_id.in_(alert_ids))
            )
            conn.execute(delete(mail_deliveries).where(mail_deliveries.c.entry_id == entry_id))
            conn.execute(delete(alerts).where(alerts.c.entry_id == entry_id))
            conn.execute(delete(watchlist_entries).where(condition))
        return True

    def version(self) -> tuple[int, int]:
        """(count, largest id) of all entries: changes whenever an entry is added or erased,
        since ids are never reused and entries never change."""
        stmt = select(func.count(), func.coalesce(func.max(watchlist_entries.c.id), 0))
        with self._engine.connect() as conn:
            count, top = conn.execute(stmt).one()
        return int(count), int(top)

    # -- alerts -----------------------------------------------------------------------------

    def add_alerts(
        self,
        new: Sequence[AlertWrite],
        *,
        payload: Callable[[AlertRow], str],
        mail: Callable[[AlertRow, EntryRow], OutgoingMail] | None = None,
    ) -> list[AlertRow]:
        """Store each alert unless its (entry, profile) pair already alerted; returns the ones
        stored now. An alert of an entry with a webhook gets a pending delivery whose body is
        `payload(alert)`, and, with `mail`, one of an entry whose e-mail address is confirmed
        now gets the e-mail `mail(alert, entry)`, in the same transaction."""
        if not new:
            return []
        now = _utcnow()
        created: list[AlertRow] = []
        with self._writing() as conn:
            mailed: dict[int, EntryRow] = {}
            if mail is not None:
                # Read here, not from the caller's snapshot: an address confirmed since counts.
                mailed = {
                    row.id: _entry_row(row)
                    for row in conn.execute(
                        select(*_ENTRY_COLUMNS).where(
                            watchlist_entries.c.id.in_({a.entry_id for a in new}),
                            watchlist_entries.c.email_confirmed_at.is_not(None),
                        )
                    )
                }
            for alert in new:
                values = {k: v for k, v in alert.__dict__.items() if k != "webhook_url"}
                row = conn.execute(
                    self._alert_insert.values(**values, created_at=now, acknowledged_at=None)
                ).first()
                if row is None:
                    continue  # alerted before (here or in another process)
                stored = _alert_row(row)
                created.append(stored)
                if alert.webhook_url:
                    conn.execute(
                        insert(webhook_deliveries).values(
                            alert_id=stored.id,
                            url=alert.webhook_url,
                            payload=payload(stored),
                            status="pending",
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
                entry = mailed.get(stored.entry_id)
                if mail is not None and entry is not None:
                    conn.execute(
                        insert(mail_deliveries).values(
                            **_pending_mail(
                                mail(stored, entry), entry_id=entry.id, alert_id=stored.id
                            )
                        )
                    )
        return created

    def answer(self, alert_id: int, *, entry_id: int, answer: Answer) -> AlertRow | None:
        """Record the person's word on one alert of their entry (a later answer replaces it)."""
        condition = and_(alerts.c.id == alert_id, alerts.c.entry_id == entry_id)
        with self._writing() as conn:
            conn.execute(
                update(alerts).where(condition).values(answer=answer, answered_at=_utcnow())
            )
            row = conn.execute(select(*_ALERT_COLUMNS).where(condition)).first()
        return None if row is None else _alert_row(row)

    def own_accounts(self, entry_ids: Sequence[int]) -> set[tuple[int, str, str]]:
        """(entry id, folded platform, folded handle) of every account a person marked as
        their own on one of these entries' alerts."""
        if not entry_ids:
            return set()
        stmt = select(alerts.c.entry_id, alerts.c.profile).where(
            alerts.c.entry_id.in_(set(entry_ids)), alerts.c.answer == "mine"
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return {
            (
                row.entry_id,
                str(row.profile.get("platform", "")).strip().casefold(),
                str(row.profile.get("handle", "")).strip().lstrip("@").casefold(),
            )
            for row in rows
        }

    def alerts(self, where: AlertFilter) -> list[AlertRow]:
        """Alerts matching `where`, newest first."""
        stmt = select(*_ALERT_COLUMNS).where(_of_key(alerts, where.key_id))
        if where.entry_id is not None:
            stmt = stmt.where(alerts.c.entry_id == where.entry_id)
        if where.acknowledged is True:
            stmt = stmt.where(alerts.c.acknowledged_at.is_not(None))
        elif where.acknowledged is False:
            stmt = stmt.where(alerts.c.acknowledged_at.is_(None))
        if where.since is not None:
            stmt = stmt.where(alerts.c.created_at >= where.since)
        if where.before_id is not None:
            stmt = stmt.where(alerts.c.id < where.before_id)
        stmt = stmt.order_by(alerts.c.id.desc()).limit(where.limit).offset(where.offset)
        with self._engine.connect() as conn:
            return [_alert_row(r) for r in conn.execute(stmt)]

    def alert(self, alert_id: int, *, key_id: int | None) -> AlertRow | None:
        stmt = select(*_ALERT_COLUMNS).where(alerts.c.id == alert_id, _of_key(alerts, key_id))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _alert_row(row)

    def acknowledge(self, alert_id: int, *, key_id: int | None) -> AlertRow | None:
        """Mark an alert acknowledged (the first time counts); None when there is no such alert."""
        condition = and_(alerts.c.id == alert_id, _of_key(alerts, key_id))
        with self._writing() as conn:
            conn.execute(
                update(alerts)
                .where(condition, alerts.c.acknowledged_at.is_(None))
                .values(acknowledged_at=_utcnow())
            )
            row = conn.execute(select(*_ALERT_COLUMNS).where(condition)).first()
        return None if row is None else _alert_row(row)

    # -- deliveries -------------------------------------------------------------------------

    def deliveries(self, alert_id: int) -> list[DeliveryRow]:
        """The deliveries of one alert, each with every attempt made, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.alert_id == alert_id)
                .order_by(webhook_deliveries.c.id)
            ).all()
            attempts: dict[int, list[AttemptRow]] = {row.id: [] for row in rows}
            if rows:
                for a in conn.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(list(attempts)))
                    .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.attempt)
                ):
                    attempts[a.delivery_id].append(
                        AttemptRow(
                            attempt=a.attempt,
                            started_at=a.started_at,
                            duration_ms=a.duration_ms,
                            status_code=a.status_code,
                            error=a.error,
                            ok=a.ok,
                        )
                    )
        return [
            DeliveryRow(
                id=row.id,
                alert_id=row.alert_id,
                url=row.url,
                status=cast(DeliveryStatus, row.status),
                attempts=attempts[row.id],
                next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
                created_at=row.created_at,
                finished_at=row.finished_at,
            )
            for row in rows
        ]

    def claim_due(self, *, limit: int, lease_s: float) -> list[ClaimedDelivery]:
        """Claim up to `limit` pending deliveries that are due and not claimed by anyone else
        (`_claim_due`)."""
        columns = webhook_deliveries.c
        rows, token = self._claim_due(
            webhook_deliveries,
            [columns.id, columns.url, columns.payload, columns.attempts, columns.alert_id],
            limit=limit,
            lease_s=lease_s,
        )
        if not rows:
            return []
        with self._engine.connect() as conn:
            secrets_of = dict(
                conn.execute(
                    select(alerts.c.id, watchlist_entries.c.webhook_secret)
                    .join(watchlist_entries, watchlist_entries.c.id == alerts.c.entry_id)
                    .where(alerts.c.id.in_([row.alert_id for row in rows]))
                ).all()
            )
        return [
            ClaimedDelivery(
                id=row.id,
                url=row.url,
                payload=row.payload,
                secret=secrets_of.get(row.alert_id) or "",
                attempt=row.attempts + 1,
                token=token,
            )
            for row in rows
        ]

    def _claim_due(
        self, table: Table, columns: list[Any], *, limit: int, lease_s: float
    ) -> tuple[list[Row[Any]], str]:
        """Claim up to `limit` pending rows of `table` (webhook deliveries or e-mails) that are
        due and not claimed by anyone else; the rows read (`columns`) and the claim's token.

        The claim is one write transaction: PostgreSQL skips rows another worker has locked
        (FOR UPDATE SKIP LOCKED); SQLite's write lock, taken at BEGIN, serialises claimers. A
        claim lasts `lease_s` (more than one attempt can take), so a worker that died mid-send
        releases its rows by itself.
        """
        now = _utcnow()
        token = secrets.token_hex(16)
        due = (
            select(*columns)
            .where(
                table.c.status == "pending",
                table.c.next_attempt_at <= now,
                or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
            )
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        # Most polls find nothing: ask without the write lock first, so an idle delivery loop
        # never makes SQLite writers (ingest) wait.
        with self._engine.connect() as conn:
            if conn.execute(due.with_only_columns(table.c.id)).first() is None:
                return [], token
        if self._dialect == "postgresql":
            due = due.with_for_update(skip_locked=True, of=table)
        with self._writing() as conn:
            rows = list(conn.execute(due).all())
            if rows:
                conn.execute(
                    update(table)
                    .where(table.c.id.in_([row.id for row in rows]))
                    .values(claim_token=token, claimed_until=now + timedelta(seconds=lease_s))
                )
        return rows, token

    def record_attempt(
        self,
        claimed: ClaimedDelivery,
        result: AttemptResult,
        *,
        retry_at: datetime | None,
    ) -> DeliveryStatus | None:
        """Log one attempt and move the delivery on: delivered, pending until `retry_at`, or
        failed for good (no `retry_at`). Returns the new status, or None when the claim was
        lost (the lease ran out and another worker took over): then nothing is written."""
        status = _status_after(ok=result.ok, retry_at=retry_at)
        with self._writing() as conn:
            if not _settle(conn, webhook_deliveries, claimed, status, retry_at):
                return None
            conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=claimed.id,
                    attempt=claimed.attempt,
                    started_at=result.started_at,
                    duration_ms=result.duration_ms,
                    status_code=result.status_code,
                    error=result.error,
                    ok=result.ok,
                )
            )
        return status

    # -- e-mails ----------------------------------------------------------------------------

    def mails(self, entry_id: int) -> list[tuple[MailKind, DeliveryStatus]]:
        """The kind and status of every e-mail queued for one entry, oldest first."""
        stmt = (
            select(mail_deliveries.c.kind, mail_deliveries.c.status)
            .where(mail_deliveries.c.entry_id == entry_id)
            .order_by(mail_deliveries.c.id)
        )
        with self._engine.connect() as conn:
            return [
                (cast(MailKind, row.kind), cast(DeliveryStatus, row.status))
                for row in conn.execute(stmt)
            ]

    def claim_due_mail(self, *, limit: int, lease_s: float) -> list[ClaimedMail]:
        """Claim up to `limit` pending e-mails that are due, as `claim_due` does deliveries."""
        rows, token = self._claim_due(
            mail_deliveries, list(mail_deliveries.c), limit=limit, lease_s=lease_s
        )
        return [
            ClaimedMail(
                kind=cast(MailKind, row.kind),
                to_address=row.to_address,
                subject=row.subject,
                body=row.body,
                stop_url=row.stop_url,
                id=row.id,
                attempt=row.attempts + 1,
                token=token,
            )
            for row in rows
        ]

    def record_mail_attempt(
        self, claimed: ClaimedMail, *, error: str | None, retry_at: datetime | None
    ) -> DeliveryStatus | None:
        """Move an e-mail on after one attempt: sent (no `error`), pending until `retry_at`,
        or failed for good; None when the claim was lost (nothing is written then)."""
        status = _status_after(ok=error is None, retry_at=retry_at)
        with self._writing() as conn:
            changed = _settle(conn, mail_deliveries, claimed, status, retry_at, last_error=error)
        return status if changed else None
