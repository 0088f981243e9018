"""Bulk-scan throughput: durable jobs done by `clonefinder worker` processes.

    python -m bench.scan --profiles 100000 [--scan N] [--clusters N] [--no-clusters]
                         [--out bench/results/scan.json]

Ingests N generated profiles as the index, then scans N other generated profiles (a tenth of
them copies of indexed ones, so matches exist) as a job in the store, done by one worker
process and then by two; reports records per second (from the job's first claim to its last
result, so model loading is not counted) and checks from the worker id of every result row
that no record was done twice or left out. Then times a clusters job over the same N profiles.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.generate import generated_profiles
from bench.provenance import save_result
from service.auth.roles import Caller
from service.core.settings import Settings
from service.matching.engine import Engine
from service.scans.service import ScanService, ScanUpload
from service.store import Store

DEFAULT_OUT = Path(__file__).with_name("results") / "scan.json"
COPY_SHARE = 0.1
ADMIN = Caller(key_id=0, name="bench", role="admin")
# Cyrillic look-alikes: what an impersonator swaps into a copied name.
LOOKALIKES = str.maketrans({"a": "а", "e": "е", "o": "о"})


def scan_profiles(count: int, indexed: list[dict[str, Any]], *, seed: int) -> Iterator[Any]:
    """`count` profiles to scan: fresh generated ones, and copies of indexed ones."""
    rng = random.Random(seed)
    fresh = generated_profiles(count, seed=seed)
    for i, profile in enumerate(fresh):
        if indexed and rng.random() < COPY_SHARE:
            original = rng.choice(indexed)
            copy = dict(original)
            copy["handle"] = f"{original['handle']}_{rng.randint(1, 99)}"
            copy["display_name"] = original["display_name"].translate(LOOKALIKES)
            copy["bio"] = f"{original['bio']} dm for promo"
            copy["followers_count"] = rng.randint(0, 50)
            copy["created_at"] = "2025-01-15"
            yield copy
        else:
            profile["handle"] = f"scan_{i}_{profile['handle']}"
            yield profile


def _worker(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "CLONEFINDER_DATA_DIR": str(data_dir)}
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        found = re.search(r"scan worker (\S+) started", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the worker did not start")


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def run_job(
    settings: Settings, source: Path, *, workers: int, mode: str, logs: Path
) -> dict[str, Any]:
    """One job over `source`, done by `workers` fresh worker processes."""
    started = [
        _worker(settings.data_dir, logs / f"{mode}-{workers}-{n}.log") for n in range(workers)
    ]
    store = Store.open(settings.resolved_database_url)
    try:
        scans = ScanService(store, settings)
        upload = ScanUpload(
            content_type="application/x-ndjson",
            options={"mode": mode},
            chunks=_file_chunks(source),
        )
        job = scans.create(upload, caller=ADMIN)
        while (status := scans.status(job.id, caller=ADMIN)).state not in (
            "done",
            "failed",
            "cancelled",
        ):
            time.sleep(1.0)
        rows = scans.jobs.result_workers(job.id)
    finally:
        store.close()
        for process, _ in started:
            process.terminate()
            process.wait()
    assert status.started_at is not None and status.finished_at is not None
    seconds = (status.finished_at - status.started_at).total_seconds()
    lines = [line for line, _ in rows]
    report: dict[str, Any] = {
        "workers": workers,
        "state": status.state,
        "records": status.total,
        "seconds": round(seconds, 1),
        "records_per_s": round(status.total / seconds, 1) if seconds else None,
        "result_lines": len(rows),
        "errors": status.errors,
        "by_worker": dict(Counter(worker for _, worker in rows)),
    }
    if mode == "against_index":
        # Results are keyed by line: a line done twice or skipped shows here.
        report["each_line_once"] = lines == list(range(status.total))
    return report


def run(
    *, profiles: int, scanned: int, clustered: int, seed: int, skip_clusters: bool = False
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "profiles": profiles,
        "scanned": scanned,
        "clustered": 0 if skip_clusters else clustered,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="clonefinder-scan-") as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root / "data", in_process_worker=False)
        engine = Engine.open(settings)
        indexed: list[dict[str, Any]] = []
        try:

            def items() -> Iterator[tuple[str, Any]]:
                for i, record in enumerate(generated_profiles(profiles, seed=seed)):
                    if i % 10 == 0:
                        indexed.append(record)
                    yield f"index {i}", record

            started = time.perf_counter()
            ingest = engine.ingest(items())
            elapsed = time.perf_counter() - started
            report["ingest"] = {
                "profiles_per_s": round(profiles / elapsed, 1),
                "rejected": ingest.rejected,
            }
        finally:
            engine.close()  # saves the indexes the workers load

        source, cluster_source = root / "scan.jsonl", root / "clusters.jsonl"
        with source.open("w", encoding="utf-8") as out, cluster_source.open("w") as part:
            for n, record in enumerate(scan_profiles(scanned, indexed, seed=seed + 1)):
                line = json.dumps(record) + "\n"
                out.write(line)
                if n < clustered:
                    part.write(line)
        report["scan"] = [
            run_job(settings, source, workers=n, mode="against_index", logs=root) for n in (1, 2)
        ]
        if not skip_clusters:
            report["clusters"] = run_job(
                settings, cluster_source, workers=1, mode="clusters", logs=root
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000, help="indexed profiles")
    parser.add_argument("--scan", type=int, default=None, help="scanned (default: --profiles)")
    parser.add_argument(
        "--clusters", type=int, default=None, help="clustered (default: --profiles)"
    )
    parser.add_argument("--no-clusters", action="store_true", help="skip the clusters job")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report = run(
        profiles=args.profiles,
        scanned=args.scan or args.profiles,
        clustered=args.clusters or args.profiles,
        seed=args.seed,
        skip_clusters=args.no_clusters,
    )
    print(json.dumps(save_result(args.out, report), indent=2))


if __name__ == "__main__":
    main()
