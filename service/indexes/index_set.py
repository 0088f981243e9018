"""The set of derived indexes a check asks for candidates, saved atomically with a manifest.

Everything here is rebuildable from the store: when saved files are missing or were built for
another model, dimension, backend or format, `IndexSet.load` returns None and the caller
rebuilds. The vector backend is chosen in `_backend_classes`, the one place that reads
`Settings.vector_backend`.
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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import ConfigurationError
from service.indexes.base import BinaryIndex, FloatIndex
from service.indexes.ngram import NgramIndex
from service.settings import Settings

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
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
        raise ConfigurationError(
            "vector backend 'milvus' is not available yet; "
            "it will need the extra: pip install 'clonefinder[milvus]'"
        )
    raise ConfigurationError(f"unknown vector backend {backend!r}; expected 'faiss'")


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
    """

    def __init__(
        self,
        *,
        avatar: BinaryIndex,
        bio: FloatIndex,
        names: NgramIndex,
        vector_backend: str,
        embedding_model: str,
        last_change_seq: int = 0,
    ) -> None:
        self.avatar = avatar
        self.bio = bio
        self.names = names
        self.vector_backend = vector_backend
        self.embedding_model = embedding_model
        self.last_change_seq = last_change_seq
        self._lock = RWLock()
        self._save_lock = threading.Lock()  # two saves at once would delete each other's folder

    @classmethod
    def create(
        cls, *, settings: Settings, embedding_model: str, bio_dim: int, avatar_code_bytes: int
    ) -> IndexSet:
        """Empty indexes for the configured backend; ConfigurationError if it cannot be used."""
        binary_cls, float_cls = _backend_classes(settings.vector_backend)
        return cls(
            avatar=binary_cls(avatar_code_bytes),
            bio=float_cls(bio_dim),
            names=NgramIndex(),
            vector_backend=settings.vector_backend,
            embedding_model=embedding_model,
        )

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Shared lock for searches: many at once, none during a write."""
        return self._lock.reading()

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock for adds, removes and replaces."""
        return self._lock.writing()

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
        """
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
        """
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
        expected = {
            "format_version": FORMAT_VERSION,
            "vector_backend": settings.vector_backend,
            "embedding_model": embedding_model,
            "bio_dim": bio_dim,
            "avatar_code_bytes": avatar_code_bytes,
        }
        mismatched = {
            k: (getattr(manifest, k), v) for k, v in expected.items() if getattr(manifest, k) != v
        }
        if mismatched:
            logger.warning(
                "saved indexes at %s do not match (field: (saved, expected)) %s; rebuild needed",
                directory,
                mismatched,
            )
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
