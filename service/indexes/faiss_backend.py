"""FAISS implementations of the index interfaces (the embedded default backend)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

import faiss
import numpy as np
import numpy.typing as npt

from service.indexes.base import CodeArray, IdArray, VectorArray

logger = logging.getLogger(__name__)

#: Distance reported for an empty result slot: sorts after every real Hamming distance.
EMPTY_DISTANCE = np.iinfo(np.int32).max


def _as_ids(ids: npt.ArrayLike) -> IdArray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _last_occurrence(ids: IdArray) -> npt.NDArray[np.intp]:
    """Positions of the last occurrence of each distinct id, so a later row wins."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


class FaissBinaryIndex:
    """Exact Hamming search over packed codes, several codes per id.

    `IndexBinaryIDMap(IndexBinaryFlat)`: code_bytes + 8 bytes per code. `remove_ids` drops
    every code carrying a removed id (checked with duplicate ids). Search returns each id
    once, at its best distance, which is what a caller ranking profiles needs.
    """

    def __init__(self, code_bytes: int, *, _index: faiss.IndexBinaryIDMap | None = None) -> None:
        if code_bytes <= 0:
            raise ValueError("code_bytes must be positive")
        self.code_bytes = code_bytes
        self._index = _index or faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(code_bytes * 8))
        # Counting sort instead of a heap per query: several times faster for a batch of
        # queries (a scan's chunk) at the k this index is searched with, as fast for one.
        faiss.downcast_IndexBinary(self._index.index).use_heap = False  # type: ignore[attr-defined]
        # How many codes one id usually has, to size the first over-fetch of a search.
        self._views = max(1, round(self._index.ntotal / max(1, self.ntotal_ids)))

    def add(self, ids: IdArray, codes: CodeArray) -> None:
        ids = _as_ids(ids)
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.code_bytes or len(codes) != len(ids):
            raise ValueError(
                f"codes must be ({len(ids)}, {self.code_bytes}) uint8, got {codes.shape}"
            )
        if not len(ids):
            return
        self._index.add_with_ids(codes, ids)
        _, per_id = np.unique(ids, return_counts=True)
        self._views = max(self._views, int(per_id.max()))

    def remove(self, ids: IdArray) -> int:
        ids = _as_ids(ids)
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
        fetch = min(total, k * self._views)
        pending = np.arange(m)
        while len(pending):
            d, i = self._index.search(codes[pending], fetch)
            short = []
            for row, q in enumerate(pending):
                valid = i[row] >= 0
                uniq, first = np.unique(i[row][valid], return_index=True)
                if len(uniq) < k and fetch < total:
                    short.append(q)
                    continue
                # Results come nearest first, so the first hit of an id is its best distance.
                first.sort()
                take = first[:k]
                out_ids[q, : len(take)] = i[row][valid][take]
                distances[q, : len(take)] = d[row][valid][take]
            pending = np.asarray(short, dtype=np.intp)
            fetch = min(total, fetch * 2)
        return distances, out_ids

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ntotal_ids(self) -> int:
        """Number of distinct ids (profiles) held; O(number of codes)."""
        if not self._index.ntotal:
            return 0
        return int(len(np.unique(faiss.vector_to_array(self._index.id_map))))

    def save(self, path: Path) -> None:
        faiss.write_index_binary(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> Self:
        index = faiss.read_index_binary(str(path))
        if not isinstance(index, faiss.IndexBinaryIDMap):
            raise ValueError(f"{path} is not an IDMap binary index")
        return cls(index.d // 8, _index=index)


class FaissFloatIndex:
    """Inner-product search over float16-compressed vectors, one vector per id.

    Small indexes are `IDMap,SQfp16`: an exact full scan, half the memory of float32 (2 bytes
    per dimension + 8 per id; recall@10 close to exact). A full scan costs time in proportion
    to the index, so once it holds `IVF_FROM` vectors it becomes an inverted file over the same
    float16 codes (`IVF_LISTS` k-means cells trained on the vectors themselves, `IVF_PROBES` of
    them searched per query): about 1/30 of the scan for the same memory. A copy's bio lies
    close to its original, in the same or a neighbouring cell, which probing many cells keeps
    (a test checks that near-copies are still found).
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
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(
                f"vectors must be ({len(ids)}, {self.dim}) float32, got {vectors.shape}"
            )
        if not len(ids):
            return
        keep = _last_occurrence(ids)
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
            faiss.ScalarQuantizer.QT_fp16,
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
        ids = _as_ids(ids)
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
