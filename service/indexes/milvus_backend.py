"""Milvus implementations of the index interfaces: collections that every process shares.

One `MilvusConnection` (a `pymilvus.MilvusClient`) serves four collections named
`{prefix}_avatar`, `{prefix}_bio`, `{prefix}_names` and `{prefix}_state`:

- avatar: one row per code, an auto primary key and a `profile_id` field (a profile owns several
  codes). A server with binary vectors stores the packed code and searches by Hamming distance;
  one without them (milvus-lite) stores its 0/1 bits as floats searched by L2, whose squared
  distance Milvus reports, and which equals the Hamming distance;
- bio: primary key = profile id, the normalized vector, inner product;
- names: primary key = profile id, the name and handle n-gram keys as a sparse 0/1 vector
  searched by inner product, which counts the keys a candidate shares with the query (the
  contract of `NgramIndex.search`), and the folded name and handle, returned with each hit so
  that candidates are re-ranked by the true similarity (`NgramIndex.search_texts`);
- state: one row holding the manifest of what the collections were built from and the last
  change of the store's log applied to them.

Every request is made at Strong consistency, so a write is visible to the next search of any
process. pymilvus (and milvus-lite, for a local file) are imported only when this backend is
chosen; without them the error names the extra to install.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from models.errors import ConfigurationError
from service.indexes.base import (
    CodeArray,
    IdArray,
    VectorArray,
    as_ids,
    checked_names,
    checked_rows,
    last_occurrence,
)
from service.indexes.ngram import NameHits, Texts

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'clonefinder[milvus]'"
CONSISTENCY = "Strong"
#: Rows per insert, upsert or delete request: well under Milvus's message size limits.
WRITE_BATCH = 5_000
#: Milvus refuses a search limit (top k) above this.
MAX_LIMIT = 16_384
#: Distance reported for an empty result slot, as the FAISS backend does.
EMPTY_DISTANCE = np.iinfo(np.int32).max
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads any key bits evenly
_NAME_DIM_BITS = 31  # sparse dimensions in [0, 2**31); Milvus allows up to 2**32 - 2
_NO_KEYS_DIM = 1 << _NAME_DIM_BITS  # a profile without keys: no query ever holds this dimension
_STATE_ROW = 1
_MANIFEST_MAX = 8_192
# A stored name or handle is cut to this many characters (at most 4 UTF-8 bytes each): plenty to
# rank candidates by, within a VARCHAR of _TEXT_MAX bytes.
_TEXT_CHARS = 1_000
_TEXT_MAX = 4 * _TEXT_CHARS


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"vector backend 'milvus' needs the {module.replace('_', '-')} package: " + INSTALL_HINT
        ) from exc


def is_local_uri(uri: str) -> bool:
    """A milvus-lite file (served inside this process) rather than a server address."""
    return uri.endswith(".db") and not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def _chunks(n: int, size: int = WRITE_BATCH) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _id_list(ids: IdArray) -> str:
    return "[" + ",".join(str(int(i)) for i in ids.tolist()) + "]"


class MilvusConnection:
    """One client to a Milvus server (or a milvus-lite file) and the collection name prefix."""

    def __init__(self, uri: str, *, token: str | None = None, prefix: str = "clonefinder") -> None:
        pymilvus = _import("pymilvus")
        if is_local_uri(uri):
            _import("milvus_lite")
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.prefix = prefix
        self.DataType = pymilvus.DataType
        self.MilvusException = pymilvus.MilvusException
        try:
            self.client = pymilvus.MilvusClient(uri=uri, token=token or "")
        except Exception as exc:
            hint = ""
            if is_local_uri(uri):
                hint = (
                    "; a milvus-lite file serves one process only: for several processes run "
                    f"`milvus-lite server --data-dir {uri} --host 127.0.0.1 --port 19530` and "
                    "set CLONEFINDER_MILVUS_URI=http://127.0.0.1:19530"
                )
            raise ConfigurationError(f"cannot connect to Milvus at {uri}: {exc}{hint}") from exc

    @property
    def has_binary_vectors(self) -> bool:
        """False for milvus-lite (3.x stores float and sparse vectors only); a server is asked
        by trying (see `MilvusBinaryIndex`)."""
        try:
            version = str(self.client.get_server_version())
        except self.MilvusException:
            return True
        return not version.lower().startswith("milvus_lite")

    def name(self, kind: str) -> str:
        return f"{self.prefix}_{kind}"

    def count(self, collection: str, filter: str = "") -> int:
        rows = self.client.query(
            collection,
            filter=filter,
            output_fields=["count(*)"],
            consistency_level=CONSISTENCY,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def vector_field(self, collection: str, field: str) -> tuple[Any, int | None] | None:
        """(data type, dim) of a field of an existing collection; None when there is none."""
        if not self.client.has_collection(collection):
            return None
        for f in self.client.describe_collection(collection).get("fields", []):
            if f.get("name") == field:
                dim = f.get("params", {}).get("dim")
                return f.get("type"), None if dim is None else int(dim)
        return None

    def ensure(
        self,
        collection: str,
        *,
        field: str,
        dtype: Any,
        dim: int | None,
        build: Any,
    ) -> bool:
        """Make sure `collection` exists with `field` of `dtype` and `dim`, creating it with
        `build(collection)` if absent; one of another shape is dropped and rebuilt (it was
        built for another model). True when it was created."""
        found = self.vector_field(collection, field)
        if found is not None and found[0] == dtype and found[1] == dim:
            self.client.load_collection(collection)
            return False
        if found is not None or self.client.has_collection(collection):
            logger.warning("Milvus collection %s has another shape; recreating it", collection)
            self.client.drop_collection(collection)
        build(collection)
        return True

    def create(self, collection: str, schema: Any, field: str, index: dict[str, Any]) -> None:
        params = self.client.prepare_index_params()
        params.add_index(field, **index)
        self.client.create_collection(collection, schema=schema, consistency_level=CONSISTENCY)
        # Not waiting for the build: on an empty collection there is nothing to build, and the
        # wait polls every half second (and asks for a timestamp milvus-lite does not serve).
        self.client.create_index(collection, params, sync=False)
        self.client.load_collection(collection)

    def drop(self, collection: str) -> None:
        if self.client.has_collection(collection):
            self.client.drop_collection(collection)

    def close(self) -> None:
        self.client.close()


class _SharedCollection:
    """What an index over one Milvus collection has instead of files: the collection is the
    saved copy, so there is nothing to save or load, and its row count is the server's."""

    conn: MilvusConnection
    collection: str

    def __len__(self) -> int:
        return self.conn.count(self.collection)

    def save(self, path: Path) -> None:
        """Nothing to write: the collection is the saved copy."""

    @classmethod
    def load(cls, path: Path) -> Self:
        raise TypeError("Milvus indexes are opened from their server, not loaded from files")


class MilvusBinaryIndex(_SharedCollection):
    """Avatar codes by Hamming distance, several codes per profile id (see the module doc).

    `binary` says whether the server stores native binary vectors (decided when the collection
    is created: binary where the server accepts it, 0/1 floats otherwise, as in milvus-lite).
    """

    shared = True
    FIRST_FETCH_FACTOR = 2

    def __init__(
        self, code_bytes: int, *, connection: MilvusConnection, prefer_binary: bool = True
    ) -> None:
        if code_bytes <= 0:
            raise ValueError("code_bytes must be positive")
        self.code_bytes = code_bytes
        self.conn = connection
        self.collection = connection.name("avatar")
        self.prefer_binary = prefer_binary
        self.binary = self._ensure()

    def _ensure(self) -> bool:
        dt = self.conn.DataType
        dim = self.code_bytes * 8
        found = self.conn.vector_field(self.collection, "code")
        if (
            found is not None
            and found[1] == dim
            and found[0] in (dt.BINARY_VECTOR, dt.FLOAT_VECTOR)
        ):
            self.conn.client.load_collection(self.collection)
            return bool(found[0] == dt.BINARY_VECTOR)
        self.conn.drop(self.collection)
        if self.prefer_binary and self.conn.has_binary_vectors:
            try:
                self._create(binary=True)
                return True
            except self.conn.MilvusException as exc:
                logger.info(
                    "Milvus at %s has no binary vectors (%s); avatar codes are stored as 0/1 "
                    "floats searched by L2, which equals Hamming distance",
                    self.conn.uri,
                    exc,
                )
                self.conn.drop(self.collection)
        self._create(binary=False)
        return False

    def _create(self, *, binary: bool) -> None:
        dt = self.conn.DataType
        schema = self.conn.client.create_schema(auto_id=True)
        schema.add_field("pk", dt.INT64, is_primary=True)
        schema.add_field("profile_id", dt.INT64)
        schema.add_field(
            "code", dt.BINARY_VECTOR if binary else dt.FLOAT_VECTOR, dim=8 * self.code_bytes
        )
        index = (
            {"index_type": "BIN_FLAT", "metric_type": "HAMMING"}
            if binary
            else {"index_type": "FLAT", "metric_type": "L2"}
        )
        self.conn.create(self.collection, schema, "code", index)

    def reset(self) -> None:
        """Drop every code (a rebuild starts from an empty collection)."""
        self.conn.drop(self.collection)
        self.binary = self._ensure()

    def _vectors(self, codes: CodeArray) -> list[Any]:
        if self.binary:
            return [bytes(row) for row in codes]
        return np.unpackbits(codes, axis=1).astype(np.float32).tolist()  # type: ignore[no-any-return]

    def add(self, ids: IdArray, codes: CodeArray) -> None:
        ids, codes = checked_rows(ids, codes, width=self.code_bytes, dtype=np.uint8, what="codes")
        for part in _chunks(len(ids)):
            rows = [
                {"profile_id": int(pid), "code": vector}
                for pid, vector in zip(ids[part].tolist(), self._vectors(codes[part]), strict=True)
            ]
            self.conn.client.insert(self.collection, rows)

    def remove(self, ids: IdArray) -> int:
        ids = np.unique(as_ids(ids))
        removed = 0
        for part in _chunks(len(ids)):
            where = f"profile_id in {_id_list(ids[part])}"
            found = self.conn.count(self.collection, where)
            if found:
                self.conn.client.delete(self.collection, filter=where)
                removed += found
        return removed

    def search(self, codes: CodeArray, k: int) -> tuple[npt.NDArray[np.int32], IdArray]:
        """Each profile once, at the best distance of its codes, nearest first (as FAISS)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, self.code_bytes)
        m = len(codes)
        distances = np.full((m, max(k, 0)), EMPTY_DISTANCE, dtype=np.int32)
        out_ids = np.full((m, max(k, 0)), -1, dtype=np.int64)
        if not m or k <= 0:
            return distances, out_ids
        fetch = min(MAX_LIMIT, k * self.FIRST_FETCH_FACTOR)
        pending = list(range(m))
        vectors = self._vectors(codes)
        while pending:
            hits = self.conn.client.search(
                self.collection,
                data=[vectors[i] for i in pending],
                limit=fetch,
                anns_field="code",
                search_params={"metric_type": "HAMMING" if self.binary else "L2"},
                output_fields=["profile_id"],
                consistency_level=CONSISTENCY,
            )
            still = []
            for row, row_hits in zip(pending, hits, strict=True):
                seen: dict[int, int] = {}
                for hit in row_hits:
                    pid = int(hit["entity"]["profile_id"])
                    if pid not in seen:
                        # Both metrics report the count of differing bits (L2 squared on 0/1).
                        seen[pid] = int(round(float(hit["distance"])))
                # A row with fewer than k profiles among a full page of hits asks for more.
                if len(seen) < k and len(row_hits) >= fetch and fetch < MAX_LIMIT:
                    still.append(row)
                    continue
                best = sorted(seen.items(), key=lambda item: (item[1], item[0]))[:k]
                for rank, (pid, d) in enumerate(best):
                    out_ids[row, rank] = pid
                    distances[row, rank] = d
            pending = still
            fetch = min(MAX_LIMIT, fetch * 2)
        return distances, out_ids


class MilvusFloatIndex(_SharedCollection):
    """One L2-normalized vector per profile id (the primary key), inner product."""

    shared = True

    def __init__(
        self, dim: int, *, connection: MilvusConnection, index_type: str = "AUTOINDEX"
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.conn = connection
        self.collection = connection.name("bio")
        self.index_type = index_type
        self._ensure()

    def _ensure(self) -> None:
        dt = self.conn.DataType

        def build(name: str) -> None:
            schema = self.conn.client.create_schema(auto_id=False)
            schema.add_field("id", dt.INT64, is_primary=True)
            schema.add_field("vector", dt.FLOAT_VECTOR, dim=self.dim)
            self.conn.create(
                name, schema, "vector", {"index_type": self.index_type, "metric_type": "IP"}
            )

        self.conn.ensure(
            self.collection, field="vector", dtype=dt.FLOAT_VECTOR, dim=self.dim, build=build
        )

    def reset(self) -> None:
        self.conn.drop(self.collection)
        self._ensure()

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        ids, vectors = checked_rows(ids, vectors, width=self.dim, dtype=np.float32, what="vectors")
        # One upsert may not name a key twice; a later row of the batch wins.
        keep = last_occurrence(ids)
        ids, vectors = ids[keep], vectors[keep]
        for part in _chunks(len(ids)):
            rows = [
                {"id": int(pid), "vector": vector}
                for pid, vector in zip(ids[part].tolist(), vectors[part].tolist(), strict=True)
            ]
            self.conn.client.upsert(self.collection, rows)

    def remove(self, ids: IdArray) -> int:
        return _remove_by_key(self.conn, self.collection, ids)

    def search(self, vectors: VectorArray, k: int) -> tuple[npt.NDArray[np.float32], IdArray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        m = len(vectors)
        scores = np.full((m, max(k, 0)), -np.inf, dtype=np.float32)
        out_ids = np.full((m, max(k, 0)), -1, dtype=np.int64)
        if not m or k <= 0:
            return scores, out_ids
        hits = self.conn.client.search(
            self.collection,
            data=vectors.tolist(),
            limit=min(k, MAX_LIMIT),
            anns_field="vector",
            search_params={"metric_type": "IP"},
            output_fields=[],
            consistency_level=CONSISTENCY,
        )
        for row, row_hits in enumerate(hits):
            for rank, hit in enumerate(row_hits):
                out_ids[row, rank] = int(hit["id"])
                scores[row, rank] = float(hit["distance"])
        return scores, out_ids


def _remove_by_key(conn: MilvusConnection, collection: str, ids: IdArray) -> int:
    ids = np.unique(as_ids(ids))
    removed = 0
    for part in _chunks(len(ids)):
        found = conn.count(collection, f"id in {_id_list(ids[part])}")
        if found:
            conn.client.delete(collection, ids=ids[part].tolist())
            removed += found
    return removed


class MilvusNameIndex:
    """Name and handle candidates with the search contract of `NgramIndex`.

    A profile's keys (`text.candidate_keys`) are hashed to 31-bit sparse dimensions of weight
    1, so the inner product of two profiles counts the keys they share (a rare hash collision
    can add one, as in `NgramIndex`'s buckets; candidates are re-scored downstream).
    """

    shared = True

    def __init__(self, *, connection: MilvusConnection) -> None:
        self.conn = connection
        self.collection = connection.name("names")
        self._ensure()

    def _ensure(self) -> None:
        dt = self.conn.DataType

        def build(name: str) -> None:
            schema = self.conn.client.create_schema(auto_id=False)
            schema.add_field("id", dt.INT64, is_primary=True)
            schema.add_field("keys", dt.SPARSE_FLOAT_VECTOR)
            schema.add_field("name", dt.VARCHAR, max_length=_TEXT_MAX)
            schema.add_field("handle", dt.VARCHAR, max_length=_TEXT_MAX)
            self.conn.create(
                name, schema, "keys", {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"}
            )

        self.conn.ensure(
            self.collection, field="keys", dtype=dt.SPARSE_FLOAT_VECTOR, dim=None, build=build
        )

    def reset(self) -> None:
        self.conn.drop(self.collection)
        self._ensure()

    @staticmethod
    def dimensions(keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Distinct sparse dimensions of `keys` (any int64 values), sorted."""
        raw = np.asarray(keys, dtype=np.int64).reshape(-1)
        with np.errstate(over="ignore"):
            mixed = raw.view(np.uint64) * _GOLDEN
        return np.unique((mixed >> np.uint64(64 - _NAME_DIM_BITS)).astype(np.int64))

    def _sparse(self, keys: npt.ArrayLike) -> dict[int, float]:
        dims = self.dimensions(keys).tolist()
        return dict.fromkeys(dims or [_NO_KEYS_DIM], 1.0)

    def add(self, profile_id: int, keys: npt.ArrayLike, texts: Texts | None = None) -> None:
        """Index `profile_id` under `keys` (and its strings), replacing what it had before."""
        self.add_many([profile_id], [keys], None if texts is None else [texts])

    def add_many(
        self,
        ids: npt.ArrayLike,
        keys_list: Sequence[npt.ArrayLike],
        texts: Sequence[Texts] | None = None,
    ) -> None:
        """Index many profiles at once, `texts[i]` the (folded name, handle) of `ids[i]`; a
        later duplicate id in the batch wins."""
        id_arr = checked_names(ids, keys_list, texts)
        latest = {int(pid): i for i, pid in enumerate(id_arr.tolist())}
        items = list(latest.items())
        for part in _chunks(len(items)):
            rows = []
            for pid, i in items[part]:
                name, handle = texts[i] if texts is not None else ("", "")
                rows.append(
                    {
                        "id": pid,
                        "keys": self._sparse(keys_list[i]),
                        "name": name[:_TEXT_CHARS],
                        "handle": handle[:_TEXT_CHARS],
                    }
                )
            self.conn.client.upsert(self.collection, rows)

    def remove(self, ids: Sequence[int] | npt.ArrayLike) -> int:
        """Remove profiles; return how many were present. They never match again."""
        return _remove_by_key(self.conn, self.collection, as_ids(ids))

    def search(self, keys: npt.ArrayLike, k: int) -> list[tuple[int, int]]:
        """Up to `k` (id, shared key count), most shared first, ties by smaller id."""
        return [(pid, shared) for pid, shared, _, _ in self._search(keys, k, [])]

    def search_texts(self, keys: npt.ArrayLike, k: int) -> NameHits:
        """`search`, with each id's stored (name, handle), in one request."""
        found = self._search(keys, k, ["name", "handle"])
        return NameHits(
            np.fromiter((hit[0] for hit in found), dtype=np.int64, count=len(found)),
            np.fromiter((hit[1] for hit in found), dtype=np.int64, count=len(found)),
            [hit[2] for hit in found],
            [hit[3] for hit in found],
        )

    def _search(
        self, keys: npt.ArrayLike, k: int, fields: list[str]
    ) -> list[tuple[int, int, str, str]]:
        dims = self.dimensions(keys).tolist()
        if k <= 0 or not dims:
            return []
        hits = self.conn.client.search(
            self.collection,
            data=[dict.fromkeys(dims, 1.0)],
            limit=min(k, MAX_LIMIT),
            anns_field="keys",
            search_params={"metric_type": "IP"},
            output_fields=fields,
            consistency_level=CONSISTENCY,
        )
        found = []
        for hit in hits[0]:
            shared = int(round(float(hit["distance"])))
            if shared > 0:
                row = hit.get("entity") or {}
                found.append((int(hit["id"]), shared, row.get("name", ""), row.get("handle", "")))
        return sorted(found, key=lambda item: (-item[1], item[0]))

    def compact(self) -> None:
        """Nothing to fold: the server compacts its own segments."""

    def __len__(self) -> int:
        """Number of profiles held."""
        return self.conn.count(self.collection)

    def __contains__(self, profile_id: object) -> bool:
        if not isinstance(profile_id, int | np.integer):
            return False
        return bool(self.conn.count(self.collection, f"id == {int(profile_id)}"))

    def save(self, path: Path) -> None:
        """Nothing to write: the collection is the saved copy."""


class MilvusState:
    """The manifest of the shared collections, with the last change applied to them: one row.

    No row means the collections hold nothing trustworthy (never built, or a rebuild stopped
    midway), so every process rebuilds before it trusts them.
    """

    def __init__(self, *, connection: MilvusConnection) -> None:
        self.conn = connection
        self.collection = connection.name("state")
        dt = connection.DataType

        def build(name: str) -> None:
            schema = connection.client.create_schema(auto_id=False)
            schema.add_field("id", dt.INT64, is_primary=True)
            schema.add_field("manifest", dt.VARCHAR, max_length=_MANIFEST_MAX)
            schema.add_field("unused", dt.FLOAT_VECTOR, dim=2)  # Milvus requires a vector
            connection.create(name, schema, "unused", {"index_type": "FLAT", "metric_type": "L2"})

        connection.ensure(
            self.collection, field="unused", dtype=dt.FLOAT_VECTOR, dim=2, build=build
        )

    def read(self) -> dict[str, Any] | None:
        rows = self.conn.client.query(
            self.collection,
            filter=f"id == {_STATE_ROW}",
            output_fields=["manifest"],
            consistency_level=CONSISTENCY,
        )
        if not rows:
            return None
        try:
            data = json.loads(rows[0]["manifest"])
        except (KeyError, TypeError, ValueError):
            logger.warning("unreadable manifest in Milvus collection %s", self.collection)
            return None
        return data if isinstance(data, dict) else None

    def write(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, sort_keys=True)
        self.conn.client.upsert(
            self.collection, [{"id": _STATE_ROW, "manifest": text, "unused": [0.0, 0.0]}]
        )

    def clear(self) -> None:
        self.conn.client.delete(self.collection, ids=[_STATE_ROW])
