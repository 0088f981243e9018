"""The store alone at scale: bulk ingest into SQLite and PostgreSQL, side by side.

    python -m bench.store_ingest --profiles 1000000 \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/cf_bench

Every profile's store write (the record, its avatar bytes, avatar hashes, bio vector and
name keys) is prepared before the clock starts, so what is measured is `Store.upsert` and
nothing else: not parsing, not image decoding, not the embedding model. Signals are computed
once for a pool of generated profiles (real avatar hashes and name keys; a unit vector of the
model's 384 float32 dimensions for each bio, whose values the store never reads) and reused
round the pool, each write with a handle and avatar bytes of its own, so every profile and
every avatar is a distinct row. Both backends get the same writes in the same batches (the
engine's ingest batch, 512 records), on a new database each; the rate is profiles per second
of `upsert` time. Then the hot queries are run and their PostgreSQL plans checked (EXPLAIN
ANALYZE), and optionally `--engine-profiles N` runs end to end (`Engine.ingest`: validation,
avatars, model, store, indexes) on each backend.

The PostgreSQL database named by the URL is dropped and created again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.generate import generated_profiles
from bench.provenance import save_result
from indexers.avatar import decode_avatar
from models.profile import parse_record
from service.matching.engine import INGEST_BATCH
from service.matching.profile_sides import name_keys
from service.store import AvatarBlob, ProfileWrite, Store
from service.store.store import _PG_EXISTING

RESULTS = Path(__file__).resolve().parent / "results" / "store_ingest.json"
POOL = 4_096
BIO_DIMENSIONS = 384
# A generated record with its avatar blob, avatar hashes and bio vector.
Template = tuple[dict[str, Any], AvatarBlob | None, bytes | None, bytes | None]


def _pool(seed: int) -> list[Template]:
    """Templates: a generated record with its avatar blob, avatar hashes and bio vector."""
    rng = np.random.default_rng(seed)
    pool: list[Template] = []
    for raw in generated_profiles(POOL, seed=seed):
        blob = hashes = None
        encoded = raw.pop("avatar_base64", None)
        if encoded is not None:
            data = base64.b64decode(encoded)
            digest = decode_avatar(data, max_bytes=10 << 20, max_pixels=40_000_000)
            blob = AvatarBlob(digest.sha256, data, digest.mime, digest.width, digest.height)
            hashes = digest.hashes.tobytes()
        vector = rng.standard_normal(BIO_DIMENSIONS).astype(np.float32)
        vector /= np.linalg.norm(vector)
        pool.append((raw, blob, hashes, vector.tobytes()))
    return pool


def _writes(
    pool: list[Template],
    start: int,
    count: int,
) -> list[ProfileWrite]:
    """Profiles start..start+count-1: the pool's signals, a distinct handle and avatar each."""
    writes = []
    for i in range(start, start + count):
        raw, blob, hashes, vector = pool[i % POOL]
        raw = {**raw, "handle": f"{raw['handle']}_{i}"}
        record = parse_record(raw, where=f"profile {i}")
        if blob is not None:
            # Distinct bytes, so each profile stores an avatar row of its own, as real ones do.
            data = blob.data + i.to_bytes(8, "big")
            blob = AvatarBlob(
                hashlib.sha256(data).hexdigest(), data, blob.mime, blob.width, blob.height
            )
        name_key, handle_norm = name_keys(record.display_name, record.handle)
        writes.append(ProfileWrite(record, blob, hashes, vector, name_key, handle_norm))
    return writes


def _batches(profiles: int, batch: int) -> Iterator[tuple[int, int]]:
    for start in range(0, profiles, batch):
        yield start, min(batch, profiles - start)


def _fresh_postgres(url: str) -> str:
    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise SystemExit("--postgres-url must name a database (it is dropped and recreated)")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parsed.render_as_string(hide_password=False)


def _hot_queries(store: Store, profiles: int) -> dict[str, Any]:
    """Time the reads that checks and index catch-up make, on the full table."""
    rng = random.Random(7)
    ids = [rng.randint(1, profiles) for _ in range(2_000)]
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    rows = store.get_comparable(ids)
    timings["get_comparable_2000_ids_s"] = round(time.perf_counter() - started, 4)
    started = time.perf_counter()
    full = store.get_many(ids[:200])
    timings["get_many_200_ids_s"] = round(time.perf_counter() - started, 4)
    keys = [(r.platform, r.handle) for r in full[:100]]
    started = time.perf_counter()
    found = store.get_by_identity(keys)
    timings["get_by_identity_100_s"] = round(time.perf_counter() - started, 4)
    replayed = min(10_000, profiles)
    seq = store.last_change_seq() - replayed
    started = time.perf_counter()
    replay = store.changes_since(seq)
    timings["changes_since_last_10000_s"] = round(time.perf_counter() - started, 4)
    assert len(rows) == len(set(ids)) and len(found) == len(keys) and len(replay) == replayed
    return timings


def _postgres_plans(store: Store, profiles: int) -> dict[str, str]:
    """The plan PostgreSQL picks for each hot query on the full table (its scan lines)."""
    keys = [("twitter", f"x_{i}") for i in range(512)]
    queries: dict[str, tuple[str, Any]] = {
        "ingest: stored rows of a batch": (
            _PG_EXISTING,
            {"platform_keys": [k[0] for k in keys], "handle_keys": [k[1] for k in keys]},
        ),
        "check: candidates by id": (
            "SELECT id, name_key FROM profiles WHERE id = ANY(%(ids)s)",
            {"ids": list(range(1, profiles, max(1, profiles // 2_000)))},
        ),
        "catch-up: change log": (
            "SELECT seq, profile_id, op FROM changes WHERE seq > %(seq)s ORDER BY seq LIMIT 10000",
            {"seq": profiles - 10_000},
        ),
        "ingest: users of an avatar": (
            "SELECT id FROM profiles WHERE avatar_sha256 = %(sha)s",
            {"sha": "ab" * 32},
        ),
    }
    plans = {}
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        for label, (sql, params) in queries.items():
            plan = conn.exec_driver_sql(f"EXPLAIN {sql}", params).scalars().all()
            plans[label] = " / ".join(
                line.strip().lstrip("-> ").split("  (")[0] for line in plan if "Scan" in line
            )
        conn.commit()
    return plans


def _store_run(url: str, pool: list[Any], profiles: int, batch: int, label: str) -> dict[str, Any]:
    store = Store.open(url)
    try:
        spent = 0.0
        began = time.perf_counter()
        report_every = max(batch, (profiles // 10) // batch * batch)
        for start, count in _batches(profiles, batch):
            writes = _writes(pool, start, count)
            started = time.perf_counter()
            store.upsert(writes)
            spent += time.perf_counter() - started
            done = start + count
            if done % report_every == 0 or done == profiles:
                print(f"  {label}: {done:,} profiles, {done / spent:,.0f} profiles/s so far")
        wall = time.perf_counter() - began
        assert store.count() == profiles, (store.count(), profiles)
        result: dict[str, Any] = {
            "profiles": profiles,
            "upsert_seconds": round(spent, 1),
            "profiles_per_s": round(profiles / spent),
            "wall_seconds_with_preparing_writes": round(wall, 1),
            "hot_queries": _hot_queries(store, profiles),
        }
        if store.engine.dialect.name == "postgresql":
            result["plans"] = _postgres_plans(store, profiles)
        return result
    finally:
        store.close()


def _engine_run(url: str, profiles: int, seed: int, folder: Path) -> dict[str, Any]:
    """End to end through `Engine.ingest` (validation, avatar decode, model, store, indexes)."""
    from service.core.settings import Settings
    from service.matching.engine import Engine

    settings = Settings(data_dir=folder / "data", database_url=url)
    items = [(f"index {i}", raw) for i, raw in enumerate(generated_profiles(profiles, seed=seed))]
    engine = Engine.open(settings)
    try:
        started = time.perf_counter()
        report = engine.ingest(items)
        spent = time.perf_counter() - started
    finally:
        engine.close()
    assert len(report.outcomes) == profiles
    return {
        "profiles": profiles,
        "seconds": round(spent, 1),
        "profiles_per_s": round(profiles / spent),
    }


def run(
    *, profiles: int, postgres_url: str, batch: int, seed: int, engine_profiles: int
) -> dict[str, Any]:
    print(f"preparing a pool of {POOL:,} profiles' signals")
    pool = _pool(seed)
    results: dict[str, Any] = {
        "profiles": profiles,
        "batch": batch,
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="cf-store-bench-") as tmp:
        folder = Path(tmp)
        sqlite_url = f"sqlite:///{folder / 'store.db'}"
        print(f"SQLite ({sqlite_url})")
        results["sqlite"] = _store_run(sqlite_url, pool, profiles, batch, "sqlite")
        (folder / "store.db").unlink()
        pg_url = _fresh_postgres(postgres_url)
        print(f"PostgreSQL ({make_url(pg_url).render_as_string(hide_password=True)})")
        results["postgresql"] = _store_run(pg_url, pool, profiles, batch, "postgresql")
        results["postgresql_over_sqlite"] = round(
            results["postgresql"]["profiles_per_s"] / results["sqlite"]["profiles_per_s"], 2
        )
        if engine_profiles:
            ends: dict[str, Any] = {}
            (folder / "sqlite").mkdir()
            ends["sqlite"] = _engine_run(
                f"sqlite:///{folder / 'sqlite' / 'e.db'}", engine_profiles, seed, folder / "sqlite"
            )
            (folder / "pg").mkdir()
            ends["postgresql"] = _engine_run(
                _fresh_postgres(postgres_url), engine_profiles, seed, folder / "pg"
            )
            results["engine_ingest"] = ends
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/cf_bench",
        help="a database this benchmark may drop and create",
    )
    parser.add_argument("--batch", type=int, default=INGEST_BATCH)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--engine-profiles", type=int, default=0, help="also ingest this many end to end"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run(
        profiles=args.profiles,
        postgres_url=args.postgres_url,
        batch=args.batch,
        seed=args.seed,
        engine_profiles=args.engine_profiles,
    )
    print(json.dumps(results, indent=2))
    save_result(args.out, results)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
