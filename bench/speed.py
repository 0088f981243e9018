"""Speed and memory at scale, with generated profiles, on the embedded default.

    python -m bench.speed --profiles 100000 [--checks 300] [--out bench/results/speed.json]

Measures: ingest rate (end to end from a JSONL file, as `clonefinder ingest` reads it: parsing,
avatar decode and hashes, bio embedding, store, indexes);
check latency p50/p99 in process and over HTTP against a real `clonefinder serve`, warm; the
server's memory per indexed profile (its resident memory with the corpus, minus that of the same
server on an empty store, over the profile count: the model's memory cancels out); its cold
start (process start to a healthy answer, indexes loaded from their saved files); and what the
bio index's compressed codes cost in recall, against an exact search of the stored vectors.

`--workdir DIR` keeps the corpus in DIR, and a later run with the same `--profiles` reuses it
instead of ingesting again (its ingest figure is then left out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

from bench.generate import generated_profiles
from bench.provenance import save_result
from service.core.settings import Settings
from service.matching.engine import Engine
from service.records import read_records

DEFAULT_OUT = Path(__file__).with_name("results") / "speed.json"


def _queries(profiles_sample: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """Half look up a stored identity, half send a fresh clone-like profile (name, bio)."""
    rng = random.Random(seed)
    queries: list[dict[str, Any]] = []
    for _ in range(count):
        p = rng.choice(profiles_sample)
        if rng.random() < 0.5:
            queries.append({"platform": p["platform"], "handle": p["handle"]})
        else:
            queries.append({"display_name": p["display_name"], "bio": p["bio"] + " follow back"})
    return queries


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(samples, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(samples, 99)) * 1000, 1),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _serve(data_dir: Path, models_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    # No rate limit: the benchmark is one client sending checks back to back on purpose.
    env = {
        **os.environ,
        "CLONEFINDER_DATA_DIR": str(data_dir),
        "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
        "CLONEFINDER_MODEL_CACHE_DIR": str(models_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not become healthy")


def _bio_recall(engine: Engine, bios: list[str], *, k: int = 32) -> dict[str, Any]:
    """Recall@k of the served bio index against an exact search of the stored float32 vectors,
    and of float16 codes in the same cells: what the 8-bit codes cost, apart from probing."""
    ids_list, vectors_list = [], []
    for rows in engine.store.iter_index_rows():
        for row in rows:
            if row.bio_vector is not None:
                ids_list.append(row.id)
                vectors_list.append(np.frombuffer(row.bio_vector, dtype=np.float32))
    ids, vectors = np.array(ids_list, dtype=np.int64), np.stack(vectors_list)
    del vectors_list
    queries = engine.embedder.embed(bios)
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), 100_000):
        scores = queries @ vectors[start : start + 100_000].T
        merged = np.concatenate([best, scores], axis=1)
        merged_ids = np.concatenate(
            [best_ids, np.broadcast_to(ids[start : start + 100_000], scores.shape)], axis=1
        )
        top = np.argpartition(-merged, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(merged, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)

    def recall(found: np.ndarray) -> float:
        return float(
            np.mean([len(set(f) & set(e)) / k for f, e in zip(found, best_ids, strict=True)])
        )

    with engine.indexes.reading():
        _, served = engine.indexes.bio.search(queries, k)
        index = getattr(engine.indexes.bio, "_index", None)
        report: dict[str, Any] = {"k": k, "queries": len(bios), "served": round(recall(served), 4)}
        if isinstance(index, faiss.IndexIVFScalarQuantizer):
            report["code_bytes"] = int(index.code_size)
            fp16 = faiss.IndexIVFScalarQuantizer(
                index.quantizer,
                index.d,
                index.nlist,
                faiss.ScalarQuantizer.QT_fp16,
                faiss.METRIC_INNER_PRODUCT,
            )
            fp16.is_trained = True  # float16 codes need no training; the cells are the served ones
            fp16.add_with_ids(vectors, ids)
            fp16.nprobe = index.nprobe
            report["float16_same_cells"] = round(recall(fp16.search(queries, k)[1]), 4)
    return report


def _admin_headers(data_dir: Path) -> dict[str, str]:
    """The key the server created at its first start."""
    key = (data_dir / "admin.key").read_text(encoding="utf-8").strip()
    return {"Authorization": f"Bearer {key}"}


def _http_latencies(url: str, queries: list[dict[str, Any]], data_dir: Path) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=30, headers=_admin_headers(data_dir)) as client:
        for query in queries[:20]:  # warm-up
            client.post("/v1/checks", json=query).raise_for_status()
        for query in queries:
            started = time.perf_counter()
            client.post("/v1/checks", json=query).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def run(*, profiles: int, checks: int, seed: int, workdir: Path | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"profiles": profiles, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="clonefinder-speed-") as tmp:
        root = workdir or Path(tmp)
        empty_dir, data_dir = Path(tmp) / "empty", root / "data"
        sample: list[dict[str, Any]] = []
        # One ONNX export for the run, made here: a server exporting at its start would
        # inflate its memory with the float model and skew the per-profile figure.
        models_dir = root / "models"
        engine = Engine.open(Settings(data_dir=data_dir, model_cache_dir=models_dir))
        try:
            every = max(1, profiles // 2000)
            if engine.store.count() == profiles:
                sample = [
                    {k: v for k, v in record.items() if k != "avatar_base64"}
                    for i, record in enumerate(generated_profiles(profiles, seed=seed))
                    if i % every == 0
                ]
            else:
                # Written to a file first and ingested from it, as `clonefinder ingest` does:
                # making the profiles (their JPEGs above all) is not the service's time.
                corpus = root / "corpus.jsonl"
                with corpus.open("w", encoding="utf-8") as out:
                    for i, record in enumerate(generated_profiles(profiles, seed=seed)):
                        if i % every == 0:
                            sample.append({k: v for k, v in record.items() if k != "avatar_base64"})
                        out.write(json.dumps(record) + "\n")
                started = time.perf_counter()
                ingest = engine.ingest(read_records(corpus))
                elapsed = time.perf_counter() - started
                corpus.unlink()
                report["ingest"] = {
                    "profiles_per_s": round(profiles / elapsed, 1),
                    "seconds": round(elapsed, 1),
                    "rejected": ingest.rejected,
                }
            queries = _queries(sample, checks, seed)
            for query in queries[:20]:
                engine.check(query)
            in_process = []
            for query in queries:
                started = time.perf_counter()
                engine.check(query)
                in_process.append(time.perf_counter() - started)
            report["check_in_process"] = _percentiles(in_process)
            report["bio_index_recall"] = _bio_recall(
                engine, [q["bio"] for q in queries if "bio" in q]
            )
        finally:
            engine.close()

        baseline, url = _serve(empty_dir, models_dir)
        try:
            httpx.post(
                f"{url}/v1/checks",
                json={"display_name": "warm up"},
                headers=_admin_headers(empty_dir),
                timeout=30,
            ).raise_for_status()
            empty_rss = _rss_bytes(baseline.pid)
        finally:
            baseline.terminate()
            baseline.wait()
        started = time.perf_counter()
        server, url = _serve(data_dir, models_dir)
        report["cold_start_s"] = round(time.perf_counter() - started, 1)
        try:
            report["check_http"] = _percentiles(_http_latencies(url, queries, data_dir))
            full_rss = _rss_bytes(server.pid)
        finally:
            server.terminate()
            server.wait()
        report["memory"] = {
            "server_rss_mb_empty": round(empty_rss / 2**20, 1),
            "server_rss_mb_loaded": round(full_rss / 2**20, 1),
            "bytes_per_profile": round((full_rss - empty_rss) / profiles, 1),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the corpus")
    args = parser.parse_args()
    report = run(profiles=args.profiles, checks=args.checks, seed=args.seed, workdir=args.workdir)
    print(json.dumps(save_result(args.out, report), indent=2))


if __name__ == "__main__":
    main()
