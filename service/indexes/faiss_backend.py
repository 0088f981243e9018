"""FAISS implementations of the index interfaces (the embedded default backend)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

import faiss
import numpy as np
import numpy.typing as npt

from service.indexes.base import (
    CodeArray,
    IdArray,
    VectorArray,
    as_ids,
    checked_rows,
    last_occurrence,
)

logger = logging.getLogger(__name__)

#: Distance reported for an empty result slot: sorts after every real Hamming distance.
EMPTY_DISTANCE = np.iinfo(np.int32).max


def _first_of_each_id(ids: IdArray) -> npt.NDArray[np.bool_]:
    """Per row of search results (nearest first), where each id appears for the first time:
    its best distance, since one id has several codes."""
    order = np.argsort(ids, axis=1, kind="stable")  # equal ids stay in distance order
    in_order = np.take_along_axis(ids, order, axis=1)
    starts = np.ones(in_order.shape, dtype=bool)
    starts[:, 1:] = in_order[:, 1:] != in_order[:, :-1]
    first = np.zeros(ids.shape, dtype=bool)
    np.put_along_axis(first, order, starts, axis=1)
    return first & (ids >= 0)


class FaissBinaryIndex:
    """Hamming search over packed codes, several codes per id.

    Small indexes are `IndexBinaryIDMap(IndexBinaryFlat)`: an exact full scan, code_bytes + 8
    bytes per code. A full scan costs time in proportion to the index (about 3 ms per avatar
    query at 200,000 codes), so once it holds `IVF_FROM` codes it becomes an inverted file
    (`IndexBinaryIVF`: `IVF_LISTS` binary k-means cells trained on the codes themselves,
    `IVF_PROBES` of them searched per query), about a sixth of the time at 200,000 codes and
    a falling share as it grows. A copy's hash lies a few bits from its original's, in the
    same or a neighbouring cell, which probing many cells keeps (a test checks that
    near-copies are still found). `remove_ids` drops every code carrying a removed id. Search
    returns each id once, at its best distance, which is what a caller ranking profiles needs.
    """

    IVF_FROM = 50_000
    IVF_LISTS = 1024
    IVF_PROBES = 32
    IVF_TRAINING_SAMPLE = 50_000
    FIRST_FETCH_FACTOR = 2

    def __init__(self, code_bytes: int, *, _index: faiss.IndexBinary | None = None) -> None:
        if code_bytes <= 0:
            raise ValueError("code_bytes must be positive")
        self.code_bytes = code_bytes
        self._index = _index or faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(code_bytes * 8))
        if self.is_inverted_file:
            self._index.nprobe = self.IVF_PROBES  # type: ignore[attr-defined]
        else:
            # Counting sort instead of a heap per query: several times faster for a batch of
            # queries (a scan's chunk) at the k this index is searched with, as fast for one.
            # (The inverted file answers nothing without its heap.)
            faiss.downcast_IndexBinary(self._index.index).use_heap = False  # type: ignore[attr-defined]

    @property
    def is_inverted_file(self) -> bool:
        return isinstance(self._index, faiss.IndexBinaryIVF)

    def add(self, ids: IdArray, codes: CodeArray) -> None:
        ids, codes = checked_rows(ids, codes, width=self.code_bytes, dtype=np.uint8, what="codes")
        if not len(ids):
            return
        self._index.add_with_ids(codes, ids)
        if not self.is_inverted_file and self._index.ntotal >= self.IVF_FROM:
            self._become_inverted_file()

    def _become_inverted_file(self) -> None:
        """Move every code into a trained inverted file (once, when the index grows)."""
        mapped = faiss.downcast_IndexBinary(self._index)
        flat = faiss.downcast_IndexBinary(mapped.index)  # type: ignore[attr-defined]
        ids = faiss.vector_to_array(mapped.id_map).astype(np.int64)  # type: ignore[attr-defined]
        codes = faiss.vector_to_array(flat.xb).reshape(-1, self.code_bytes)  # type: ignore[attr-defined]
        logger.info("avatar index: %d codes, moving to an inverted file", len(ids))
        quantizer = faiss.IndexBinaryFlat(self.code_bytes * 8)
        inverted = faiss.IndexBinaryIVF(quantizer, self.code_bytes * 8, self.IVF_LISTS)
        # A fixed-seed sample keeps a rebuild from the same store the same index.
        sample = np.random.default_rng(0).permutation(len(codes))[: self.IVF_TRAINING_SAMPLE]
        inverted.train(np.ascontiguousarray(codes[np.sort(sample)]))
        inverted.add_with_ids(np.ascontiguousarray(codes), ids)
        inverted.nprobe = self.IVF_PROBES
        self._quantizer = quantizer  # the inverted file refers to it; keep it alive
        self._index = inverted

    def remove(self, ids: IdArray) -> int:
        ids = as_ids(ids)
        if not len(ids) or not self._index.ntotal:
            return 0
        return int(self._index.remove_ids(ids))  # type: ignore[arg-type]

    def search(self, codes: CodeArray, k: int) -> tuple[npt.NDArray[np.int32], IdArray]:
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, self.code_bytes)
        m = len(codes)
        distances = np.full((m, k), EMPTY_DISTANCE, dtype=np.int32)
        out_ids = np.full((m, k), -1, dtype=np.int64)
        total = self._index.ntotal
        if not m or k <= 0 or not total:
            return distances, out_ids
        # Twice k codes first: an id's other views are seldom among a code's nearest, and a
        # row that still falls short of k distinct ids asks again. Fetching k per view up
        # front made FAISS keep heaps several times larger, for the same answers.
        fetch = min(total, k * self.FIRST_FETCH_FACTOR)
        pending = np.arange(m)
        while len(pending):
            d, i = self._index.search(codes[pending], fetch)
            first = _first_of_each_id(i)
            found = first.sum(axis=1)
            # A row with fewer than k distinct ids among its hits asks again for more.
            done = (found >= k) | (fetch >= total)
            rank = np.cumsum(first, axis=1) - 1
            take = first & (rank < k) & done[:, np.newaxis]
            rows, cols = np.nonzero(take)
            out_ids[pending[rows], rank[rows, cols]] = i[rows, cols]
            distances[pending[rows], rank[rows, cols]] = d[rows, cols]
            pending = pending[~done]
            fetch = min(total, fetch * 2)
        return distances, out_ids

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ntotal_ids(self) -> int:
        """Number of distinct ids (profiles) held; O(number of codes)."""
        if not self._index.ntotal:
            return 0
        if self.is_inverted_file:
            lists = faiss.downcast_InvertedLists(self._index.invlists)  # type: ignore[attr-defined]
            ids = [
                faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
                for n in range(lists.nlist)
                if lists.list_size(n)
            ]
            return int(len(np.unique(np.concatenate(ids))))
        return int(len(np.unique(faiss.vector_to_array(self._index.id_map))))  # type: ignore[attr-defined]

    def save(self, path: Path) -> None:
        faiss.write_index_binary(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> Self:
        index = faiss.read_index_binary(str(path))
        if not isinstance(index, faiss.IndexBinaryIDMap | faiss.IndexBinaryIVF):
            raise ValueError(f"{path} is not an IDMap or inverted-file binary index")
        loaded = cls(index.d // 8, _index=index)
        if not loaded.is_inverted_file and len(loaded) >= cls.IVF_FROM:
            loaded._become_inverted_file()  # saved by a version that kept it flat
        return loaded


class FaissFloatIndex:
    """Inner-product search over compressed vectors, one vector per id.

    Small indexes are `IDMap,SQfp16`: an exact full scan, half the memory of float32 (2 bytes
    per dimension + 8 per id; recall@10 close to exact). A full scan costs time in proportion
    to the index, so once it holds `IVF_FROM` vectors it becomes an inverted file
    (`IVF_LISTS` k-means cells trained on the vectors themselves, `IVF_PROBES` of them searched
    per query): about 1/30 of the scan. Its codes are 8-bit scalar-quantized, each dimension
    over its own trained range: 1 byte per dimension, half of float16, which at a million
    profiles is what keeps the server under 1 KB a profile. Measured on 100,000 bios, 8 bits
    instead of float16 cost 0.0002 of recall@32 against exact search (0.8586 vs 0.8588: the
    cells probed, not the codes, set the recall; `bench.speed` reports it at scale). A copy's
    bio lies close to its original, in the same or a neighbouring cell, which probing many
    cells keeps (a test checks that near-copies are still found).
    """

    IVF_FROM = 50_000
    IVF_LISTS = 1024
    IVF_PROBES = 32
    IVF_TRAINING_SAMPLE = 40_000

    def __init__(self, dim: int, *, _index: faiss.Index | None = None) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._index = _index or faiss.index_factory(dim, "IDMap,SQfp16", faiss.METRIC_INNER_PRODUCT)
        if self.is_inverted_file:
            faiss.extract_index_ivf(self._index).nprobe = self.IVF_PROBES

    @property
    def is_inverted_file(self) -> bool:
        return isinstance(self._index, faiss.IndexIVF)

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        ids, vectors = checked_rows(ids, vectors, width=self.dim, dtype=np.float32, what="vectors")
        if not len(ids):
            return
        keep = last_occurrence(ids)
        if len(keep) != len(ids):
            ids, vectors = ids[keep], np.ascontiguousarray(vectors[keep])
        if self._index.ntotal:
            # Replace, never duplicate: the matcher relies on one vector per profile.
            self._index.remove_ids(ids)  # type: ignore[arg-type]
        self._index.add_with_ids(vectors, ids)
        if not self.is_inverted_file and self._index.ntotal >= self.IVF_FROM:
            self._become_inverted_file()

    def _become_inverted_file(self) -> None:
        """Move every vector into a trained inverted file (once, when the index grows)."""
        mapped = faiss.downcast_index(self._index)  # IndexIDMap over the flat float16 codes
        flat = faiss.downcast_index(mapped.index)  # type: ignore[attr-defined]
        ids = faiss.vector_to_array(mapped.id_map).astype(np.int64)  # type: ignore[attr-defined]
        vectors = flat.reconstruct_n(0, flat.ntotal)
        logger.info("bio index: %d vectors, moving to an inverted file", len(ids))
        quantizer = faiss.IndexFlatIP(self.dim)
        inverted = faiss.IndexIVFScalarQuantizer(
            quantizer,
            self.dim,
            self.IVF_LISTS,
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )
        # A fixed-seed sample keeps a rebuild from the same store the same index.
        sample = np.random.default_rng(0).permutation(len(vectors))[: self.IVF_TRAINING_SAMPLE]
        inverted.cp.niter = 10
        inverted.train(np.ascontiguousarray(vectors[np.sort(sample)]))
        inverted.add_with_ids(vectors, ids)
        inverted.nprobe = self.IVF_PROBES
        self._quantizer = quantizer  # the inverted file refers to it; keep it alive
        self._index = inverted

    def remove(self, ids: IdArray) -> int:
        ids = as_ids(ids)
        if not len(ids) or not self._index.ntotal:
            return 0
        return int(self._index.remove_ids(ids))  # type: ignore[arg-type]

    def search(self, vectors: VectorArray, k: int) -> tuple[npt.NDArray[np.float32], IdArray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        m = len(vectors)
        if not m or k <= 0 or not self._index.ntotal:
            return (
                np.full((m, max(k, 0)), -np.inf, dtype=np.float32),
                np.full((m, max(k, 0)), -1, dtype=np.int64),
            )
        scores, ids = self._index.search(vectors, k)
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> Self:
        index = faiss.read_index(str(path))
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"{path} is not an inner-product index")
        return cls(index.d, _index=index)
