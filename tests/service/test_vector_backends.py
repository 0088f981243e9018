"""One test suite for every vector backend: FAISS (embedded), Milvus (milvus-lite in process,
and a real server when CLONEFINDER_TEST_MILVUS_URI names one).

The backend-level tests check the contract the matcher relies on (`BinaryIndex`, `FloatIndex`,
the name index's `search`); the index-set and engine tests check what only a shared index has:
the manifest and applied change kept in Milvus, one writer at a time, and that a deleted
profile never comes back, whichever process applied what.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import ConfigurationError
from service.core.settings import Settings
from service.indexes import BinaryIndex, FloatIndex, IndexSet, NgramIndex
from service.indexes.faiss_backend import EMPTY_DISTANCE, FaissBinaryIndex, FaissFloatIndex
from service.indexes.writer_lock import shared_index_writer

CODE_BYTES = 8
DIM = 16
SERVER_URI = os.environ.get("CLONEFINDER_TEST_MILVUS_URI")

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One milvus-lite file per module: its in-process server starts once (each test isolates
    itself with a collection prefix of its own)."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


BACKENDS = [
    "faiss",
    "milvus-lite",
    pytest.param(
        "milvus-server",
        marks=pytest.mark.skipif(not SERVER_URI, reason="CLONEFINDER_TEST_MILVUS_URI not set"),
    ),
]
MILVUS_BACKENDS = BACKENDS[1:]


@dataclass
class Backend:
    """Makes the indexes of one backend, each test's Milvus collections under a fresh prefix."""

    name: str
    uri: str | None
    prefix: str

    @property
    def is_milvus(self) -> bool:
        return self.uri is not None

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        if self.uri is None:
            return Settings(data_dir=data_dir, **overrides)
        params: dict[str, Any] = {
            "vector_backend": "milvus",
            "milvus_uri": self.uri,
            "milvus_collection_prefix": self.prefix,
        }
        return Settings(data_dir=data_dir, **{**params, **overrides})

    def connection(self) -> Any:
        from service.indexes.milvus_backend import MilvusConnection

        assert self.uri is not None
        return MilvusConnection(self.uri, prefix=self.prefix)

    def binary(self) -> BinaryIndex:
        if self.uri is None:
            return FaissBinaryIndex(CODE_BYTES)
        from service.indexes.milvus_backend import MilvusBinaryIndex

        return MilvusBinaryIndex(CODE_BYTES, connection=self.connection())

    def float(self, dim: int = DIM) -> FloatIndex:
        if self.uri is None:
            return FaissFloatIndex(dim)
        from service.indexes.milvus_backend import MilvusFloatIndex

        return MilvusFloatIndex(dim, connection=self.connection())

    def names(self) -> Any:
        if self.uri is None:
            return NgramIndex()
        from service.indexes.milvus_backend import MilvusNameIndex

        return MilvusNameIndex(connection=self.connection())

    def drop_all(self) -> None:
        if self.uri is None:
            return
        connection = self.connection()
        try:
            for kind in ("avatar", "bio", "names", "state"):
                connection.drop(connection.name(kind))
        finally:
            connection.close()


def _backend(name: str, lite_uri: str) -> Iterator[Backend]:
    uri = {"faiss": None, "milvus-lite": lite_uri, "milvus-server": SERVER_URI}[name]
    made = Backend(name, uri, f"t{uuid.uuid4().hex[:12]}")
    yield made
    made.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, lite_uri: str) -> Iterator[Backend]:
    yield from _backend(request.param, lite_uri)


@pytest.fixture(params=MILVUS_BACKENDS)
def milvus(request: pytest.FixtureRequest, lite_uri: str) -> Iterator[Backend]:
    yield from _backend(request.param, lite_uri)


def _unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _flip_bits(code: np.ndarray, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code.copy())
    bits[rng.choice(len(bits), size=n_bits, replace=False)] ^= 1
    return np.packbits(bits)


def _hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


# -- avatar codes (Hamming) ----------------------------------------------------------------


def test_binary_index_finds_near_copies_at_their_hamming_distance(backend: Backend) -> None:
    index = backend.binary()
    assert isinstance(index, BinaryIndex)
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(50, CODE_BYTES), dtype=np.uint8)
    index.add(np.arange(100, 150), codes)
    assert len(index) == 50

    query = np.stack([_flip_bits(codes[7], 3, rng), codes[20]])
    distances, ids = index.search(query, 5)
    assert distances.shape == ids.shape == (2, 5)
    assert ids[:, 0].tolist() == [107, 120]
    assert distances[:, 0].tolist() == [3, 0]
    # Every distance is the exact Hamming distance, nearest first.
    for row in range(2):
        assert distances[row].tolist() == sorted(distances[row].tolist())
        for d, pid in zip(distances[row], ids[row], strict=True):
            assert d == _hamming(query[row], codes[pid - 100])


def test_binary_index_returns_each_id_once_at_its_best_code(backend: Backend) -> None:
    index = backend.binary()
    rng = np.random.default_rng(2)
    views = 7  # an avatar's views, as the engine indexes them
    codes = rng.integers(0, 256, size=(12 * views, CODE_BYTES), dtype=np.uint8)
    ids = np.repeat(np.arange(1, 13), views)
    index.add(ids, codes)
    assert len(index) == 12 * views

    distances, found = index.search(codes[3 * views + 4 : 3 * views + 5], 10)
    assert found[0, 0] == 4 and distances[0, 0] == 0
    assert len(set(found[0].tolist())) == 10  # more fetched until 10 distinct ids
    best = {
        pid: min(_hamming(codes[3 * views + 4], codes[i]) for i in np.flatnonzero(ids == pid))
        for pid in range(1, 13)
    }
    assert all(best[int(pid)] == d for d, pid in zip(distances[0], found[0], strict=True))

    # Fewer ids than asked: the rest of the row is empty.
    distances, found = index.search(codes[:1], 20)
    assert sorted(found[0, :12].tolist()) == list(range(1, 13))
    assert (found[0, 12:] == -1).all() and (distances[0, 12:] == EMPTY_DISTANCE).all()


def test_binary_index_removes_every_code_of_an_id(backend: Backend) -> None:
    index = backend.binary()
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(9, CODE_BYTES), dtype=np.uint8)
    index.add(np.array([1, 1, 1, 2, 2, 2, 3, 3, 3]), codes)
    assert index.remove(np.array([2, 99])) == 3
    assert len(index) == 6
    _, ids = index.search(codes, 3)
    assert 2 not in ids
    assert index.remove(np.array([2])) == 0


def test_binary_index_search_on_an_empty_index(backend: Backend) -> None:
    index = backend.binary()
    distances, ids = index.search(np.zeros((2, CODE_BYTES), dtype=np.uint8), 4)
    assert (ids == -1).all() and (distances == EMPTY_DISTANCE).all()
    with pytest.raises(ValueError):
        index.add(np.array([1]), np.zeros((1, CODE_BYTES + 1), dtype=np.uint8))


# -- bio vectors (inner product) -----------------------------------------------------------


def test_float_index_add_search_replace_remove(backend: Backend) -> None:
    index = backend.float()
    assert isinstance(index, FloatIndex)
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 30)
    index.add(np.arange(1, 31), vectors)
    assert len(index) == 30

    scores, ids = index.search(vectors[[4, 9]], 3)
    assert ids[:, 0].tolist() == [5, 10]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-3)
    assert (np.diff(scores, axis=1) <= 1e-6).all()

    # An id already present is replaced, never duplicated; a later row of a batch wins.
    index.add(np.array([5, 5]), np.stack([vectors[20], vectors[9]]))
    assert len(index) == 30
    _, ids = index.search(vectors[[4]], 3)
    assert 5 not in ids[0, :1]
    scores, ids = index.search(vectors[[9]], 2)
    assert sorted(ids[0].tolist()) == [5, 10]

    assert index.remove(np.array([5, 77])) == 1
    assert len(index) == 29
    _, ids = index.search(vectors, 30)
    assert 5 not in ids


def test_float_index_search_on_an_empty_index(backend: Backend) -> None:
    index = backend.float()
    scores, ids = index.search(_unit(np.random.default_rng(5), 2), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()


# -- name and handle candidates ------------------------------------------------------------


def test_name_index_counts_shared_keys(backend: Backend) -> None:
    names = backend.names()
    names.add_many(
        [1, 2, 3, 4],
        [np.array([10, 11, 12, 13]), np.array([11, 12, 13]), np.array([12, 99]), np.array([50])],
    )
    assert len(names) == 4
    assert names.search(np.array([11, 12, 13, 14]), 10) == [(1, 3), (2, 3), (3, 1)]
    assert names.search(np.array([11, 12, 13]), 1)[0][1] == 3
    assert names.search(np.array([777]), 5) == []
    assert names.search(np.array([], dtype=np.int64), 5) == []


def test_name_index_replaces_and_removes(backend: Backend) -> None:
    names = backend.names()
    names.add(1, np.array([10, 11]))
    names.add(2, np.array([10, 12]))
    names.add(1, np.array([20, 21]))  # new keys replace the old ones
    assert len(names) == 2
    assert names.search(np.array([10, 11]), 5) == [(2, 1)]
    assert names.search(np.array([20]), 5) == [(1, 1)]
    assert 1 in names and 3 not in names
    assert names.remove([1, 3]) == 1
    assert names.search(np.array([20, 21]), 5) == []
    assert len(names) == 1


# -- index sets ----------------------------------------------------------------------------


def _expected(settings: Settings, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "settings": settings,
        "embedding_model": "mini",
        "bio_dim": DIM,
        "avatar_code_bytes": CODE_BYTES,
    }
    return {**params, **overrides}


def _fill(index_set: IndexSet, ids: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.asarray(ids, dtype=np.int64)
    with index_set.writing():
        index_set.avatar.add(arr, rng.integers(0, 256, size=(len(ids), CODE_BYTES), dtype=np.uint8))
        index_set.bio.add(arr, _unit(rng, len(ids)))
        index_set.names.add_many(arr, [np.array([pid, 7]) for pid in ids])


def test_index_set_save_and_load_on_every_backend(backend: Backend, tmp_path: Path) -> None:
    settings = backend.settings(tmp_path / "data")
    index_set = IndexSet.create(**_expected(settings))
    assert index_set.shared == backend.is_milvus
    assert index_set.sync_applied() != backend.is_milvus  # shared: no manifest written yet
    _fill(index_set, [1, 2, 3], seed=1)
    index_set.mark_applied(3)
    index_set.save(settings.index_dir)
    index_set.close()

    loaded = IndexSet.load(settings.index_dir, **_expected(settings))
    assert loaded is not None
    assert (loaded.last_change_seq, loaded.profile_count, len(loaded.avatar)) == (3, 3, 3)
    assert loaded.names.search(np.array([7]), 5) == [(1, 1), (2, 1), (3, 1)]
    assert IndexSet.load(settings.index_dir, **_expected(settings, embedding_model="other")) is None
    assert IndexSet.load(settings.index_dir, **_expected(settings, bio_dim=DIM * 2)) is None
    loaded.close()
    # Shared indexes keep nothing in the data folder: the collections are the saved copy.
    assert (settings.index_dir.exists()) != backend.is_milvus


def test_shared_index_set_keeps_its_manifest_in_milvus(milvus: Backend, tmp_path: Path) -> None:
    settings = milvus.settings(tmp_path / "data")
    first = IndexSet.create(**_expected(settings))
    # Collections without a manifest are never trusted: a build may have stopped midway.
    assert IndexSet.load(settings.index_dir, **_expected(settings)) is None
    assert not first.sync_applied()
    _fill(first, [1, 2], seed=2)
    first.mark_applied(5)

    other = IndexSet.create(**_expected(settings))  # another process's view of the same data
    assert other.last_change_seq == 0
    assert other.sync_applied() and other.last_change_seq == 5
    assert len(other.bio) == 2

    first.reset()
    assert not other.sync_applied()
    assert (len(other.avatar), len(other.bio), len(other.names)) == (0, 0, 0)
    assert IndexSet.load(settings.index_dir, **_expected(settings)) is None
    first.close()
    other.close()


def test_in_memory_index_sets_are_never_shared() -> None:
    scratch = IndexSet.in_memory(embedding_model="mini", bio_dim=DIM, avatar_code_bytes=CODE_BYTES)
    assert not scratch.shared and scratch.vector_backend == "faiss"


def test_milvus_without_its_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # as if not installed
    settings = Settings(data_dir=tmp_path, vector_backend="milvus")
    with pytest.raises(ConfigurationError, match=r"clonefinder\[milvus\]"):
        IndexSet.create(**_expected(settings))


def test_milvus_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLONEFINDER_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("CLONEFINDER_MILVUS_URI", "http://milvus.internal:19530")
    monkeypatch.setenv("CLONEFINDER_MILVUS_COLLECTION_PREFIX", "prod_1")
    settings = Settings(data_dir=tmp_path)
    assert settings.vector_backend == "milvus"
    assert settings.resolved_milvus_uri == "http://milvus.internal:19530"
    assert settings.milvus_collection_prefix == "prod_1"
    default = Settings(data_dir=tmp_path, milvus_uri=None)
    assert default.resolved_milvus_uri == str((tmp_path / "milvus.db").resolve())
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, milvus_collection_prefix="no-dashes")


def test_shared_writer_lock_lets_one_holder_in(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    db = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(5)
        with shared_index_writer(db):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with shared_index_writer(db):
        inside.set()
        time.sleep(0.2)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
    db.dispose()


# -- the engine on Milvus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Any:
    from indexers.bio import BioEmbedder

    return BioEmbedder()


@pytest.fixture
def open_engines(milvus: Backend, tmp_path: Path, embedder: Any) -> Iterator[Callable[..., Any]]:
    """Opens engines on one store and one Milvus, as separate processes would."""
    from service.matching.engine import Engine

    opened: list[Any] = []

    def opener(**overrides: Any) -> Any:
        engine = Engine.open(milvus.settings(tmp_path / "data", **overrides), embedder=embedder)
        opened.append(engine)
        return engine

    yield opener
    for engine in opened:
        engine.close()


def _handles(result: Any) -> list[str]:
    return [m.profile["handle"] for m in result.matches]


def _records() -> list[tuple[str, Any]]:
    from tests.support import items, jane, jane_clone, strangers

    return items([jane(), jane_clone(), *strangers(8)])


@pytest.mark.slow
def test_engine_on_milvus_ingests_checks_deletes_and_reindexes(
    open_engines: Callable[..., Any],
) -> None:
    from tests.support import jane

    engine = open_engines()
    assert engine.indexes.shared
    report = engine.ingest(_records())
    assert report.created == 10
    assert engine.health()["indexes"]["names"] == 10
    assert _handles(engine.check({"platform": "twitter", "handle": "janedoe"}))[0] == (
        "jane_doe_official"
    )

    engine.delete_profile("twitter", "jane_doe_official")
    assert "jane_doe_official" not in _handles(engine.check(jane(), min_score=0.0))
    before = engine.check(jane(), min_score=0.0).model_dump()
    assert engine.reindex() == 9
    assert engine.check(jane(), min_score=0.0).model_dump() == before
    assert "jane_doe_official" not in _handles(engine.check(jane(), min_score=0.0))
    engine.close()

    reopened = open_engines()
    assert reopened.indexes.last_change_seq == reopened.store.last_change_seq()
    assert reopened.check(jane(), min_score=0.0).model_dump() == before


@pytest.mark.slow
def test_engines_sharing_milvus_apply_each_change_once(
    open_engines: Callable[..., Any],
) -> None:
    from tests.support import items, jane, strangers

    first = open_engines()
    second = open_engines()  # another process: same store, same collections
    first.ingest(_records())
    # The second sees the first's writes at once: the indexes are one copy.
    assert _handles(second.check({"platform": "twitter", "handle": "janedoe"}))[0] == (
        "jane_doe_official"
    )
    clone_id = first.store.get("twitter", "jane_doe_official").id

    # Changes reach the shared indexes through one writer at a time: while another holds the
    # store's index writer lock, a delete is in the store but waits to be applied.
    deleting = threading.Thread(target=second.delete_profile, args=("twitter", "jane_doe_official"))
    with shared_index_writer(first.store.engine):
        deleting.start()
        deleting.join(0.5)
        assert deleting.is_alive()
        assert first.store.get("twitter", "jane_doe_official") is None
        assert clone_id in first.indexes.names
    deleting.join(10)
    assert not deleting.is_alive()
    assert clone_id not in first.indexes.names
    # The first lags (its own view of the applied change is older) and catches up: it reads
    # what was applied from Milvus, so it does not replay its stale upsert of the clone.
    assert first.indexes.last_change_seq < first.store.last_change_seq()
    first.refresh()
    assert first.indexes.last_change_seq == first.store.last_change_seq()
    assert clone_id not in first.indexes.names
    assert "jane_doe_official" not in _handles(first.check(jane(), min_score=0.0))

    # A writer that died before recording its last change: the next one replays the suffix,
    # in order (the upsert, then the delete), and the deleted profile stays gone.
    with first.indexes.writing():
        first.indexes.mark_applied(0)
    second.ingest(items(strangers(1, offset=500)))
    assert second.indexes.last_change_seq == second.store.last_change_seq()
    assert clone_id not in second.indexes.names
    assert "jane_doe_official" not in _handles(second.check(jane(), min_score=0.0))
    assert second.health()["indexes"]["names"] == 10


@pytest.mark.slow
def test_a_rebuild_that_stopped_midway_is_redone(open_engines: Callable[..., Any]) -> None:
    engine = open_engines()
    engine.ingest(_records())
    with engine.indexes.writing():
        engine.indexes.reset()  # as a rebuild does first; then the process died
    other = open_engines()
    assert other.health()["indexes"]["names"] == 10
    assert other.indexes.last_change_seq == other.store.last_change_seq()
