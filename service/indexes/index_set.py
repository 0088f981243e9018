"""The set of derived indexes a check asks for candidates, saved atomically with a manifest.

Everything here is rebuildable from the store: when saved files are missing or were built for
another model, dimension, backend or format, `IndexSet.load` returns None and the caller
rebuilds. The vector backend is chosen in `_backend_classes` and `_open_backend`, the one place
that reads `Settings.vector_backend`.

With FAISS each process holds its own copy in memory and saves it to files. With Milvus the
indexes live in collections every process shares: nothing is saved locally, the manifest and
the last applied change are a row in Milvus (`MilvusState`), and a process applies changes
only while it holds the store's index writer lock (`writer_lock.shared_index_writer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexers import avatar as avatar_hashing
from indexers import text
from indexers.compare import ProfileSide
from models.errors import ConfigurationError
from service.core.settings import Settings
from service.indexes.base import BinaryIndex, FloatIndex, NameIndex
from service.indexes.ngram import NgramIndex

if TYPE_CHECKING:
    from service.indexes.milvus_backend import MilvusConnection, MilvusState

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
AVATAR_FILE = "avatar.index"
BIO_FILE = "bio.index"
NAMES_FILE = "names.npz"


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (writer-preferring).

    Not reentrant: a thread must not take it again while holding it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a saved index set was built from; checked before it is trusted."""

    format_version: int
    vector_backend: str
    embedding_model: str
    bio_dim: int
    avatar_code_bytes: int
    profile_count: int
    last_change_seq: int
    saved_at: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _backend_classes(backend: str) -> tuple[type[Any], type[Any]]:
    """(binary index class, float index class) for `backend`: the one place that picks it."""
    if backend == "faiss":
        try:
            from service.indexes.faiss_backend import FaissBinaryIndex, FaissFloatIndex
        except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
            raise ConfigurationError(
                "vector backend 'faiss' needs the faiss-cpu package: pip install faiss-cpu"
            ) from exc
        return FaissBinaryIndex, FaissFloatIndex
    if backend == "milvus":
        # pymilvus itself is imported when a connection is made, with an error naming the extra.
        from service.indexes.milvus_backend import MilvusBinaryIndex, MilvusFloatIndex

        return MilvusBinaryIndex, MilvusFloatIndex
    raise ConfigurationError(f"unknown vector backend {backend!r}; expected 'faiss' or 'milvus'")


@dataclasses.dataclass
class _Shared:
    """The parts of an index set that live on a Milvus server rather than in this process."""

    connection: MilvusConnection
    state: MilvusState


def _open_backend(
    settings: Settings, *, bio_dim: int, avatar_code_bytes: int
) -> tuple[Any, Any, Any, _Shared | None]:
    """(avatar, bio, names, shared parts or None) of the configured backend, empty for FAISS;
    for Milvus, connected to its collections (created when absent, left as they are else)."""
    binary_cls, float_cls = _backend_classes(settings.vector_backend)
    if settings.vector_backend != "milvus":
        return binary_cls(avatar_code_bytes), float_cls(bio_dim), NgramIndex(), None
    from service.indexes.milvus_backend import MilvusConnection, MilvusNameIndex, MilvusState

    connection = MilvusConnection(
        settings.resolved_milvus_uri,
        token=settings.milvus_token,
        prefix=settings.milvus_collection_prefix,
    )
    try:
        return (
            binary_cls(avatar_code_bytes, connection=connection),
            float_cls(bio_dim, connection=connection),
            MilvusNameIndex(connection=connection),
            _Shared(connection, MilvusState(connection=connection)),
        )
    except connection.MilvusException as exc:
        connection.close()
        raise ConfigurationError(
            f"cannot open the Milvus collections at {settings.resolved_milvus_uri}: {exc}"
        ) from exc


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexSet:
    """The avatar, bio and name indexes of one store, guarded by one readers-writer lock.

    Callers wrap writes (add/remove/replace, and the `last_change_seq` update that goes with
    them) in `with index_set.writing():` and searches in `with index_set.reading():`, because
    FAISS must not add and search at the same time.

    `shared` sets (Milvus) are one copy for every process: write them only while holding
    `writer_lock.shared_index_writer`, after `sync_applied()`, and record each applied change
    with `mark_applied`, which stores it in Milvus beside the data.
    """

    def __init__(
        self,
        *,
        avatar: BinaryIndex,
        bio: FloatIndex,
        names: NameIndex,
        vector_backend: str,
        embedding_model: str,
        last_change_seq: int = 0,
        shared: _Shared | None = None,
    ) -> None:
        self.avatar = avatar
        self.bio = bio
        self.names = names
        self.vector_backend = vector_backend
        self.embedding_model = embedding_model
        self.last_change_seq = last_change_seq
        self._shared = shared
        self._lock = RWLock()
        self._save_lock = threading.Lock()  # two saves at once would delete each other's folder

    @classmethod
    def create(
        cls, *, settings: Settings, embedding_model: str, bio_dim: int, avatar_code_bytes: int
    ) -> IndexSet:
        """Indexes of the configured backend; ConfigurationError if it cannot be used.

        FAISS: empty, in memory. Milvus: connected to the shared collections, which are created
        if absent but not emptied (`reset` does that, under the writer lock), with
        `last_change_seq` 0 until `sync_applied` reads what they hold.
        """
        avatar, bio, names, shared = _open_backend(
            settings, bio_dim=bio_dim, avatar_code_bytes=avatar_code_bytes
        )
        return cls(
            avatar=avatar,
            bio=bio,
            names=names,
            vector_backend=settings.vector_backend,
            embedding_model=embedding_model,
            shared=shared,
        )

    @classmethod
    def in_memory(cls, *, embedding_model: str, bio_dim: int, avatar_code_bytes: int) -> IndexSet:
        """Empty FAISS indexes private to the caller, whatever the configured backend: for a
        scratch index (a clusters job's upload, keyed by position) that must never be shared."""
        binary_cls, float_cls = _backend_classes("faiss")
        return cls(
            avatar=binary_cls(avatar_code_bytes),
            bio=float_cls(bio_dim),
            names=NgramIndex(),
            vector_backend="faiss",
            embedding_model=embedding_model,
        )

    @property
    def shared(self) -> bool:
        """True when the indexes live on a server every process shares (Milvus)."""
        return self._shared is not None

    def sync_applied(self) -> bool:
        """Take `last_change_seq` from the shared indexes themselves (what the last writer,
        in any process, applied); False when they hold no manifest, so are not trustworthy
        (never built, or a rebuild stopped midway) and must be rebuilt. Always True for
        indexes of this process alone."""
        if self._shared is None:
            return True
        manifest = self._shared.state.read()
        if manifest is None or not isinstance(manifest.get("last_change_seq"), int):
            return False
        self.last_change_seq = int(manifest["last_change_seq"])
        return True

    def mark_applied(self, seq: int) -> None:
        """Record that every change up to `seq` was applied; shared indexes store it beside
        their data, so a crash before this only replays a suffix (idempotent, in order)."""
        self.last_change_seq = seq
        if self._shared is not None:
            self._shared.state.write(dataclasses.asdict(self.manifest()))

    def reset(self) -> None:
        """Empty every index. Shared indexes drop their manifest first, so a rebuild that
        stops midway leaves collections that no process trusts."""
        if self._shared is not None:
            self._shared.state.clear()
            for index in (self.avatar, self.bio, self.names):
                index.reset()  # type: ignore[union-attr]
        else:
            binary_cls, float_cls = _backend_classes(self.vector_backend)
            self.avatar = binary_cls(self.avatar.code_bytes)
            self.bio = float_cls(self.bio.dim)
            self.names = NgramIndex()
        self.last_change_seq = 0

    def close(self) -> None:
        """Release the connection of shared indexes (nothing to do for FAISS)."""
        if self._shared is not None:
            self._shared.connection.close()

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Shared lock for searches: many at once, none during a write."""
        return self._lock.reading()

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock for adds, removes and replaces."""
        return self._lock.writing()

    def add_sides(self, sides: Iterable[tuple[int, ProfileSide]]) -> None:
        """Add each (id, side) to every index its fields belong in, one call per index (the
        caller holds the write lock)."""
        avatar_ids: list[int] = []
        avatar_codes: list[np.ndarray] = []
        bio_ids: list[int] = []
        bio_vectors: list[np.ndarray] = []
        name_ids: list[int] = []
        name_keys: list[np.ndarray] = []
        name_texts: list[tuple[str, str]] = []
        for key, side in sides:
            if side.avatar_hashes is not None:
                codes = avatar_hashing.index_codes(side.avatar_hashes)
                avatar_codes.append(codes)
                avatar_ids.extend([key] * len(codes))
            if side.bio_vector is not None:
                bio_ids.append(key)
                bio_vectors.append(side.bio_vector)
            if side.name_key or side.handle_norm:
                name_ids.append(key)
                name_keys.append(text.candidate_keys(side.name_key, side.handle_norm))
                name_texts.append((side.name_key, side.handle_norm))
        if avatar_codes:
            self.avatar.add(np.asarray(avatar_ids, dtype=np.int64), np.concatenate(avatar_codes))
        if bio_vectors:
            self.bio.add(np.asarray(bio_ids, dtype=np.int64), np.stack(bio_vectors))
        if name_ids:
            self.names.add_many(np.asarray(name_ids, dtype=np.int64), name_keys, name_texts)

    @property
    def profile_count(self) -> int:
        """Profiles indexed; every profile has a handle, so the name index holds them all."""
        return len(self.names)

    def manifest(self) -> Manifest:
        return Manifest(
            format_version=FORMAT_VERSION,
            vector_backend=self.vector_backend,
            embedding_model=self.embedding_model,
            bio_dim=int(self.bio.dim),
            avatar_code_bytes=int(self.avatar.code_bytes),
            profile_count=self.profile_count,
            last_change_seq=self.last_change_seq,
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: Path) -> Manifest:
        """Write every index and the manifest so that a crash at any point leaves a loadable set.

        `directory` is a symlink to a versioned sibling folder. The new version is written
        into a fresh sibling, fsynced, manifest last, then the symlink is swapped with
        `os.replace` (atomic); the previous version is deleted only after that.
        Searches may run meanwhile; writes wait. One process saves a given directory at a time.

        Shared (Milvus) indexes write nothing: their collections persist, and `mark_applied`
        records the manifest in Milvus under the writer lock (a save here, outside it, could
        record an older change than another process's last).
        """
        if self._shared is not None:
            return self.manifest()
        with self._save_lock:
            return self._save(Path(directory))

    def _save(self, directory: Path) -> Manifest:
        parent = directory.parent
        parent.mkdir(parents=True, exist_ok=True)
        with self.writing():
            self.names.compact()  # so the save under the read lock needs no merge
        target = parent / f"{directory.name}.{uuid.uuid4().hex[:12]}"
        with self.reading():
            manifest = self.manifest()
            try:
                target.mkdir()
                self.avatar.save(target / AVATAR_FILE)
                self.bio.save(target / BIO_FILE)
                self.names.save(target / NAMES_FILE)
                for name in (AVATAR_FILE, BIO_FILE, NAMES_FILE):
                    _fsync_path(target / name)
                manifest_tmp = target / (MANIFEST + ".tmp")
                manifest_tmp.write_text(manifest.to_json(), encoding="utf-8")
                _fsync_path(manifest_tmp)
                os.replace(manifest_tmp, target / MANIFEST)
                _fsync_path(target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        self._swap_in(directory, target)
        logger.info(
            "saved indexes to %s: %d profiles, change seq %d",
            target,
            manifest.profile_count,
            manifest.last_change_seq,
        )
        return manifest

    @staticmethod
    def _swap_in(directory: Path, target: Path) -> None:
        parent = directory.parent
        link_tmp = parent / f".{directory.name}.link-{uuid.uuid4().hex[:12]}"
        os.symlink(target.name, link_tmp)
        if directory.is_dir() and not directory.is_symlink():
            # A plain folder (from an older layout or a hand copy) cannot be swapped
            # atomically; move it aside. A crash right here only costs a rebuild.
            directory.rename(parent / f"{directory.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(link_tmp, directory)
        _fsync_path(parent)
        # Drop every other version, including leftovers of saves that crashed.
        for sibling in parent.glob(f"{directory.name}.*"):
            if sibling != target and sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
        for stale_link in parent.glob(f".{directory.name}.link-*"):
            with contextlib.suppress(OSError):
                stale_link.unlink()

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        settings: Settings,
        embedding_model: str,
        bio_dim: int,
        avatar_code_bytes: int,
    ) -> IndexSet | None:
        """The saved set, or None (with a logged reason) when absent, foreign or unreadable.

        None means "rebuild from the store", never an error: indexes are derived data.
        For Milvus the manifest is read from the server (`directory` is not used); a server
        that cannot be reached is a ConfigurationError.
        """
        if settings.vector_backend == "milvus":
            return cls._load_shared(
                settings=settings,
                embedding_model=embedding_model,
                bio_dim=bio_dim,
                avatar_code_bytes=avatar_code_bytes,
            )
        # Read manifest and files from one concrete version, even if a save swaps the link.
        directory = Path(directory).resolve()
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            logger.info("no saved indexes at %s", directory)
            return None
        try:
            manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("unreadable index manifest %s: %s", manifest_path, exc)
            return None
        if not _matches(
            manifest,
            directory,
            vector_backend=settings.vector_backend,
            embedding_model=embedding_model,
            bio_dim=bio_dim,
            avatar_code_bytes=avatar_code_bytes,
        ):
            return None
        binary_cls, float_cls = _backend_classes(settings.vector_backend)
        try:
            avatar = binary_cls.load(directory / AVATAR_FILE)
            bio = float_cls.load(directory / BIO_FILE)
            names = NgramIndex.load(directory / NAMES_FILE)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            logger.warning("unreadable index files in %s: %s; rebuild needed", directory, exc)
            return None
        if avatar.code_bytes != avatar_code_bytes or bio.dim != bio_dim:
            logger.warning("index files in %s disagree with their manifest", directory)
            return None
        if len(names) != manifest.profile_count:
            logger.warning(
                "name index in %s holds %d profiles, manifest says %d; rebuild needed",
                directory,
                len(names),
                manifest.profile_count,
            )
            return None
        logger.info(
            "loaded indexes from %s: %d profiles, change seq %d",
            directory,
            manifest.profile_count,
            manifest.last_change_seq,
        )
        return cls(
            avatar=avatar,
            bio=bio,
            names=names,
            vector_backend=manifest.vector_backend,
            embedding_model=manifest.embedding_model,
            last_change_seq=manifest.last_change_seq,
        )

    @classmethod
    def _load_shared(
        cls, *, settings: Settings, embedding_model: str, bio_dim: int, avatar_code_bytes: int
    ) -> IndexSet | None:
        from service.indexes.milvus_backend import MilvusConnection, MilvusState

        where = f"Milvus at {settings.resolved_milvus_uri}"
        probe = MilvusConnection(
            settings.resolved_milvus_uri,
            token=settings.milvus_token,
            prefix=settings.milvus_collection_prefix,
        )
        try:
            kinds = ("avatar", "bio", "names", "state")
            missing = [k for k in kinds if not probe.client.has_collection(probe.name(k))]
            data = None if missing else MilvusState(connection=probe).read()
        finally:
            probe.close()
        if missing or data is None:
            logger.info("no index manifest in %s (missing: %s)", where, missing or "manifest")
            return None
        try:
            manifest = Manifest.from_json(json.dumps(data))
        except TypeError as exc:
            logger.warning("unreadable index manifest in %s: %s", where, exc)
            return None
        if not _matches(
            manifest,
            where,
            vector_backend="milvus",
            embedding_model=embedding_model,
            bio_dim=bio_dim,
            avatar_code_bytes=avatar_code_bytes,
        ):
            return None
        index_set = cls.create(
            settings=settings,
            embedding_model=embedding_model,
            bio_dim=bio_dim,
            avatar_code_bytes=avatar_code_bytes,
        )
        index_set.last_change_seq = manifest.last_change_seq
        logger.info(
            "opened indexes in %s: %d profiles, change seq %d",
            where,
            manifest.profile_count,
            manifest.last_change_seq,
        )
        return index_set


def _matches(manifest: Manifest, where: object, **built_for: Any) -> bool:
    """Whether indexes saved with `manifest` were built for this format and `built_for` (backend,
    model, dimensions); if not, says which fields differ, as (saved, expected)."""
    expected = {"format_version": FORMAT_VERSION, **built_for}
    mismatched = {
        k: (getattr(manifest, k), v) for k, v in expected.items() if getattr(manifest, k) != v
    }
    if mismatched:
        logger.warning(
            "indexes in %s do not match (field: (saved, expected)) %s; rebuild needed",
            where,
            mismatched,
        )
    return not mismatched
