"""The name-and-handle candidate index: profile ids by shared hashed keys (character n-grams).

Layout, chosen to stay compact and fast at millions of profiles:

- keys are hashed into 2**bucket_bits buckets; a bucket's posting list holds profile ids;
- an immutable CSR *base* (`offsets`, `postings`) holds most postings in flat numpy arrays
  (uint32 ids while every id fits, so ~4 bytes per posting);
- a small mutable *delta* (bucket -> set of ids, id -> its buckets) takes recent adds;
- *stale* ids are base ids whose base postings no longer count (removed, or re-added with new
  keys that now live in the delta); they are filtered at query time and purged by `compact()`;
- each profile's comparison strings (folded name, handle), when given, are kept beside its
  postings as UTF-8 in one flat buffer (about 25 bytes a profile), so the candidates of a search
  can be re-ranked by the true similarity without a trip to the store (`search_texts`).

A query reads only the posting lists of its own buckets, never the whole index.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np
import numpy.typing as npt

from service.indexes.base import checked_names, last_occurrence

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
_U32_LIMIT = np.iinfo(np.uint32).max
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads any key bits evenly
# Ids are looked up through a dense position table while the largest base id is below this
# many times the number of base ids (so the table costs at most 8 bytes a profile).
DENSE_ID_FACTOR = 2


def _runs(values: npt.NDArray[np.integer]) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp]]:
    """The distinct values of a sorted, non-empty array and how many times each occurs."""
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return values[starts], np.diff(starts, append=len(values))


def _counted(
    hits: npt.NDArray[np.integer], wanted: int
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp]]:
    """`_runs` of sorted `hits`, less the values seen once when `wanted` or more are seen at
    least twice: a search keeps only its best-counted ids, and most ids read share a single
    bucket with the query, so counting only the repeated ones halves the work."""
    repeats = hits[1:][hits[1:] == hits[:-1]]  # each value once less than it occurs
    if len(repeats):
        ids, counts = _runs(repeats)
        if len(ids) >= wanted:
            return ids, counts + 1
    return _runs(hits)


class NameHits(NamedTuple):
    """A search's ids, most shared keys first, with each one's count and stored strings."""

    ids: npt.NDArray[np.int64]
    shared: npt.NDArray[np.int64]
    names: list[str]
    handles: list[str]


Texts = tuple[str, str]  # (folded name, folded handle) of one profile
_NO_TEXT: Texts = ("", "")


def _top_counts(
    ids: npt.NDArray[np.integer], counts: npt.NDArray[np.intp], k: int
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp]]:
    """The ids whose count is at least the k-th largest (every one tied with it kept). Counts
    are small integers, so the k-th largest comes from their histogram, not a partition."""
    if len(ids) <= k:
        return ids, counts
    at_least = np.cumsum(np.bincount(counts)[::-1])[::-1]
    kth = int(np.flatnonzero(at_least >= k)[-1])
    keep = counts >= kth
    return ids[keep], counts[keep]


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
        wide_postings: int = 2_000_000,
        delta_limit: int = 10_000,
    ) -> None:
        if not 8 <= bucket_bits <= 30:
            raise ValueError("bucket_bits must be in [8, 30]")
        self.bucket_bits = bucket_bits
        self.stop_fraction = stop_fraction
        self.min_stop_postings = min_stop_postings
        self.max_postings = max_postings
        self.wide_postings = wide_postings
        self.delta_limit = delta_limit
        n_buckets = 1 << bucket_bits
        self._offsets: npt.NDArray[np.integer] = np.zeros(n_buckets + 1, dtype=np.uint32)
        self._postings: npt.NDArray[np.integer] = np.zeros(0, dtype=np.uint32)
        self._base_ids: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # sorted
        self._stale: set[int] = set()
        self._stale_sorted: npt.NDArray[np.int64] | None = None
        self._delta_inv: dict[int, set[int]] = {}
        self._delta_keys: dict[int, npt.NDArray[np.int64]] = {}
        # Base profiles' strings: name then handle of base position p span
        # _text[_text_offsets[2p] : _text_offsets[2p + 1] : _text_offsets[2p + 2]].
        self._text = b""
        self._text_offsets: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._delta_texts: dict[int, Texts] = {}
        self._key_counts: npt.NDArray[np.uint8] = np.zeros(
            0, dtype=np.uint8
        )  # buckets, per base id
        # Base position by id, -1 where none, while ids are dense enough for it to stay small
        # (4 bytes an id): a search looks up thousands of ids, and a binary search each was a
        # fifth of its time. None when ids are sparse; then `np.searchsorted` finds them.
        self._position_by_id: npt.NDArray[np.int32] | None = None

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
        return int(
            self._offsets.nbytes
            + self._postings.nbytes
            + self._base_ids.nbytes
            + len(self._text)
            + self._text_offsets.nbytes
            + self._key_counts.nbytes
            + (0 if self._position_by_id is None else self._position_by_id.nbytes)
        )

    @property
    def pending_changes(self) -> int:
        """Delta ids plus stale ids: what `compact()` would fold into the base."""
        return len(self._delta_keys) + len(self._stale)

    def _in_base(self, pid: int) -> bool:
        i = int(np.searchsorted(self._base_ids, pid))
        return i < len(self._base_ids) and int(self._base_ids[i]) == pid

    # -- writes -----------------------------------------------------------------------------

    def add(self, profile_id: int, keys: npt.ArrayLike, texts: Texts | None = None) -> None:
        """Index `profile_id` under `keys`, replacing any keys (and strings) it had before.

        `texts` is the profile's (folded name, folded handle), returned with it by
        `search_texts`; empty strings when not given."""
        pid = int(profile_id)
        self._forget(pid)
        buckets = self.buckets(keys)
        self._delta_keys[pid] = buckets
        self._delta_texts[pid] = texts or _NO_TEXT
        for b in buckets.tolist():
            self._delta_inv.setdefault(b, set()).add(pid)
        self._maybe_compact()

    def add_many(
        self,
        ids: npt.ArrayLike,
        keys_list: Sequence[npt.ArrayLike],
        texts: Sequence[Texts] | None = None,
    ) -> None:
        """Index many profiles at once, `texts[i]` the strings of `ids[i]` (see `add`); a later
        duplicate id in the batch wins.

        Small batches go to the delta; large ones are merged straight into the base, so a
        rebuild of millions of profiles costs a few vectorised merges, not millions of dict ops.
        """
        id_arr = checked_names(ids, keys_list, texts)
        all_texts: Sequence[Texts] = texts if texts is not None else [_NO_TEXT] * len(id_arr)
        if len(id_arr) < max(1, self.delta_limit // 4):
            for pid, keys, pair in zip(id_arr.tolist(), keys_list, all_texts, strict=True):
                self.add(pid, keys, pair)
            return
        keep = last_occurrence(id_arr)
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
        extra_texts = [all_texts[i] for i in keep.tolist()]
        self._install(*self._merged(pair_buckets, pair_ids, id_arr, extra_texts))

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
        self._delta_texts.pop(pid, None)
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
            self._install(*self._merged(empty, empty, empty, []))

    def _install(
        self,
        offsets: npt.NDArray[np.integer],
        postings: npt.NDArray[np.integer],
        base_ids: npt.NDArray[np.int64],
        text: bytes,
        text_offsets: npt.NDArray[np.int64],
        key_counts: npt.NDArray[np.uint8],
    ) -> None:
        self._offsets, self._postings, self._base_ids = offsets, postings, base_ids
        self._text, self._text_offsets, self._key_counts = text, text_offsets, key_counts
        self._position_by_id = None
        if len(base_ids) and base_ids[0] >= 0 and base_ids[-1] < DENSE_ID_FACTOR * len(base_ids):
            self._position_by_id = np.full(int(base_ids[-1]) + 1, -1, dtype=np.int32)
            self._position_by_id[base_ids] = np.arange(len(base_ids), dtype=np.int32)
        self._stale = set()
        self._stale_sorted = None
        self._delta_inv = {}
        self._delta_keys = {}
        self._delta_texts = {}

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
        extra_texts: Sequence[Texts],
    ) -> tuple[
        npt.NDArray[np.integer],
        npt.NDArray[np.integer],
        npt.NDArray[np.int64],
        bytes,
        npt.NDArray[np.int64],
        npt.NDArray[np.uint8],
    ]:
        """New (offsets, postings, base_ids, text, text_offsets, key_counts): base minus stale,
        plus delta, plus `extra_*` (profiles in neither the delta nor the live base).

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
        kept_at = np.arange(len(base_ids))
        if len(stale):
            kept_at = kept_at[~np.isin(base_ids, stale)]
            base_ids = base_ids[kept_at]
        added = np.concatenate([np.asarray(delta_ids, dtype=np.int64), extra_profiles])
        added_texts = [self._delta_texts.get(p, _NO_TEXT) for p in delta_ids] + list(extra_texts)
        # Buckets of each extra profile (one posting per bucket; none for a profile without keys).
        extra_counts = np.zeros(len(extra_profiles), dtype=np.int64)
        if len(extra_ids):
            seen, counted = np.unique(extra_ids, return_counts=True)
            at = np.searchsorted(seen, extra_profiles)
            hit = at < len(seen)
            hit[hit] = seen[at[hit]] == extra_profiles[hit]
            extra_counts[hit] = counted[at[hit]]
        added_counts = np.concatenate([delta_len, extra_counts])
        text, text_offsets, key_counts = self._merged_texts(
            base_ids, kept_at, added, added_texts, added_counts
        )
        base_ids = np.union1d(base_ids, added).astype(np.int64)

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
        return offsets, postings, base_ids, text, text_offsets, key_counts

    def _merged_texts(
        self,
        kept_ids: npt.NDArray[np.int64],
        kept_at: npt.NDArray[np.intp],
        added: npt.NDArray[np.int64],
        added_texts: Sequence[Texts],
        added_counts: npt.NDArray[np.integer],
    ) -> tuple[bytes, npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """The strings and key counts of the kept base ids (at base positions `kept_at`,
        ascending ids) and of `added` (none of them kept), in the order of their union's ids:
        the kept strings are copied in runs, so the cost is one pass over the buffer plus a
        step per added or dropped id."""
        old, old_off = self._text, self._text_offsets
        order = np.argsort(added, kind="stable")
        added = added[order]
        added_counts = np.minimum(np.asarray(added_counts, dtype=np.int64)[order], 255)
        encoded = [(added_texts[i][0].encode(), added_texts[i][1].encode()) for i in order.tolist()]
        # Lengths (name, handle) of every profile in the merged order.
        kept_lengths = np.diff(old_off)[
            np.stack([2 * kept_at, 2 * kept_at + 1], axis=1).reshape(-1)
        ].reshape(-1, 2)
        added_lengths = np.asarray([(len(n), len(h)) for n, h in encoded], dtype=np.int64)
        slots = np.searchsorted(kept_ids, added) + np.arange(len(added))
        lengths = np.zeros((len(kept_ids) + len(added), 2), dtype=np.int64)
        is_added = np.zeros(len(lengths), dtype=bool)
        is_added[slots] = True
        lengths[is_added] = added_lengths.reshape(-1, 2)
        lengths[~is_added] = kept_lengths
        offsets = np.zeros(2 * len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths.reshape(-1), out=offsets[1:])
        key_counts = np.zeros(len(lengths), dtype=np.uint8)
        key_counts[is_added] = added_counts
        key_counts[~is_added] = self._key_counts[kept_at]
        # Kept positions run on contiguously until a dropped id or an added one breaks them.
        view = memoryview(old)
        before = np.searchsorted(kept_ids, added)  # kept ids ahead of each added one
        breaks = np.flatnonzero(np.diff(kept_at) != 1) + 1
        cuts = np.union1d(np.union1d(breaks, before), [0, len(kept_at)]).tolist()
        added_at: dict[int, list[int]] = {}
        for i, b in enumerate(before.tolist()):
            added_at.setdefault(b, []).append(i)
        pieces: list[bytes | memoryview] = []
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            for i in added_at.get(lo, ()):
                pieces.extend(encoded[i])
            if hi > lo:
                first, last = int(kept_at[lo]), int(kept_at[hi - 1])
                pieces.append(view[int(old_off[2 * first]) : int(old_off[2 * last + 2])])
        if len(kept_at):
            for i in added_at.get(len(kept_at), ()):
                pieces.extend(encoded[i])
        else:
            pieces = [part for pair in encoded for part in pair]
        return b"".join(pieces), offsets, key_counts

    # -- reads ------------------------------------------------------------------------------

    def search(self, keys: npt.ArrayLike, k: int) -> list[tuple[int, int]]:
        """Up to `k` (id, shared key count), most shared first, ties by smaller id.

        Buckets held by more than `stop_fraction` of all profiles (and `min_stop_postings`)
        are stop-grams: skipped while the query has rarer ones, because they cost the most
        to read and tell the least. A query made only of stop-grams uses its 3 rarest. Buckets
        are read rarest first until `max_postings` ids were read (at least 3 buckets), so a
        query's cost stays bounded however common its grams are.
        """
        if k <= 0:
            return []
        ids, counts, _ = self._shared_counts(
            keys, skip_stop_grams=True, budget=self.max_postings, wanted=k
        )
        ids, counts = _top_counts(ids, counts, k)
        order = np.lexsort((ids, -counts))[:k]
        return list(zip(ids[order].tolist(), counts[order].tolist(), strict=True))

    def search_texts(self, keys: npt.ArrayLike, k: int) -> NameHits:
        """Up to `k` ids ranked for re-ranking by a string similarity, with their strings.

        Unlike `search`, every bucket of the query is read (rarest first, up to
        `wide_postings`), and ids are ranked by the Dice coefficient of their buckets and the
        query's, 2 * shared / (query's + theirs), rather than by the shared count alone: a
        short name sharing 4 of its 8 grams is likelier to be alike than a long one sharing 4
        of 20. Only the `2 * k` ids sharing the most (with ties) are weighed so. The answer is
        best first; among equal coefficients, more shared first, then smaller id.
        """
        if k <= 0:
            return NameHits(np.zeros(0, np.int64), np.zeros(0, np.int64), [], [])
        found, counts, n_query = self._shared_counts(
            keys, skip_stop_grams=False, budget=self.wide_postings, wanted=2 * k
        )
        found, counts = _top_counts(found, counts, 2 * k)
        ids: npt.NDArray[np.int64] = found.astype(np.int64, copy=False)
        positions = self._base_positions(ids)
        dice = counts / (n_query + self._key_counts_at(ids, positions))
        if len(ids) > k:
            best = np.argpartition(-dice, k - 1)[:k]
            ids, counts, dice, positions = ids[best], counts[best], dice[best], positions[best]
        order = np.lexsort((ids, -counts, -dice))
        ids, positions = ids[order], positions[order]
        return NameHits(ids, counts[order].astype(np.int64), *self._texts_of(ids, positions))

    def _base_positions(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """Each id's position in the base, for ids the base holds; any valid position for
        others (delta ids, whose own values the callers then put in its place); 0 for all
        while the base is empty, where callers read no position."""
        if not len(self._base_ids):
            return np.zeros(len(ids), dtype=np.intp)
        table = self._position_by_id
        if table is None:
            at = np.searchsorted(self._base_ids, ids)
            return np.minimum(at, len(self._base_ids) - 1)  # type: ignore[no-any-return]
        at = table[np.minimum(ids, len(table) - 1)].astype(np.intp)
        return np.maximum(at, 0)  # type: ignore[no-any-return]

    def _key_counts_at(
        self, ids: npt.NDArray[np.int64], positions: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.int64]:
        """How many buckets each held id has, given its base position."""
        out = np.zeros(len(ids), dtype=np.int64)
        if len(self._base_ids) and len(ids):
            out = self._key_counts[positions].astype(np.int64)
        if self._delta_keys and len(ids):
            recent = self._delta_keys.keys() & set(ids.tolist())
            if recent:
                for i in np.flatnonzero(np.isin(ids, list(recent))).tolist():
                    out[i] = len(self._delta_keys[int(ids[i])])
        return out

    def _shared_counts(
        self, keys: npt.ArrayLike, *, skip_stop_grams: bool, budget: int, wanted: int
    ) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp], int]:
        """(ids, shared bucket counts) of the ids sharing a bucket read, ids ascending, and
        the query's number of buckets: every such id, or only those sharing two or more when
        at least `wanted` do (the `wanted` best never need the others)."""
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.intp)
        buckets = self.buckets(keys)
        if not len(buckets) or not len(self):
            return (*empty, len(buckets))
        starts = self._offsets[buckets].astype(np.int64)
        ends = self._offsets[buckets + 1].astype(np.int64)
        delta_sets = [self._delta_inv.get(b) for b in buckets.tolist()]
        sizes = ends - starts + np.fromiter((len(s) if s else 0 for s in delta_sets), np.int64)
        by_size = np.argsort(sizes, kind="stable")
        use = by_size = by_size[sizes[by_size] > 0]
        if skip_stop_grams:
            limit = max(self.min_stop_postings, self.stop_fraction * len(self))
            use = by_size[sizes[by_size] <= limit]
            if not len(use):
                use = by_size[:3]
        # Rarest buckets first, within a budget of postings: bounds the cost of a query.
        within = np.cumsum(sizes[use]) <= budget
        within[: min(3, len(within))] = True
        use = use[within]
        if not len(use):
            return (*empty, len(buckets))
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
            return (*empty, len(buckets))
        ids, counts = _counted(hits, wanted)
        return ids, counts, len(buckets)

    def texts(self, ids: npt.ArrayLike) -> tuple[list[str], list[str]]:
        """The stored (names, handles) of `ids`, which must be held; "" where none was given."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(id_arr):
            return [], []
        return self._texts_of(id_arr, self._base_positions(id_arr))

    def _texts_of(
        self, id_arr: npt.NDArray[np.int64], positions: npt.NDArray[np.integer]
    ) -> tuple[list[str], list[str]]:
        """`texts`, given each id's base position (`_base_positions`)."""
        if not len(id_arr):
            return [], []
        if len(self._base_ids):
            at = 2 * positions
            off = self._text_offsets
            fast = self._texts_at(off[at], off[at + 1], off[at + 2])
            if fast is not None:
                if self._delta_texts:  # added or replaced since the last merge: theirs win
                    for row, pid in enumerate(id_arr.tolist()):
                        pair = self._delta_texts.get(pid)
                        if pair is not None:
                            fast[0][row], fast[1][row] = pair
                return fast
            bounds: Iterable[tuple[int, int, int]] = zip(
                off[at].tolist(), off[at + 1].tolist(), off[at + 2].tolist(), strict=True
            )
        else:
            bounds = ((0, 0, 0),) * len(id_arr)
        text, delta = self._text, self._delta_texts
        names: list[str] = []
        handles: list[str] = []
        for pid, (lo, mid, hi) in zip(id_arr.tolist(), bounds, strict=True):
            pair = delta.get(pid)
            if pair is None:
                names.append(text[lo:mid].decode())
                handles.append(text[mid:hi].decode())
            else:
                names.append(pair[0])
                handles.append(pair[1])
        return names, handles

    def _texts_at(
        self,
        starts: npt.NDArray[np.int64],
        mids: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
    ) -> tuple[list[str], list[str]] | None:
        """`texts` of base entries in one decode: their byte ranges gathered by numpy, each
        followed by a NUL, decoded once and split (a check reads thousands, and a decode
        each was most of its name search). None when a stored text holds a NUL itself, so
        the split would not line up."""
        piece_starts = np.stack([starts, mids], axis=1).reshape(-1)
        lengths = np.stack([mids - starts, ends - mids], axis=1).reshape(-1)
        before = np.cumsum(lengths) - lengths  # each piece's first byte among all pieces' bytes
        src = np.repeat(piece_starts - before, lengths) + np.arange(int(lengths.sum()))
        out = np.zeros(len(src) + len(lengths), dtype=np.uint8)  # NUL after every piece
        out[np.arange(len(src)) + np.repeat(np.arange(len(lengths)), lengths)] = np.frombuffer(
            self._text, dtype=np.uint8
        )[src]
        parts = out[:-1].tobytes().decode().split("\0")
        if len(parts) != len(lengths):
            return None
        return parts[0::2], parts[1::2]

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the compacted state to `path` (npz, no pickle); does not mutate the index."""
        if self.pending_changes:
            empty = np.zeros(0, dtype=np.int64)
            merged = self._merged(empty, empty, empty, [])
            offsets, postings, base_ids, text, text_offsets, key_counts = merged
        else:
            offsets, postings, base_ids = self._offsets, self._postings, self._base_ids
            text, text_offsets, key_counts = self._text, self._text_offsets, self._key_counts
        with open(path, "wb") as fh:
            np.savez(
                fh,
                format_version=np.int64(FORMAT_VERSION),
                bucket_bits=np.int64(self.bucket_bits),
                offsets=offsets,
                postings=postings,
                base_ids=base_ids,
                text=np.frombuffer(text, dtype=np.uint8),
                text_offsets=text_offsets,
                key_counts=key_counts,
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        stop_fraction: float = 0.05,
        min_stop_postings: int = 1_000,
        max_postings: int = 200_000,
        wide_postings: int = 2_000_000,
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
                wide_postings=wide_postings,
                delta_limit=delta_limit,
            )
            offsets, postings, base_ids = data["offsets"], data["postings"], data["base_ids"]
            text, text_offsets = data["text"].tobytes(), data["text_offsets"].astype(np.int64)
            key_counts = data["key_counts"].astype(np.uint8)
        if len(offsets) != index.n_buckets + 1 or int(offsets[-1]) != len(postings):
            raise ValueError(f"{path}: inconsistent ngram arrays")
        if (
            len(text_offsets) != 2 * len(base_ids) + 1
            or int(text_offsets[-1]) != len(text)
            or len(key_counts) != len(base_ids)
        ):
            raise ValueError(f"{path}: inconsistent ngram strings")
        index._install(
            offsets, postings, base_ids.astype(np.int64, copy=False), text, text_offsets, key_counts
        )
        return index
