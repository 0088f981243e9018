"""Whether a server can answer: its engine loaded, its store reachable, its indexes caught up
with the store's change log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.matching.engine import Engine

# Changes the indexes may trail the store by and still be ready. Writes by other processes
# (scan workers, other API replicas) reach this one's indexes within a poll of its worker
# thread, or at the next check; a few seconds of ingest is not "behind".
READY_INDEX_LAG = 10_000


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not_ready", "checks": self.checks}


def readiness(engine: Engine | None) -> Readiness:
    """Each check with `ok` and what it found; not ready when any is not ok."""
    if engine is None:
        message = "the engine (store, model, indexes) is not loaded yet"
        return Readiness(False, {"engine": {"ok": False, "message": message}})
    checks: dict[str, dict[str, Any]] = {
        "model": {"ok": engine.embedder.dim > 0, "name": engine.embedder.name},
    }
    try:
        store_seq = engine.store.last_change_seq()
    except Exception as exc:
        checks["store"] = {"ok": False, "message": f"unreachable: {type(exc).__name__}"}
        checks["indexes"] = {"ok": False, "message": "unknown while the store is unreachable"}
        return Readiness(False, checks)
    checks["store"] = {"ok": True, "last_change_seq": store_seq}
    with engine.indexes.reading():
        index_seq = engine.indexes.last_change_seq
    behind = max(0, store_seq - index_seq)
    checks["indexes"] = {
        "ok": behind <= READY_INDEX_LAG,
        "last_change_seq": index_seq,
        "behind": behind,
    }
    if behind > READY_INDEX_LAG:
        checks["indexes"]["message"] = f"{behind} changes behind the store"
    return Readiness(all(check["ok"] for check in checks.values()), checks)
