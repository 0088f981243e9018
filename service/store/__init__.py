"""The store: profiles, avatar bytes and the change log (SQLite or PostgreSQL)."""

from service.store.store import (
    AvatarBlob,
    Change,
    ProfileRow,
    ProfileWrite,
    Store,
    UpsertOutcome,
)

__all__ = ["AvatarBlob", "Change", "ProfileRow", "ProfileWrite", "Store", "UpsertOutcome"]
