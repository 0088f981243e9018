"""The name-and-handle candidate index: profile ids by shared hashed keys (character n-grams).

Layout, chosen to stay compact and fast at millions of profiles:

- keys are hashed into 2**bucket_bits buckets; a bucket's posting list holds profile ids;
- an immutable CSR *base* (`offsets`, `postings`) holds most postings in flat numpy arrays
  (uint32 ids while every id fits, so ~4 bytes per posting);
- a small mutable *delta* (bucket -> set of ids, id -> its buckets) takes recent adds;
- *stale* ids are base ids whose base postings no longer count (removed, or re-added with new
  keys that now live in the delta); they are filtered at query time and purged by `compact()`.

A query reads only the posting lists of its own buckets, never the whole index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_U32_LIMIT = np.iinfo(np.uint32).max
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads any key bits evenly


def _runs(values: npt.NDArray[np.integer]) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp]]:
    """The distinct values of a sorted, non-empty array and how many times each occurs."""
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return values[starts], np.diff(starts, append=len(values))


def _sorted_unique(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Sorted distinct values; a plain sort beats `np.unique`'s hash path on big int arrays."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


class NgramIndex:
    """Profile ids by shared int64 keys; `search` ranks ids by how many query keys they share.

    Counts are per bucket, so two keys of one profile that share a bucket count once, and a
    rare hash collision can add a spurious shared key: candidates are re-scored downstream.
    Not thread-safe: the caller serialises writes against reads (see `IndexSet`).
    """

    def __init__(
        self,
        *,
        bucket_bits: int = 22,
        stop_fraction: float = 0.05,
        min_stop_postings: int = 1_000,
        max_postings: int = 200_000,
        delta_limit: int = 10_000,
    ) -> None:
        if not 8 <= bucket_bits <= 30:
            raise ValueError("bucket_bits must be in [8, 30]")
        self.bucket_bits = bucket_bits
        self.stop_fraction = stop_fraction
        self.min_stop_postings = min_stop_postings
        self.max_postings = max_postings
        self.delta_limit = delta_limit
        n_buckets = 1 << bucket_bits
        self._offsets: npt.NDArray[np.integer] = np.zeros(n_buckets + 1, dtype=np.uint32)
        self._postings: npt.NDArray[np.integer] = np.zeros(0, dtype=np.uint32)
        self._base_ids: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # sorted
        self._stale: set[int] = set()
        self._stale_sorted: npt.NDArray[np.int64] | None = None
        self._delta_inv: dict[int, set[int]] = {}
        self._delta_keys: dict[int, npt.NDArray[np.int64]] = {}

    # -- keys -------------------------------------------------------------------------------

    @property
    def n_buckets(self) -> int:
        return 1 << self.bucket_bits

    def buckets(self, keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Distinct buckets of `keys` (any int64 values), sorted."""
        return _sorted_unique(self._hash(np.asarray(keys, dtype=np.int64).reshape(-1)))

    def _hash(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        with np.errstate(over="ignore"):
            mixed = keys.view(np.uint64) * _GOLDEN
        return (mixed >> np.uint64(64 - self.bucket_bits)).astype(np.int64)

    # -- size -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of profiles held."""
        return len(self._base_ids) - len(self._stale) + len(self._delta_keys)

    def __contains__(self, profile_id: object) -> bool:
        if not isinstance(profile_id, int | np.integer):
            return False
        pid = int(profile_id)
        return pid in self._delta_keys or (self._in_base(pid) and pid not in self._stale)

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the compact base arrays (the delta is extra, and small)."""
        return int(self._offsets.nbytes + self._postings.nbytes + self._base_ids.nbytes)

    @property
    def pending_changes(self) -> int:
        """Delta ids plus stale ids: what `compact()` would fold into the base."""
        return len(self._delta_keys) + len(self._stale)

    def _in_base(self, pid: int) -> bool:
        i = int(np.searchsorted(self._base_ids, pid))
        return i < len(self._base_ids) and int(self._base_ids[i]) == pid

    # -- writes -----------------------------------------------------------------------------

    def add(self, profile_id: int, keys: npt.ArrayLike) -> None:
        """Index `profile_id` under `keys`, replacing any keys it had before."""
        pid = int(profile_id)
        self._forget(pid)
        buckets = self.buckets(keys)
        self._delta_keys[pid] = buckets
        for b in buckets.tolist():
            self._delta_inv.setdefault(b, set()).add(pid)
        self._maybe_compact()

    def add_many(self, ids: npt.ArrayLike, keys_list: Sequence[npt.ArrayLike]) -> None:
        """Index many profiles at once; a later duplicate id in the batch wins.

        Small batches go to the delta; large ones are merged straight into the base, so a
        rebuild of millions of profiles costs a few vectorised merges, not millions of dict ops.
        """
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(id_arr) != len(keys_list):
            raise ValueError("ids and keys_list differ in length")
        if len(id_arr) < max(1, self.delta_limit // 4):
            for pid, keys in zip(id_arr.tolist(), keys_list, strict=True):
                self.add(pid, keys)
            return
        _, first_rev = np.unique(id_arr[::-1], return_index=True)
        keep = np.sort(len(id_arr) - 1 - first_rev)
        id_arr = id_arr[keep]
        self._forget_many(id_arr)
        key_arrays = [np.asarray(keys_list[i], dtype=np.int64).reshape(-1) for i in keep.tolist()]
        lengths = np.fromiter((len(a) for a in key_arrays), dtype=np.int64, count=len(key_arrays))
        all_keys = np.concatenate(key_arrays) if key_arrays else np.zeros(0, dtype=np.int64)
        pair_ids, pair_buckets = np.repeat(id_arr, lengths), self._hash(all_keys)
        # One posting per (id, bucket): a profile counts once per bucket, as in `add`.
        # Sorting bucket-major also hands `_merged` an already sorted run.
        id_bits = 63 - self.bucket_bits
        if len(id_arr) and id_arr.min() >= 0 and id_arr.max() < (1 << id_bits):
            packed = _sorted_unique((pair_buckets << id_bits) | pair_ids)
            pair_buckets, pair_ids = packed >> id_bits, packed & ((1 << id_bits) - 1)
        else:
            order = np.lexsort((pair_ids, pair_buckets))
            pair_ids, pair_buckets = pair_ids[order], pair_buckets[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = (np.diff(pair_ids) != 0) | (np.diff(pair_buckets) != 0)
            pair_ids, pair_buckets = pair_ids[first], pair_buckets[first]
        self._install(*self._merged(pair_buckets, pair_ids, id_arr))

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove profiles; return how many were present. They never match again."""
        removed = 0
        for pid in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            removed += self._forget(pid)
        self._maybe_compact()
        return removed

    def _forget_many(self, ids: npt.NDArray[np.int64]) -> None:
        """`_forget` for a batch: vectorised for the base, a loop only over delta members."""
        for pid in set(ids.tolist()).intersection(self._delta_keys):
            self._forget(pid)
        if len(self._base_ids):
            in_base = ids[np.isin(ids, self._base_ids)].tolist()
            if in_base:
                self._stale.update(in_base)
                self._stale_sorted = None

    def _forget(self, pid: int) -> int:
        """Make every posting of `pid` stop counting; 1 if it was present."""
        present = 0
        old = self._delta_keys.pop(pid, None)
        if old is not None:
            present = 1
            for b in old.tolist():
                posting = self._delta_inv[b]
                posting.discard(pid)
                if not posting:
                    del self._delta_inv[b]
        if pid not in self._stale and self._in_base(pid):
            present = 1
            self._stale.add(pid)
            self._stale_sorted = None
        return present

    def _maybe_compact(self) -> None:
        limit = max(self.delta_limit, len(self._base_ids) // 64)
        if self.pending_changes > limit:
            self.compact()

    def compact(self) -> None:
        """Fold the delta into the base and purge stale postings; searches give the same ids."""
        if self.pending_changes:
            empty = np.zeros(0, dtype=np.int64)
            self._install(*self._merged(empty, empty, empty))

    def _install(
        self,
        offsets: npt.NDArray[np.integer],
        postings: npt.NDArray[np.integer],
        base_ids: npt.NDArray[np.int64],
    ) -> None:
        self._offsets, self._postings, self._base_ids = offsets, postings, base_ids
        self._stale = set()
        self._stale_sorted = None
        self._delta_inv = {}
        self._delta_keys = {}

    def _stale_array(self) -> npt.NDArray[np.int64]:
        stale = self._stale_sorted
        if stale is None:
            stale = np.sort(np.fromiter(self._stale, dtype=np.int64, count=len(self._stale)))
            self._stale_sorted = stale
        return stale

    def _merged(
        self,
        extra_buckets: npt.NDArray[np.int64],
        extra_ids: npt.NDArray[np.int64],
        extra_profiles: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.integer], npt.NDArray[np.int64]]:
        """New (offsets, postings, base_ids): base minus stale, plus delta, plus `extra_*`.

        Pure: reads the current state, changes nothing, so `save` can use it under a read lock.
        The base stays bucket-sorted, so new postings are spliced in with one `np.insert`
        (O(total)) instead of re-sorting everything.
        """
        n_buckets = self.n_buckets
        counts = np.diff(self._offsets.astype(np.int64))
        postings = self._postings
        stale = self._stale_array()
        if len(stale) and len(postings):
            kill = np.isin(postings, stale)
            if kill.any():
                killed_at = np.flatnonzero(kill)
                killed_bucket = np.searchsorted(self._offsets, killed_at, side="right") - 1
                counts -= np.bincount(killed_bucket, minlength=n_buckets)
                postings = postings[~kill]
        delta_ids = list(self._delta_keys)
        delta_buckets = [self._delta_keys[p] for p in delta_ids]
        delta_len = np.fromiter((len(b) for b in delta_buckets), dtype=np.int64)
        new_buckets = np.concatenate([*delta_buckets, extra_buckets]).astype(np.int64)
        new_ids = np.concatenate(
            [np.repeat(np.asarray(delta_ids, dtype=np.int64), delta_len), extra_ids]
        ).astype(np.int64)
        order = np.argsort(new_buckets, kind="stable")
        new_buckets, new_ids = new_buckets[order], new_ids[order]

        base_ids = self._base_ids
        if len(stale):
            base_ids = np.setdiff1d(base_ids, stale, assume_unique=True)
        base_ids = np.union1d(
            base_ids, np.concatenate([np.asarray(delta_ids, dtype=np.int64), extra_profiles])
        ).astype(np.int64)

        id_dtype: type[np.integer] = np.uint32
        if len(base_ids) and (base_ids[0] < 0 or base_ids[-1] > _U32_LIMIT):
            id_dtype = np.int64
        if len(new_ids):
            starts = np.concatenate([[0], np.cumsum(counts)])
            # Insert before the end of each bucket's (filtered) base run: keeps bucket order.
            postings = np.insert(
                postings.astype(id_dtype, copy=False),
                starts[new_buckets + 1],
                new_ids.astype(id_dtype),
            )
            counts += np.bincount(new_buckets, minlength=n_buckets)
        else:
            postings = postings.astype(id_dtype, copy=False)
        total = int(counts.sum())
        off_dtype = np.uint32 if total <= _U32_LIMIT else np.int64
        offsets: npt.NDArray[np.integer] = np.zeros(n_buckets + 1, dtype=off_dtype)
        np.cumsum(counts, out=offsets[1:])
        return offsets, postings, base_ids

    # -- reads ------------------------------------------------------------------------------

    def search(self, keys: npt.ArrayLike, k: int) -> list[tuple[int, int]]:
        """Up to `k` (id, shared key count), most shared first, ties by smaller id.

        Buckets held by more than `stop_fraction` of all profiles (and `min_stop_postings`)
        are stop-grams: skipped while the query has rarer ones, because they cost the most
        to read and tell the least. A query made only of stop-grams uses its 3 rarest. Buckets
        are read rarest first until `max_postings` ids were read (at least 3 buckets), so a
        query's cost stays bounded however common its grams are.
        """
        if k <= 0 or not len(self):
            return []
        buckets = self.buckets(keys)
        if not len(buckets):
            return []
        starts = self._offsets[buckets].astype(np.int64)
        ends = self._offsets[buckets + 1].astype(np.int64)
        delta_sets = [self._delta_inv.get(b) for b in buckets.tolist()]
        sizes = ends - starts + np.fromiter((len(s) if s else 0 for s in delta_sets), np.int64)
        limit = max(self.min_stop_postings, self.stop_fraction * len(self))
        by_size = np.argsort(sizes, kind="stable")
        by_size = by_size[sizes[by_size] > 0]
        use = by_size[sizes[by_size] <= limit]
        if not len(use):
            use = by_size[:3]
        # Rarest buckets first, within a budget of postings: bounds the cost of a query.
        within = np.cumsum(sizes[use]) <= self.max_postings
        within[: min(3, len(within))] = True
        use = use[within]
        if not len(use):
            return []
        parts = [self._postings[starts[i] : ends[i]] for i in use.tolist()]
        # Hits stay in the postings' own (narrow) dtype: sorting them is most of a query's cost.
        base_hits = np.concatenate(parts) if parts else np.zeros(0, self._postings.dtype)
        if self._stale and len(base_hits):
            base_hits = base_hits[~np.isin(base_hits, self._stale_array())]
        delta_hits = [pid for i in use.tolist() if (s := delta_sets[i]) for pid in s]
        hits = np.sort(
            np.concatenate([base_hits.astype(np.int64), np.asarray(delta_hits, dtype=np.int64)])
            if delta_hits
            else base_hits
        )
        if not len(hits):
            return []
        ids, counts = _runs(hits)
        if len(ids) > k:
            # Keep every id tied with the k-th count, then order exactly. Counts are small
            # integers, so the k-th largest comes from their histogram, not a partition.
            at_least = np.cumsum(np.bincount(counts)[::-1])[::-1]
            kth = int(np.flatnonzero(at_least >= k)[-1])
            keep = counts >= kth
            ids, counts = ids[keep], counts[keep]
        order = np.lexsort((ids, -counts))[:k]
        return list(zip(ids[order].tolist(), counts[order].tolist(), strict=True))

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the compacted state to `path` (npz, no pickle); does not mutate the index."""
        if self.pending_changes:
            empty = np.zeros(0, dtype=np.int64)
            offsets, postings, base_ids = self._merged(empty, empty, empty)
        else:
            offsets, postings, base_ids = self._offsets, self._postings, self._base_ids
        with open(path, "wb") as fh:
            np.savez(
                fh,
                format_version=np.int64(FORMAT_VERSION),
                bucket_bits=np.int64(self.bucket_bits),
                offsets=offsets,
                postings=postings,
                base_ids=base_ids,
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        stop_fraction: float = 0.05,
        min_stop_postings: int = 1_000,
        max_postings: int = 200_000,
        delta_limit: int = 10_000,
    ) -> Self:
        """Read an index written by `save`; ValueError when the file is not one."""
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: ngram format {version}, expected {FORMAT_VERSION}")
            index = cls(
                bucket_bits=int(data["bucket_bits"]),
                stop_fraction=stop_fraction,
                min_stop_postings=min_stop_postings,
                max_postings=max_postings,
                delta_limit=delta_limit,
            )
            offsets, postings, base_ids = data["offsets"], data["postings"], data["base_ids"]
        if len(offsets) != index.n_buckets + 1 or int(offsets[-1]) != len(postings):
            raise ValueError(f"{path}: inconsistent ngram arrays")
        index._install(offsets, postings, base_ids.astype(np.int64, copy=False))
        return index
