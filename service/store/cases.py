"""Cases, their items, the items' captures and the captured avatars: tables and data access.

A case names a victim (a stored profile) and holds items, the accounts that impersonate it.
Every capture of an item is a new row that is never changed (the migration's triggers refuse
updates and deletes): its document is the canonical JSON that its SHA-256 covers, and the
avatars it names are kept, byte for byte, in `capture_avatars`, which a later re-ingest or
erasure of the profile does not touch. Every change here appends its audit entry in the same
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from models.profile import identity_key
from service.store.audit import Actor, EntrySigner, append_entry
from service.store.store import _WRITE_OPTION, AvatarBlob, Store, _utcnow
from service.store.tables import UTCDateTime, metadata

Status = Literal["open", "reported", "taken_down", "closed"]
STATUSES: tuple[Status, ...] = ("open", "reported", "taken_down", "closed")

capture_avatars = Table(
    "capture_avatars",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("mime", String(100), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The API key that opened the case; None for a case opened on the command line.
    Column("key_id", Integer),
    Column("title", Text, nullable=False),
    Column("victim_platform", Text, nullable=False),
    Column("victim_handle", Text, nullable=False),
    # No foreign key: the victim's profile may be erased; the captures keep what it was.
    Column("victim_profile_id", Integer, nullable=False),
    Column("notes", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_cases_key_id", cases.c.key_id)

case_items = Table(
    "case_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("platform", Text, nullable=False),
    Column("handle", Text, nullable=False),
    Column("platform_key", Text, nullable=False),
    Column("handle_key", Text, nullable=False),
    Column("profile_id", Integer),  # no foreign key: the profile may be erased later
    Column("source", Text, nullable=False),  # how it came into the case (its first capture)
    Column("notes", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("case_id", "platform_key", "handle_key"),
    sqlite_autoincrement=True,
)

case_captures = Table(
    "case_captures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=False),
    Column("item_id", Integer, ForeignKey("case_items.id"), nullable=False),
    Column("captured_at", UTCDateTime, nullable=False),
    Column("document", Text, nullable=False),  # canonical JSON, exactly what sha256 covers
    Column("sha256", String(64), nullable=False),
    Column("clone_avatar_sha256", String(64)),
    Column("victim_avatar_sha256", String(64)),
    sqlite_autoincrement=True,
)
Index("ix_case_captures_item_id", case_captures.c.item_id)
Index("ix_case_captures_case_id", case_captures.c.case_id)


@dataclass(frozen=True)
class CaseRow:
    id: int
    key_id: int | None
    title: str
    victim_platform: str
    victim_handle: str
    victim_profile_id: int
    notes: str
    status: Status
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ItemRow:
    id: int
    case_id: int
    platform: str
    handle: str
    profile_id: int | None
    source: str
    notes: str
    status: Status
    added_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CaptureRow:
    id: int
    case_id: int
    item_id: int
    captured_at: datetime
    document: str
    sha256: str
    clone_avatar_sha256: str | None
    victim_avatar_sha256: str | None

    def content(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.document)
        return parsed


@dataclass(frozen=True)
class NewCase:
    key_id: int | None
    title: str
    victim_platform: str
    victim_handle: str
    victim_profile_id: int
    notes: str


@dataclass(frozen=True)
class NewCapture:
    """One capture of an account, ready to store under its case (the item is found by the
    account's identity, or created)."""

    platform: str
    handle: str
    profile_id: int | None
    source: str
    captured_at: datetime
    document: str
    sha256: str
    clone_avatar: AvatarBlob | None
    victim_avatar: AvatarBlob | None


@dataclass(frozen=True)
class Captured:
    item: ItemRow
    capture: CaptureRow
    new_item: bool


_CASE_COLUMNS = [c for c in cases.c]
_ITEM_COLUMNS = [c for c in case_items.c if c.name not in ("platform_key", "handle_key")]
_CAPTURE_COLUMNS = [c for c in case_captures.c]


def _case_row(row: Any) -> CaseRow:
    values = row._asdict()
    values["status"] = cast(Status, values["status"])
    return CaseRow(**values)


def _item_row(row: Any) -> ItemRow:
    values = row._asdict()
    values["status"] = cast(Status, values["status"])
    return ItemRow(**values)


def _capture_row(row: Any) -> CaptureRow:
    return CaptureRow(**row._asdict())


def _of_key(key_id: int | None) -> ColumnElement[bool]:
    """The cases one API key owns; every case with None (admins and the command line)."""
    return true() if key_id is None else cases.c.key_id == key_id


class CaseStore:
    """Cases, items, captures and captured avatars in the store's database.

    Thread-safe like `Store`. Every write appends its audit entry, signed by `signer`, in the
    same transaction.
    """

    def __init__(self, store: Store, *, signer: EntrySigner) -> None:
        self._engine = store.engine
        self._signer = signer
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})
        dialect_insert = (
            postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert
        )
        self._avatar_insert = dialect_insert(capture_avatars).on_conflict_do_nothing(
            index_elements=[capture_avatars.c.sha256]
        )

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    # -- cases ------------------------------------------------------------------------------

    def create_case(self, actor: Actor, new: NewCase) -> CaseRow:
        now = _utcnow()
        with self._writing() as conn:
            row = conn.execute(
                insert(cases)
                .values(**new.__dict__, status="open", created_at=now, updated_at=now)
                .returning(*_CASE_COLUMNS)
            ).one()
            created = _case_row(row)
            append_entry(
                conn,
                actor,
                "case.create",
                f"case {created.id}",
                {
                    "title": created.title,
                    "victim": f"{created.victim_platform}/{created.victim_handle}",
                    "notes": created.notes,
                },
                signer=self._signer,
            )
        return created

    def cases(self, *, key_id: int | None) -> list[CaseRow]:
        stmt = select(*_CASE_COLUMNS).where(_of_key(key_id)).order_by(cases.c.id)
        with self._engine.connect() as conn:
            return [_case_row(r) for r in conn.execute(stmt)]

    def case(self, case_id: int, *, key_id: int | None) -> CaseRow | None:
        stmt = select(*_CASE_COLUMNS).where(cases.c.id == case_id, _of_key(key_id))
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _case_row(row)

    def update_case(
        self, actor: Actor, case_id: int, changes: dict[str, str], *, key_id: int | None
    ) -> CaseRow | None:
        """Set the given fields (title, notes, status); None when there is no such case."""
        with self._writing() as conn:
            before = conn.execute(
                select(*_CASE_COLUMNS).where(cases.c.id == case_id, _of_key(key_id))
            ).first()
            if before is None:
                return None
            old = _case_row(before)
            changed = {k: v for k, v in changes.items() if getattr(old, k) != v}
            if not changed:
                return old
            row = conn.execute(
                update(cases)
                .where(cases.c.id == case_id)
                .values(**changed, updated_at=_utcnow())
                .returning(*_CASE_COLUMNS)
            ).one()
            append_entry(
                conn,
                actor,
                "case.update",
                f"case {case_id}",
                {k: {"from": getattr(old, k), "to": v} for k, v in changed.items()},
                signer=self._signer,
            )
        return _case_row(row)

    # -- items and captures -------------------------------------------------------------------

    def add_capture(self, actor: Actor, case_id: int, new: NewCapture) -> Captured:
        """Store a capture of an account under its item in `case_id`, creating the item the
        first time the account is added. The caller has checked that the case is visible."""
        platform_key, handle_key = identity_key(new.platform, new.handle)
        now = _utcnow()
        with self._writing() as conn:
            found = conn.execute(
                select(*_ITEM_COLUMNS).where(
                    case_items.c.case_id == case_id,
                    case_items.c.platform_key == platform_key,
                    case_items.c.handle_key == handle_key,
                )
            ).first()
            new_item = found is None
            if found is None:
                found = conn.execute(
                    insert(case_items)
                    .values(
                        case_id=case_id,
                        platform=new.platform,
                        handle=new.handle,
                        platform_key=platform_key,
                        handle_key=handle_key,
                        profile_id=new.profile_id,
                        source=new.source,
                        notes="",
                        status="open",
                        added_at=now,
                        updated_at=now,
                    )
                    .returning(*_ITEM_COLUMNS)
                ).one()
            item = _item_row(found)
            blobs = {b.sha256: b for b in (new.clone_avatar, new.victim_avatar) if b is not None}
            if blobs:
                conn.execute(
                    self._avatar_insert,
                    [
                        {
                            "sha256": blob.sha256,
                            "data": blob.data,
                            "mime": blob.mime,
                            "width": blob.width,
                            "height": blob.height,
                            "created_at": now,
                        }
                        for blob in blobs.values()
                    ],
                )
            capture = _capture_row(
                conn.execute(
                    insert(case_captures)
                    .values(
                        case_id=case_id,
                        item_id=item.id,
                        captured_at=new.captured_at,
                        document=new.document,
                        sha256=new.sha256,
                        clone_avatar_sha256=(
                            new.clone_avatar.sha256 if new.clone_avatar is not None else None
                        ),
                        victim_avatar_sha256=(
                            new.victim_avatar.sha256 if new.victim_avatar is not None else None
                        ),
                    )
                    .returning(*_CAPTURE_COLUMNS)
                ).one()
            )
            conn.execute(update(cases).where(cases.c.id == case_id).values(updated_at=now))
            details: dict[str, Any] = {
                "item": item.id,
                "account": f"{item.platform}/{item.handle}",
                "capture": capture.id,
                "capture_sha256": capture.sha256,
                "source": new.source,
            }
            action = "item.add" if new_item else "item.capture"
            append_entry(conn, actor, action, f"case {case_id}", details, signer=self._signer)
        return Captured(item=item, capture=capture, new_item=new_item)

    def items(self, case_id: int) -> list[ItemRow]:
        stmt = select(*_ITEM_COLUMNS).where(case_items.c.case_id == case_id)
        with self._engine.connect() as conn:
            return [_item_row(r) for r in conn.execute(stmt.order_by(case_items.c.id))]

    def item(self, case_id: int, item_id: int) -> ItemRow | None:
        stmt = select(*_ITEM_COLUMNS).where(
            case_items.c.case_id == case_id, case_items.c.id == item_id
        )
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _item_row(row)

    def update_item(
        self, actor: Actor, case_id: int, item_id: int, changes: dict[str, str]
    ) -> ItemRow | None:
        """Set an item's notes or status; None when the case has no such item."""
        condition = (case_items.c.case_id == case_id) & (case_items.c.id == item_id)
        with self._writing() as conn:
            before = conn.execute(select(*_ITEM_COLUMNS).where(condition)).first()
            if before is None:
                return None
            old = _item_row(before)
            changed = {k: v for k, v in changes.items() if getattr(old, k) != v}
            if not changed:
                return old
            now = _utcnow()
            row = conn.execute(
                update(case_items)
                .where(condition)
                .values(**changed, updated_at=now)
                .returning(*_ITEM_COLUMNS)
            ).one()
            conn.execute(update(cases).where(cases.c.id == case_id).values(updated_at=now))
            details: dict[str, Any] = {"item": item_id}
            details.update({k: {"from": getattr(old, k), "to": v} for k, v in changed.items()})
            append_entry(
                conn, actor, "item.update", f"case {case_id}", details, signer=self._signer
            )
        return _item_row(row)

    def captures(self, case_id: int, *, item_id: int | None = None) -> list[CaptureRow]:
        """The captures of a case (or of one of its items), oldest first."""
        stmt = select(*_CAPTURE_COLUMNS).where(case_captures.c.case_id == case_id)
        if item_id is not None:
            stmt = stmt.where(case_captures.c.item_id == item_id)
        with self._engine.connect() as conn:
            return [_capture_row(r) for r in conn.execute(stmt.order_by(case_captures.c.id))]

    def avatars(self, shas: Sequence[str]) -> dict[str, AvatarBlob]:
        """The captured avatars with these digests, by digest."""
        wanted = sorted(set(shas))
        if not wanted:
            return {}
        stmt = select(
            capture_avatars.c.sha256,
            capture_avatars.c.data,
            capture_avatars.c.mime,
            capture_avatars.c.width,
            capture_avatars.c.height,
        ).where(capture_avatars.c.sha256.in_(wanted))
        with self._engine.connect() as conn:
            return {
                row.sha256: AvatarBlob(
                    sha256=row.sha256,
                    data=bytes(row.data),
                    mime=row.mime,
                    width=row.width,
                    height=row.height,
                )
                for row in conn.execute(stmt)
            }
