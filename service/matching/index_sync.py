"""Keeping the indexes a faithful copy of the store.

Every write goes to the database first (the acknowledgement); the indexes then follow the
store's change log, from the last change they applied. The same catch-up runs at start, so a
process killed mid-ingest loses nothing it acknowledged.

Indexes are of one of two kinds, chosen once by `open_index_sync`:
- local (FAISS): this process's own copy, saved to the data folder now and then; a check first
  applies what other processes wrote to the store;
- shared (Milvus): one copy for every process, written by one process at a time under the
  store's writer lock; a write is applied to them before it is acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from indexers import avatar as avatar_hashing
from service.core.settings import Settings
from service.indexes import IndexSet
from service.indexes.writer_lock import shared_index_writer
from service.matching.profile_sides import side_of_row
from service.store import ProfileRow, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSpec:
    """What the indexes are built for: a saved set for another model or shape is rebuilt."""

    settings: Settings
    embedding_model: str
    bio_dim: int

    def create(self) -> IndexSet:
        return IndexSet.create(
            settings=self.settings,
            embedding_model=self.embedding_model,
            bio_dim=self.bio_dim,
            avatar_code_bytes=avatar_hashing.CODE_BYTES,
        )

    def load(self) -> IndexSet | None:
        return IndexSet.load(
            self.settings.index_dir,
            settings=self.settings,
            embedding_model=self.embedding_model,
            bio_dim=self.bio_dim,
            avatar_code_bytes=avatar_hashing.CODE_BYTES,
        )


def open_index_sync(
    settings: Settings, store: Store, *, embedding_model: str, bio_dim: int, save_indexes: bool
) -> IndexSync:
    """The saved indexes, opened and brought up to the store (rebuilt when stale or absent).

    `save_indexes=False` keeps local indexes in memory only: for processes (scan workers)
    that share a data folder with the server, which alone saves them.
    """
    kind: type[IndexSync] = (
        SharedIndexSync if settings.vector_backend == "milvus" else LocalIndexSync
    )
    spec = IndexSpec(settings, embedding_model, bio_dim)
    # Shared indexes are opened under the writer lock: their collections are created there
    # when absent (or dropped and made again when of another shape), and processes starting
    # together on an empty Milvus would race to do it.
    with kind.writer_of(store):
        loaded = spec.load()
        opened = loaded or spec.create()
    sync = kind(store, opened, spec=spec, saves_indexes=save_indexes)
    if loaded is None or loaded.last_change_seq > store.last_change_seq():
        # Absent, or saved from another (or a restored older) database: rebuild from truth.
        sync.rebuild_unless_current()
    else:
        with sync.write_lock:
            sync.catch_up()
    return sync


class IndexSync(ABC):
    """The indexes of a process and how they follow the store's change log."""

    def __init__(
        self, store: Store, indexes: IndexSet, *, spec: IndexSpec, saves_indexes: bool = True
    ) -> None:
        self.store = store
        self.indexes = indexes
        self.spec = spec
        self.saves_indexes = saves_indexes
        # Writes are serialised so the indexes apply the change log in order; checks never wait
        # on this lock, only (briefly) on the indexes' own write lock.
        self.write_lock = threading.Lock()
        self._unsaved_changes = 0
        self._replaced: list[Callable[[IndexSet], None]] = []

    @staticmethod
    def writer_of(store: Store) -> contextlib.AbstractContextManager[None]:
        """What lets this process write the indexes beside `write_lock`."""
        return contextlib.nullcontext()

    def when_replaced(self, listener: Callable[[IndexSet], None]) -> None:
        """Call `listener(indexes)` when a rebuild replaces the index set (under its lock)."""
        self._replaced.append(listener)

    @contextlib.contextmanager
    def write_then_apply(self) -> Iterator[None]:
        """Hold the write lock for a store write, then bring the indexes up to it."""
        with self.write_lock:
            yield
            self.catch_up()

    def close(self) -> None:
        with self.write_lock:
            if self._unsaved_changes:
                self._save()
            self.indexes.close()

    def reindex(self) -> int:
        """Rebuild every index from the store (the source of truth); returns the profile count."""
        with self.write_lock, self.writer_of(self.store):
            return self._rebuild()

    def rebuild_unless_current(self) -> None:
        """`reindex` at start."""
        with self.write_lock, self.writer_of(self.store):
            self._rebuild()

    def refresh(self) -> None:
        """Apply what other processes wrote to the store since (scan workers that ingest, a
        server next to workers), so this process's checks see it too."""
        if self.store.last_change_seq() == self.indexes.last_change_seq:
            return
        with self.write_lock:
            self.catch_up()

    @abstractmethod
    def see_other_writers(self) -> None:
        """Before a check: make the indexes show every write acknowledged before it, through
        whichever process."""

    @abstractmethod
    def catch_up(self) -> None:
        """Apply the store's change log to the indexes; call with the write lock held."""

    @abstractmethod
    def _fresh_for_rebuild(self) -> IndexSet:
        """The set a rebuild fills: a new one, or the shared one emptied in place."""

    def _rebuild(self) -> int:
        """`reindex` with `write_lock` and `writer_of(store)` held."""
        fresh = self._fresh_for_rebuild()
        fresh.last_change_seq = self.store.last_change_seq()
        count = 0
        for rows in self.store.iter_index_rows():
            _add_rows(fresh, rows)
            count += len(rows)
        self._replace(fresh)
        self._apply_changes()
        with fresh.writing():
            fresh.mark_applied(fresh.last_change_seq)  # shared: the manifest, written last
        self._save()
        logger.info("rebuilt indexes over %d profiles", count)
        return count

    def _replace(self, fresh: IndexSet, *, close_old: bool = False) -> None:
        with self.indexes.writing():
            if close_old:
                self.indexes.close()
            self.indexes = fresh
            for listener in self._replaced:
                listener(fresh)

    def _apply_changes(self) -> None:
        """The changes after `last_change_seq`, applied in order (see `catch_up`)."""
        while changes := self.store.changes_since(self.indexes.last_change_seq):
            last_op: dict[int, str] = {}
            for change in changes:
                last_op[change.profile_id] = change.op
            rows = self.store.get_many([pid for pid, op in last_op.items() if op == "upsert"])
            ids = np.fromiter(last_op, dtype=np.int64, count=len(last_op))
            with self.indexes.writing():
                self.indexes.avatar.remove(ids)
                self.indexes.bio.remove(ids)
                self.indexes.names.remove(ids)
                _add_rows(self.indexes, rows)
                self.indexes.mark_applied(changes[-1].seq)
            self._unsaved_changes += len(changes)

    def _save(self) -> None:
        if not self.saves_indexes:
            # Another process owns the saved files; the store's log is the durable copy.
            self._unsaved_changes = 0
            return
        # The index set locks itself while it saves (checks go on; writes wait).
        self.indexes.save(self.spec.settings.index_dir)
        self._unsaved_changes = 0


class LocalIndexSync(IndexSync):
    """Indexes of this process alone (FAISS), saved to the data folder now and then."""

    def see_other_writers(self) -> None:
        """First apply what any process wrote to the store, so a check sees every write
        acknowledged before it, through whichever API process. One cheap query (the newest
        change's seq) when nothing is new; otherwise the check waits for the catch-up (and for
        a write of this process in progress, which holds the same lock); saving the indexes is
        left to the next write or background refresh."""
        if self.store.last_change_seq() == self.indexes.last_change_seq:
            return
        with self.write_lock:
            self._apply_changes()

    def catch_up(self) -> None:
        self._apply_changes()
        # A save writes every index whole, so it waits for a tenth of the index in changes
        # too: then saving costs ingest the same share at any size, where a fixed interval
        # made it grow with the index (a fifth of ingest time at 300,000 profiles). A crash
        # replays at most that many changes from the store at the next start.
        if self._unsaved_changes >= max(
            self.spec.settings.index_save_every, self.indexes.profile_count // 10
        ):
            self._save()

    def _fresh_for_rebuild(self) -> IndexSet:
        return self.spec.create()


class SharedIndexSync(IndexSync):
    """One copy of the indexes for every process (Milvus), written by one process at a time,
    from the last change recorded in them by whichever process applied it, so the log is
    applied once, in order, and a deleted profile cannot come back from another process's
    late replay."""

    @staticmethod
    def writer_of(store: Store) -> contextlib.AbstractContextManager[None]:
        """The store-wide lock that lets one process write at a time."""
        return shared_index_writer(store.engine)

    def see_other_writers(self) -> None:
        """Nothing to do: a write is applied to shared indexes before it is acknowledged."""

    def rebuild_unless_current(self) -> None:
        """`reindex` at start, unless another process rebuilt the indexes while this one
        waited for the writer lock: several processes starting at once rebuild once."""
        with self.write_lock, self.writer_of(self.store):
            current = self.spec.load()
            if current is not None and current.last_change_seq <= self.store.last_change_seq():
                self._replace(current, close_old=True)
                self._apply_changes()
                return
            self._rebuild()

    def catch_up(self) -> None:
        with self.writer_of(self.store):
            if not self.indexes.sync_applied():
                self._rebuild()  # a rebuild stopped midway: nothing there is trustworthy
            else:
                self._apply_changes()

    def _fresh_for_rebuild(self) -> IndexSet:
        # One copy for every process: empty it in place (its manifest first, so a rebuild
        # that stops midway is redone), then fill it; checks meanwhile see fewer candidates.
        with self.indexes.writing():
            self.indexes.reset()
        return self.indexes


def _add_rows(indexes: IndexSet, rows: list[ProfileRow]) -> None:
    """Add stored profiles to every index (the caller holds the write lock)."""
    indexes.add_sides((row.id, side_of_row(row)) for row in rows)
