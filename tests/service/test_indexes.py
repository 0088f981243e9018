"""Derived indexes: binary (avatar), float (bio), n-gram (names) and the saved index set."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from models.errors import ConfigurationError
from service.core.settings import Settings
from service.indexes import BinaryIndex, FloatIndex, IndexSet, NgramIndex, RWLock
from service.indexes.faiss_backend import EMPTY_DISTANCE, FaissBinaryIndex, FaissFloatIndex

CODE_BYTES = 8
DIM = 32


def _unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _flip_bits(code: np.ndarray, n_bits: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code.copy())
    bits[rng.choice(len(bits), size=n_bits, replace=False)] ^= 1
    return np.packbits(bits)


# -- binary ------------------------------------------------------------------------------


def test_binary_index_satisfies_protocol() -> None:
    assert isinstance(FaissBinaryIndex(CODE_BYTES), BinaryIndex)
    assert isinstance(FaissFloatIndex(DIM), FloatIndex)


def test_binary_search_gives_hamming_distance_and_best_view_per_id() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, size=(3, CODE_BYTES), dtype=np.uint8)
    index = FaissBinaryIndex(CODE_BYTES)
    # Profile 10 has two views (the image and a variant 5 bits away), 20 and 30 one each.
    view = _flip_bits(base[0], 5, rng)
    index.add(np.array([10, 10, 20, 30]), np.stack([base[0], view, base[1], base[2]]))
    assert len(index) == 4
    assert index.ntotal_ids == 3

    query = _flip_bits(base[0], 3, rng)
    distances, ids = index.search(query[None, :], 3)
    assert ids.dtype == np.int64 and distances.dtype == np.int32
    assert ids[0, 0] == 10
    assert distances[0, 0] == 3  # the best of its two views, reported once
    assert len(set(ids[0].tolist())) == 3
    expected = [int(np.unpackbits(query ^ base[i]).sum()) for i in (1, 2)]
    got = dict(zip(ids[0].tolist(), distances[0].tolist(), strict=True))
    assert [got[20], got[30]] == expected


def test_binary_many_views_do_not_crowd_out_other_ids() -> None:
    rng = np.random.default_rng(2)
    index = FaissBinaryIndex(CODE_BYTES)
    near = rng.integers(0, 256, size=CODE_BYTES, dtype=np.uint8)
    index.add(np.full(8, 1), np.stack([_flip_bits(near, i + 1, rng) for i in range(8)]))
    index.add(np.array([2]), _flip_bits(near, 20, rng)[None, :])
    index.add(np.array([3]), _flip_bits(near, 25, rng)[None, :])
    _, ids = index.search(near[None, :], 3)
    assert ids[0].tolist() == [1, 2, 3]


def test_binary_remove_drops_every_code_of_the_id_and_pads_empty_slots() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(5, CODE_BYTES), dtype=np.uint8)
    index = FaissBinaryIndex(CODE_BYTES)
    index.add(np.array([1, 1, 1, 2, 2]), codes)
    assert index.remove(np.array([1])) == 3
    assert len(index) == 2
    distances, ids = index.search(codes, 4)
    assert set(ids[ids >= 0].tolist()) == {2}
    assert (ids[:, 1:] == -1).all()
    assert (distances[:, 1:] == EMPTY_DISTANCE).all()
    assert index.remove(np.array([99])) == 0


def test_binary_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, size=(6, CODE_BYTES), dtype=np.uint8)
    index = FaissBinaryIndex(CODE_BYTES)
    index.add(np.array([5, 5, 6, 7, 8, 9]), codes)
    index.save(tmp_path / "a.index")
    loaded = FaissBinaryIndex.load(tmp_path / "a.index")
    assert loaded.code_bytes == CODE_BYTES
    assert [a.tolist() for a in loaded.search(codes, 2)] == [
        a.tolist() for a in index.search(codes, 2)
    ]


# -- float -------------------------------------------------------------------------------


def test_float_add_replace_remove_search() -> None:
    rng = np.random.default_rng(5)
    x = _unit(rng, 3)
    index = FaissFloatIndex(DIM)
    index.add(np.array([1, 2, 3]), x)
    scores, ids = index.search(x[:1], 1)
    assert ids[0, 0] == 1 and scores[0, 0] == pytest.approx(1.0, abs=1e-3)

    # Replacing id 1 with id 3's vector: one vector per id, the old one is gone.
    index.add(np.array([1]), x[2:3])
    assert len(index) == 3
    scores, _ = index.search(x[:1], 3)
    assert scores[0, 0] < 0.9  # nothing holds x[0] any more
    _, ids = index.search(x[2:3], 2)
    assert set(ids[0].tolist()) == {1, 3}

    assert index.remove(np.array([3])) == 1
    scores, ids = index.search(x[2:3], 3)
    assert ids[0].tolist()[:2] == [1, 2] and ids[0, 2] == -1
    assert scores[0, 2] == -np.inf


def test_float_duplicate_ids_in_one_batch_keep_the_last() -> None:
    rng = np.random.default_rng(6)
    x = _unit(rng, 2)
    index = FaissFloatIndex(DIM)
    index.add(np.array([4, 4]), x)
    assert len(index) == 1
    scores, ids = index.search(x[1:], 1)
    assert ids[0, 0] == 4 and scores[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_float_recall_against_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x, q = _unit(rng, 2_000, 64), _unit(rng, 100, 64)
    index = FaissFloatIndex(64)
    index.add(np.arange(2_000, dtype=np.int64) + 1_000, x)
    exact = faiss.IndexFlatIP(64)
    exact.add(x)
    _, got = index.search(q, 10)
    _, want = exact.search(q, 10)
    recall = np.mean([len(set(g - 1_000) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.97
    index.save(tmp_path / "b.index")
    _, again = FaissFloatIndex.load(tmp_path / "b.index").search(q, 10)
    assert (again == got).all()


# -- n-gram ------------------------------------------------------------------------------


def _small_ngram(**options: int | float) -> NgramIndex:
    params: dict[str, int | float] = {"bucket_bits": 12, "min_stop_postings": 100}
    params.update(options)
    return NgramIndex(**params)  # type: ignore[arg-type]


def _ids(results: list[tuple[int, int]]) -> list[int]:
    return [pid for pid, _ in results]


def test_ngram_ranks_by_shared_keys_then_id() -> None:
    index = _small_ngram()
    index.add(1, np.array([1, 2, 3, 4]))
    index.add(2, np.array([1, 2, 3]))
    index.add(3, np.array([3, 4, 50]))
    index.add(4, np.array([60]))
    assert index.search(np.array([1, 2, 3, 4]), 10) == [(1, 4), (2, 3), (3, 2)]
    assert index.search(np.array([1, 2, 3, 4]), 1) == [(1, 4)]
    assert index.search(np.array([3]), 10) == [(1, 1), (2, 1), (3, 1)]
    assert index.search(np.array([999]), 10) == []
    assert len(index) == 4 and 4 in index and 5 not in index


def _check_replace_and_remove(index: NgramIndex) -> None:
    assert _ids(index.search(np.array([10, 11, 12]), 10)) == [2]  # 1 lost its old keys
    assert index.search(np.array([30, 31]), 10) == [(1, 2)]
    assert _ids(index.search(np.array([20, 21]), 10)) == []  # 3 is removed
    assert len(index) == 2 and 3 not in index


@pytest.mark.parametrize("stage", ["delta", "compacted", "saved"])
def test_ngram_replaced_id_keeps_only_new_keys_and_removed_id_never_returns(
    stage: str, tmp_path: Path
) -> None:
    index = _small_ngram()
    index.add_many(np.array([1, 2, 3]), [np.array([10, 11, 12]), np.array([10, 11]), [20, 21]])
    index.compact()  # 1 and 3 now live in the base, so replace/remove must tombstone them
    index.add(1, np.array([30, 31]))
    index.remove([3])
    _check_replace_and_remove(index)
    if stage in ("compacted", "saved"):
        index.compact()
        assert index.pending_changes == 0
    if stage == "saved":
        index.save(tmp_path / "names.npz")
        index = NgramIndex.load(tmp_path / "names.npz")
    _check_replace_and_remove(index)


def test_ngram_replace_within_the_delta_and_bulk_replace() -> None:
    index = _small_ngram(delta_limit=4)  # bulk path from a batch of 1
    index.add(7, np.array([1, 2]))
    index.add(7, np.array([3, 4]))  # replaced while still in the delta
    assert index.search(np.array([1, 2]), 5) == []
    # A big batch (bulk merge path) replacing a delta id and a base id, with a duplicate id.
    index.add_many(np.array([8]), [np.array([5])])
    index.add_many(
        np.array([7, 8, 9, 9]), [np.array([6]), np.array([6]), np.array([1]), np.array([2, 6])]
    )
    assert index.search(np.array([6]), 5) == [(7, 1), (8, 1), (9, 1)]
    assert index.search(np.array([1, 3, 4, 5]), 5) == []
    assert len(index) == 3


def test_ngram_compaction_is_triggered_by_growth_and_keeps_results() -> None:
    index = _small_ngram(delta_limit=8)
    for pid in range(40):
        index.add(pid, np.array([1000 + pid, 5000 + pid % 4]))
    assert index.pending_changes <= 8 + 1
    assert index.search(np.array([1000 + 17, 5000 + 1]), 1) == [(17, 2)]
    assert len(index) == 40


def test_ngram_skips_stop_grams_but_still_finds_the_right_profile() -> None:
    index = _small_ngram(min_stop_postings=10)
    common = np.array([1, 2, 3])  # grams that almost every name has ("an", "el", ...)
    ids = np.arange(1, 401)
    keys = [np.concatenate([common, [10_000 + pid, 20_000 + pid]]) for pid in ids.tolist()]
    index.add_many(ids, keys)
    query = np.concatenate([common, [10_000 + 123, 20_000 + 123]])
    results = index.search(query, 5)
    assert results[0][0] == 123
    # Only the query's rare grams were read: no profile is credited with the common ones.
    assert results == [(123, 2)]
    # A query made only of stop-grams still returns candidates.
    assert len(index.search(common, 5)) == 5


def test_ngram_negative_and_large_ids(tmp_path: Path) -> None:
    index = _small_ngram()
    big = 2**40
    index.add(big, np.array([1, 2]))
    index.add(-5, np.array([2, 3]))
    assert index.search(np.array([1, 2, 3]), 5) == [(-5, 2), (big, 2)]
    index.save(tmp_path / "n.npz")
    assert NgramIndex.load(tmp_path / "n.npz").search(np.array([1, 2, 3]), 5) == [
        (-5, 2),
        (big, 2),
    ]


def test_ngram_save_does_not_change_the_live_index(tmp_path: Path) -> None:
    index = _small_ngram()
    index.add(1, np.array([1, 2]))
    index.save(tmp_path / "n.npz")
    assert index.pending_changes == 1
    assert NgramIndex.load(tmp_path / "n.npz").search(np.array([1]), 3) == [(1, 1)]


# -- index set ---------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _create(settings: Settings) -> IndexSet:
    return IndexSet.create(
        settings=settings, embedding_model="mini", bio_dim=DIM, avatar_code_bytes=CODE_BYTES
    )


def _load(settings: Settings, **overrides: object) -> IndexSet | None:
    params: dict[str, object] = {
        "settings": settings,
        "embedding_model": "mini",
        "bio_dim": DIM,
        "avatar_code_bytes": CODE_BYTES,
    }
    params.update(overrides)
    return IndexSet.load(settings.index_dir, **params)  # type: ignore[arg-type]


def _fill(index_set: IndexSet, ids: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.asarray(ids, dtype=np.int64)
    with index_set.writing():
        index_set.avatar.add(arr, rng.integers(0, 256, size=(len(ids), CODE_BYTES), dtype=np.uint8))
        index_set.bio.add(arr, _unit(rng, len(ids)))
        for pid in ids:
            index_set.names.add(pid, np.array([pid, 7]))
        index_set.last_change_seq += len(ids)


def test_index_set_round_trip(settings: Settings) -> None:
    index_set = _create(settings)
    _fill(index_set, [1, 2, 3], seed=1)
    manifest = index_set.save(settings.index_dir)
    assert manifest.profile_count == 3 and manifest.last_change_seq == 3

    loaded = _load(settings)
    assert loaded is not None
    assert loaded.last_change_seq == 3 and loaded.profile_count == 3
    assert len(loaded.avatar) == 3 and len(loaded.bio) == 3
    with loaded.reading():
        assert loaded.names.search(np.array([2, 7]), 1) == [(2, 2)]
    # A second save replaces the first, leaving one version folder behind the link.
    _fill(loaded, [4], seed=2)
    loaded.save(settings.index_dir)
    again = _load(settings)
    assert again is not None and again.profile_count == 4
    versions = [p for p in settings.index_dir.parent.iterdir() if p.name != "clonefinder.db"]
    assert len(versions) == 2  # the link and its target


def test_index_set_load_absent_or_mismatched_is_none(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert _load(settings) is None
    _create(settings).save(settings.index_dir)
    assert _load(settings) is not None
    with caplog.at_level(logging.WARNING):
        assert _load(settings, embedding_model="multilingual") is None
    assert "embedding_model" in caplog.text
    assert _load(settings, bio_dim=DIM * 2) is None
    assert _load(settings, avatar_code_bytes=CODE_BYTES * 4) is None


def test_index_set_corrupt_files_load_as_none(settings: Settings) -> None:
    _create(settings).save(settings.index_dir)
    (settings.index_dir / "names.npz").write_bytes(b"not an npz")
    assert _load(settings) is None


def test_crash_mid_save_leaves_previous_set_loadable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_set = _create(settings)
    _fill(index_set, [1, 2], seed=3)
    index_set.save(settings.index_dir)

    _fill(index_set, [3], seed=4)

    def fail(self: FaissFloatIndex, path: Path) -> None:
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(FaissFloatIndex, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        index_set.save(settings.index_dir)
    monkeypatch.undo()

    previous = _load(settings)
    assert previous is not None and previous.profile_count == 2
    assert previous.last_change_seq == 2
    # The failed attempt left no half-written version behind.
    assert sorted(p.name for p in settings.index_dir.parent.iterdir() if p.is_symlink()) == [
        settings.index_dir.name
    ]
    assert len([p for p in settings.index_dir.parent.iterdir() if not p.is_symlink()]) == 1


def test_unknown_backend_is_a_configuration_error(settings: Settings) -> None:
    unknown = settings.model_copy(update={"vector_backend": "annoy"})
    with pytest.raises(ConfigurationError, match="annoy"):
        _create(unknown)


def test_concurrent_searches_while_writing_never_see_removed_ids(settings: Settings) -> None:
    index_set = _create(settings)
    _fill(index_set, list(range(1, 201)), seed=5)
    rng = np.random.default_rng(6)
    queries = _unit(rng, 8)
    removed: set[int] = set()
    removed_lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                with removed_lock:
                    gone = set(removed)  # removals that had returned before this search
                with index_set.reading():
                    _, bio_ids = index_set.bio.search(queries, 20)
                    names = index_set.names.search(np.array([7]), 300)
                seen = set(bio_ids.ravel().tolist()) | {pid for pid, _ in names}
                if seen & gone:
                    raise AssertionError(f"removed ids came back: {sorted(seen & gone)}")
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for pid in range(1, 151):
            with index_set.writing():
                index_set.bio.remove(np.array([pid]))
                index_set.names.remove([pid])
                index_set.avatar.remove(np.array([pid]))
            with removed_lock:
                removed.add(pid)
            _fill(index_set, [1000 + pid], seed=pid)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(index_set.bio) == 200 and index_set.profile_count == 200


def test_rwlock_writer_excludes_readers() -> None:
    lock = RWLock()
    inside: list[str] = []
    with lock.reading(), lock.reading():
        inside.append("two readers at once")
    entered = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with lock.writing():
            entered.set()
            release.wait()

    t = threading.Thread(target=writer)
    t.start()
    entered.wait()
    got_in = threading.Event()

    def reader() -> None:
        with lock.reading():
            got_in.set()

    r = threading.Thread(target=reader)
    r.start()
    assert not got_in.wait(0.05)  # blocked while the writer holds the lock
    release.set()
    t.join()
    r.join()
    assert got_in.is_set() and inside


def test_a_large_float_index_becomes_an_inverted_file_and_still_finds_near_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its size threshold the bio index scans a fraction of the vectors per query; the
    near-copies a check looks for (cosine 0.9 and above) are still found, removes and replaces
    still hold, and the saved file loads back as the same kind of index."""
    monkeypatch.setattr(FaissFloatIndex, "IVF_FROM", 4_000)
    monkeypatch.setattr(FaissFloatIndex, "IVF_LISTS", 64)
    monkeypatch.setattr(FaissFloatIndex, "IVF_PROBES", 8)
    rng = np.random.default_rng(5)
    # Clustered vectors, as sentence embeddings are: topics, and texts around them.
    topics = _unit(rng, 40)
    vectors = topics[rng.integers(0, 40, 6_000)] + 0.35 * rng.standard_normal((6_000, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = FaissFloatIndex(DIM)
    for start in range(0, 6_000, 1_000):
        index.add(np.arange(start, start + 1_000), vectors[start : start + 1_000])
    assert index.is_inverted_file and len(index) == 6_000

    noise = 0.05 * rng.standard_normal((300, DIM)).astype(np.float32)
    copies = vectors[:300] + noise
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    assert np.all(np.sum(copies * vectors[:300], axis=1) > 0.9)
    _, found = index.search(copies, 10)
    recall = np.mean([i in row for i, row in enumerate(found.tolist())])
    assert recall >= 0.99

    index.remove(np.array([0]))
    index.add(np.array([1]), vectors[2:3])
    _, again = index.search(vectors[:3], 3)
    assert 0 not in again.ravel() and len(index) == 5_999
    assert again[0][0] != 0 and 1 in again[2]

    index.save(tmp_path / "bio.index")
    loaded = FaissFloatIndex.load(tmp_path / "bio.index")
    assert loaded.is_inverted_file and len(loaded) == 5_999
    assert np.array_equal(loaded.search(copies[:20], 5)[1], index.search(copies[:20], 5)[1])


def test_a_large_binary_index_becomes_an_inverted_file_and_still_finds_near_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its size threshold the avatar index scans a fraction of the codes per query; the
    near-copies a check looks for (a few bits apart) are still found, each id once at its best
    view, removes hold, and the saved file loads back as the same kind of index."""
    monkeypatch.setattr(FaissBinaryIndex, "IVF_FROM", 8_000)
    monkeypatch.setattr(FaissBinaryIndex, "IVF_LISTS", 64)
    monkeypatch.setattr(FaissBinaryIndex, "IVF_PROBES", 8)
    rng = np.random.default_rng(9)
    views = 3
    # Clustered codes, as photos' hashes are: families of similar pictures.
    families = rng.integers(0, 256, (50, CODE_BYTES), dtype=np.uint8)
    codes = np.stack([_flip_bits(families[f], 12, rng) for f in rng.integers(0, 50, 3_000 * views)])
    ids = np.repeat(np.arange(3_000), views)
    index = FaissBinaryIndex(CODE_BYTES)
    for start in range(0, len(ids), 3_000):
        index.add(ids[start : start + 3_000], codes[start : start + 3_000])
    assert index.is_inverted_file and len(index) == 9_000 and index.ntotal_ids == 3_000

    copies = np.stack([_flip_bits(codes[i * views], 4, rng) for i in range(300)])
    distances, found = index.search(copies, 10)
    recall = np.mean([i in row for i, row in enumerate(found.tolist())])
    assert recall >= 0.99
    for row in found.tolist():
        hits = [i for i in row if i >= 0]
        assert len(hits) == len(set(hits))  # each id once
    assert np.all(distances[:, 0] <= 4)

    index.remove(np.array([0]))
    _, again = index.search(codes[:1], 5)
    assert 0 not in again.ravel() and index.ntotal_ids == 2_999

    index.save(tmp_path / "avatar.index")
    loaded = FaissBinaryIndex.load(tmp_path / "avatar.index")
    assert loaded.is_inverted_file and len(loaded) == len(index)
    assert np.array_equal(loaded.search(copies[:20], 5)[1], index.search(copies[:20], 5)[1])


@pytest.mark.parametrize("stage", ["delta", "compacted", "saved"])
def test_ngram_keeps_each_profiles_strings_through_replace_remove_and_save(
    stage: str, tmp_path: Path
) -> None:
    index = _small_ngram(delta_limit=8)
    ids = np.arange(1, 41)
    index.add_many(ids, [np.array([pid, 7]) for pid in ids], [(f"n{p}", f"h{p}") for p in ids])
    index.add(5, np.array([5, 7]), ("jané dœ", "janedoe"))  # replaced, with non-ASCII text
    index.add(41, np.array([41, 7]))  # no strings given: empty ones
    index.add(12, np.array([12, 7]), ("nul\0inside", "h12"))  # texts are read NUL-joined
    index.remove([7])
    index.add_many([9, 50], [np.array([9]), np.array([50, 7])], [("nine", ""), ("", "fifty")])
    if stage in ("compacted", "saved"):
        index.compact()
    if stage == "saved":
        index.save(tmp_path / "n.npz")
        index = NgramIndex.load(tmp_path / "n.npz")
    names, handles = index.texts([5, 41, 9, 50, 1, 40])
    assert names == ["jané dœ", "", "nine", "", "n1", "n40"]
    assert handles == ["janedoe", "", "", "fifty", "h1", "h40"]
    assert index.texts([12, 1]) == (["nul\0inside", "n1"], ["h12", "h1"])
    hits = index.search_texts(np.array([7]), 100)
    assert 7 not in hits.ids.tolist() and len(hits.ids) == 40
    at = hits.ids.tolist().index(5)
    assert (hits.names[at], hits.handles[at]) == ("jané dœ", "janedoe")


@pytest.mark.parametrize("first_id", [1, 10**9])  # dense ids use a position table, sparse not
def test_ngram_finds_strings_and_key_counts_whatever_the_ids(first_id: int) -> None:
    index = _small_ngram(delta_limit=8, bucket_bits=20)
    ids = first_id + 2 * np.arange(300)  # from 1, every other id: dense enough for the table
    index.add_many(
        ids,
        [np.array([i % 7, 100 + i]) for i in range(300)],
        [(f"n{i}", f"h{i}") for i in range(300)],
    )
    index.add(int(ids[-1]) + 5, np.array([0, 1, 2]), ("new", "delta"))  # beyond the base
    hits = index.search_texts(np.array([0, 1, 2]), 300)
    by_id = dict(zip(hits.ids.tolist(), zip(hits.names, hits.handles, strict=True), strict=True))
    assert by_id[int(ids[-1]) + 5] == ("new", "delta")
    assert hits.ids[0] == int(ids[-1]) + 5  # shares all 3 keys of its 3: the best Dice
    assert by_id[int(ids[7])] == ("n7", "h7") and by_id[int(ids[1])] == ("n1", "h1")
    assert len(hits.ids) == 1 + sum(1 for i in range(300) if i % 7 in (0, 1, 2))
    assert index.texts([ids[299], ids[0]]) == (["n299", "n0"], ["h299", "h0"])
    assert (index._position_by_id is not None) == (first_id == 1)  # both lookups were used


def test_ngram_search_texts_reads_every_gram_and_ranks_by_dice() -> None:
    index = _small_ngram(min_stop_postings=10, bucket_bits=20)  # no bucket shared by chance
    # 2 shares 3 of its 4 keys with the query; 1 shares 4 of its 40: Dice puts 2 first,
    # the shared count alone would put 1 first.
    index.add(1, np.array([1, 2, 3, 4, *range(100, 136)]), ("long", ""))
    index.add(2, np.array([1, 2, 3, 99]), ("short", ""))
    # Key 1 becomes a stop-gram: 40 more profiles of 10 keys hold it (Dice 2/14 each).
    index.add_many(
        np.arange(10, 50), [np.array([1, *range(1000 * i, 1000 * i + 9)]) for i in range(1, 41)]
    )
    assert index.search(np.array([1, 2, 3, 4]), 2) == [(1, 3), (2, 2)]  # stop-gram skipped
    hits = index.search_texts(np.array([1, 2, 3, 4]), 2)
    assert hits.ids.tolist() == [2, 1] and hits.shared.tolist() == [3, 4]
    assert hits.names == ["short", "long"]
    index.compact()  # the same from the base's stored key counts
    assert index.search_texts(np.array([1, 2, 3, 4]), 2).ids.tolist() == [2, 1]


def test_name_candidates_are_the_most_alike_by_name_and_by_handle_not_by_shared_grams() -> None:
    from indexers import text
    from service.matching.matcher import name_candidates, name_pool

    index = NgramIndex()
    profiles = {
        1: ("eral tocoen", "qqzzwwxx"),  # the same name, words swapped (token-sorted: 1.0)
        2: ("vvbbnnmm", "tocoeneral"),  # the same handle
        # Near copies of both, sharing more grams in all than 1 or 2 do.
        **{
            pid: (f"tocoen eral{c}", f"tocoeneral{c}")
            for pid, c in zip(range(3, 11), "bcdfghjk", strict=True)
        },
    }
    ids = list(profiles)
    index.add_many(
        ids, [text.candidate_keys(*profiles[p]) for p in ids], [profiles[p] for p in ids]
    )
    query = ("tocoen eral", "tocoeneral")
    by_grams = [pid for pid, _ in index.search(text.candidate_keys(*query), 2)]
    assert 1 not in by_grams  # the swapped name shares fewer grams than the near copies
    assert sorted(name_candidates(index, *query, pool=20, k=2)) == [1, 2]
    assert set(name_candidates(index, *query, pool=20, k=48)) == set(ids)
    assert name_candidates(index, "", "", pool=20) == []
    assert name_pool(1_000) == 400 and name_pool(1_000_000) == 1_000_000 // 160
