"""The small interfaces every index backend implements.

Indexes key on the store's integer primary key (int64), so no mapping table sits between a
search hit and its profile. A distributed backend (Milvus) only has to implement these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from service.indexes.ngram import NameHits

IdArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.uint8]
VectorArray = npt.NDArray[np.float32]


def as_ids(ids: npt.ArrayLike) -> IdArray:
    """Profile ids as a flat contiguous int64 array, as every backend takes them."""
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def checked_rows(
    ids: npt.ArrayLike, rows: npt.ArrayLike, *, width: int, dtype: type[np.generic], what: str
) -> tuple[IdArray, np.ndarray]:
    """(ids, rows) of an `add`, or ValueError unless `rows` is (len(ids), width): what every
    backend checks before it writes, so a wrong shape never reaches an index half-added."""
    id_arr = as_ids(ids)
    arr = np.ascontiguousarray(rows, dtype=dtype)
    if arr.ndim != 2 or arr.shape[1] != width or len(arr) != len(id_arr):
        name = np.dtype(dtype).name
        raise ValueError(f"{what} must be ({len(id_arr)}, {width}) {name}, got {arr.shape}")
    return id_arr, arr


def last_occurrence(ids: IdArray) -> npt.NDArray[np.intp]:
    """Positions of the last occurrence of each distinct id, ascending: a batch's later row
    for an id wins over an earlier one."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    return np.sort(len(ids) - 1 - first_in_reversed)


def checked_names(
    ids: npt.ArrayLike,
    keys_list: Sequence[npt.ArrayLike],
    texts: Sequence[tuple[str, str]] | None,
) -> IdArray:
    """The ids of a name index's `add_many`, or ValueError unless its keys and (name, handle)
    strings, when given, are one per id."""
    id_arr = as_ids(ids)
    if len(id_arr) != len(keys_list) or (texts is not None and len(texts) != len(id_arr)):
        raise ValueError("ids, keys_list and texts differ in length")
    return id_arr


@runtime_checkable
class BinaryIndex(Protocol):
    """Packed binary codes (avatar hashes) searched by Hamming distance.

    An id may own several codes (an avatar hashed in several views); `remove` drops them all.
    """

    code_bytes: int

    def add(self, ids: IdArray, codes: CodeArray) -> None:
        """Add `codes` (n, code_bytes) uint8, `ids[i]` owning `codes[i]`."""
        ...

    def remove(self, ids: IdArray) -> int:
        """Remove every code of `ids`; return how many codes were removed."""
        ...

    def search(self, codes: CodeArray, k: int) -> tuple[npt.NDArray[np.int32], IdArray]:
        """Return (distances int32 (m, k), ids int64 (m, k)), nearest first, -1 ids when empty."""
        ...

    def __len__(self) -> int:
        """Number of codes held."""
        ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


@runtime_checkable
class FloatIndex(Protocol):
    """One L2-normalized float32 vector per id, searched by inner product (= cosine)."""

    dim: int

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add `vectors` (n, dim); an id already present is replaced."""
        ...

    def remove(self, ids: IdArray) -> int:
        """Remove the vectors of `ids`; return how many were removed."""
        ...

    def search(self, vectors: VectorArray, k: int) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Return (scores float32 (m, k), ids int64 (m, k)), best first, -1 ids when empty."""
        ...

    def __len__(self) -> int:
        """Number of vectors held."""
        ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


@runtime_checkable
class NameIndex(Protocol):
    """Profile ids by shared name and handle keys (`text.candidate_keys`), each with its folded
    name and handle: `NgramIndex` in memory, `MilvusNameIndex` on a server."""

    def add_many(
        self,
        ids: npt.ArrayLike,
        keys_list: Sequence[npt.ArrayLike],
        texts: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Index each id under its keys with its (folded name, handle), replacing its old
        ones; a later duplicate wins."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ids; return how many were present. They never match again."""
        ...

    def search(self, keys: npt.ArrayLike, k: int) -> list[tuple[int, int]]:
        """Up to `k` (id, shared key count), most shared first, ties by smaller id."""
        ...

    def search_texts(self, keys: npt.ArrayLike, k: int) -> NameHits:
        """`search`'s answer with each id's stored (name, handle), for re-ranking."""
        ...

    def compact(self) -> None: ...

    def __len__(self) -> int:
        """Number of profiles held."""
        ...

    def __contains__(self, profile_id: object) -> bool: ...

    def save(self, path: Path) -> None: ...
