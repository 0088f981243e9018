"""The audit log in the store: an append-only hash chain of who did what to which case,
each entry signed with the service's Ed25519 key.

Each entry carries the SHA-256 of the one before (`prev_hash`) and its own `hash`, computed
over its sequence number, time, actor, action, target, details and `prev_hash`. So an entry
edited in the database no longer matches its hash, and one removed or moved breaks the link
of the entry after it; `service.cases.audit.verify_chain` finds both. A hash anyone can recompute,
though: someone who can write the database could rewrite an entry and every hash after it.
So each entry's hash is also signed (`signature`, by the key named in `key_fingerprint`), and
a rewritten chain needs the key too. Entries written before the log was signed have neither.
Entries are appended inside the transaction of the change they record, so a change and its
entry commit together.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    text,
)

from service.store.store import _WRITE_OPTION, Store
from service.store.tables import BigId, metadata

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# What an entry's signature covers starts with this, so that no other message the service
# signs (a bundle's manifest, an archive) can pass for an audit entry's.
SIGNED_PREFIX = b"clonefinder-audit-entry:v1:"
# pg_advisory_xact_lock key that serialises appends to the chain on PostgreSQL (SQLite's
# write lock, taken at BEGIN, does the same there).
_AUDIT_LOCK_KEY = 0x61756469

audit_log = Table(
    "audit_log",
    metadata,
    # Given explicitly (last + 1): it is part of what the entry's hash covers.
    Column("seq", BigId, primary_key=True, autoincrement=False),
    # The RFC 3339 text itself, exactly as hashed (a timestamp column could come back with
    # another precision or zone on another backend).
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),  # the API key's name, or "cli:USER"
    Column("key_id", Integer),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    # Canonical JSON text, exactly as hashed (PostgreSQL's JSONB would reorder it).
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Base64 Ed25519 signature of `signed_message(seq, hash)`; NULL in entries written before
    # the log was signed.
    Column("signature", Text),
    Column("key_fingerprint", Text),  # which key signed it (`SHA256:...`)
    UniqueConstraint("prev_hash"),
)


class EntrySigner(Protocol):
    """What signs new entries: the service's evidence key (`EvidenceSigner`)."""

    @property
    def fingerprint(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...

    def note_signing_began(self, seq: int) -> None: ...


@dataclass(frozen=True)
class Actor:
    """Who makes a change: an API key (its name and id) or a local command-line user."""

    name: str
    key_id: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    key_id: int | None
    action: str
    target: str
    details: str
    prev_hash: str
    hash: str
    signature: str | None = None
    key_fingerprint: str | None = None

    def expected_hash(self) -> str:
        """What this entry's hash must be, given its content and its `prev_hash`."""
        return entry_hash(
            seq=self.seq,
            at=self.at,
            actor=self.actor,
            key_id=self.key_id,
            action=self.action,
            target=self.target,
            details=self.details,
            prev_hash=self.prev_hash,
        )

    def document(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "key_id": self.key_id,
            "action": self.action,
            "target": self.target,
            "details": json.loads(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "signature": self.signature,
            "key_fingerprint": self.key_fingerprint,
        }


def canonical_json(value: Any) -> str:
    """One spelling of a JSON value (sorted keys, no spaces, UTF-8 as is): what is hashed."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def rfc3339(moment: datetime) -> str:
    """A UTC time as RFC 3339 text with microseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str,
    key_id: int | None,
    action: str,
    target: str,
    details: str,
    prev_hash: str,
) -> str:
    covered = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "key_id": key_id,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(covered).encode("utf-8")).hexdigest()


def signed_message(seq: int, digest: str) -> bytes:
    """What an entry's signature covers: its place and its hash (`digest`), which covers its
    content and, through `prev_hash`, every entry before it."""
    return SIGNED_PREFIX + f"{seq}:{digest}".encode()


def append_entry(
    conn: Connection,
    actor: Actor,
    action: str,
    target: str,
    details: dict[str, Any],
    *,
    signer: EntrySigner,
) -> AuditEntry:
    """Append one entry, signed by `signer`, in `conn`'s transaction (which must be a write
    transaction)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})
    last = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash, audit_log.c.signature)
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).first()
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last.seq) + 1, str(last.hash))
    if last is not None and last.signature is None:
        # Once per store, after an upgrade; more than once, someone removed signatures.
        logger.warning(
            "audit entry %d is unsigned: signing the log from entry %d on (entries written "
            "before the log was signed have no signature; if this store's log was already "
            "signed, its signatures were removed: run `clonefinder audit verify`)",
            last.seq,
            seq,
        )
    if last is None or last.signature is None:
        signer.note_signing_began(seq)
    at = rfc3339(datetime.now(UTC))
    text_details = canonical_json(details)
    digest = entry_hash(
        seq=seq,
        at=at,
        actor=actor.name,
        key_id=actor.key_id,
        action=action,
        target=target,
        details=text_details,
        prev_hash=prev_hash,
    )
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor.name,
        key_id=actor.key_id,
        action=action,
        target=target,
        details=text_details,
        prev_hash=prev_hash,
        hash=digest,
        signature=base64.b64encode(signer.sign(signed_message(seq, digest))).decode("ascii"),
        key_fingerprint=signer.fingerprint,
    )
    conn.execute(insert(audit_log).values(**entry.__dict__))
    return entry


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row.seq),
        at=row.at,
        actor=row.actor,
        key_id=row.key_id,
        action=row.action,
        target=row.target,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
        signature=row.signature,
        key_fingerprint=row.key_fingerprint,
    )


class AuditStore:
    """Appends to and reads the audit log of the store's database; `signer` signs what is
    appended (it loads its key only when it first signs, so a reader never touches it)."""

    def __init__(self, store: Store, *, signer: EntrySigner) -> None:
        self._engine = store.engine
        self._write_engine = store.engine.execution_options(**{_WRITE_OPTION: True})
        self._signer = signer

    def record(self, actor: Actor, action: str, target: str, details: dict[str, Any]) -> AuditEntry:
        """Append one entry in a transaction of its own (for events that change nothing else,
        such as an export)."""
        with self._write_engine.begin() as conn:
            return append_entry(conn, actor, action, target, details, signer=self._signer)

    def entries(self, *, batch_size: int = 1_000) -> Iterator[AuditEntry]:
        """Every entry in sequence order, read in batches (keyset paging)."""
        after = 0
        while True:
            stmt = (
                select(*audit_log.c)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(batch_size)
            )
            with self._engine.connect() as conn:
                batch = [_entry(row) for row in conn.execute(stmt)]
            if not batch:
                return
            yield from batch
            after = batch[-1].seq

    def head(self) -> AuditEntry | None:
        """The newest entry, or None on an empty log."""
        stmt = select(*audit_log.c).order_by(audit_log.c.seq.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _entry(row)

    def tail(self, *, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, oldest first."""
        stmt = select(*audit_log.c).order_by(audit_log.c.seq.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = [_entry(row) for row in conn.execute(stmt)]
        return rows[::-1]
