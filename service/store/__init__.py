"""The store: profiles, avatar bytes and the change log (SQLite or PostgreSQL)."""

# The audit log, cases and their captures (tables join `metadata` on import).
from service.store.audit import Actor, AuditEntry, AuditStore
from service.store.cases import CaseStore

# Idempotency keys of creating requests (the table joins `metadata` on import).
from service.store.idempotency import IdempotencyStore

# Bulk-scan jobs (tables join `metadata` on import).
from service.store.jobs import ChunkClaim, InputLine, JobRow, JobStore, ResultLine

# API keys (the table joins `metadata` on import, so migrations and queries see it).
from service.store.keys import KeyRow, KeyStore
from service.store.store import (
    AvatarBlob,
    Change,
    ComparableRow,
    ProfileRow,
    ProfileWrite,
    Store,
    UpsertOutcome,
)

# Watchlist entries, alerts and webhook deliveries (tables join `metadata` on import).
from service.store.watchlist import WatchlistStore

__all__ = ["AvatarBlob", "Change", "ProfileRow", "ProfileWrite", "Store", "UpsertOutcome"]
__all__ += ["KeyRow", "KeyStore"]
__all__ += ["ComparableRow"]
__all__ += ["ChunkClaim", "InputLine", "JobRow", "JobStore", "ResultLine"]
__all__ += ["WatchlistStore"]
__all__ += ["IdempotencyStore"]
__all__ += ["Actor", "AuditEntry", "AuditStore", "CaseStore"]
