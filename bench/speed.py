"""Speed and memory at scale, with generated profiles, on the embedded default.

    python -m bench.speed --profiles 100000 [--checks 300] [--out bench/results/speed.json]

Measures: ingest rate (end to end: avatar decode and hashes, bio embedding, store, indexes);
check latency p50/p99 in process and over HTTP against a real `clonefinder serve`, warm; and the
server's memory per indexed profile (its resident memory with the corpus, minus that of the same
server on an empty store, over the profile count: the model's memory cancels out).
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

import httpx
import numpy as np

from bench.generate import generated_profiles
from service.engine import Engine
from service.settings import Settings

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


def run(*, profiles: int, checks: int, seed: int) -> dict[str, Any]:
    report: dict[str, Any] = {"profiles": profiles, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="clonefinder-speed-") as tmp:
        empty_dir, data_dir = Path(tmp) / "empty", Path(tmp) / "data"
        sample: list[dict[str, Any]] = []
        # One ONNX export for the run, made here: a server exporting at its start would
        # inflate its memory with the float model and skew the per-profile figure.
        models_dir = Path(tmp) / "models"
        engine = Engine.open(Settings(data_dir=data_dir, model_cache_dir=models_dir))
        try:

            def items() -> Any:
                for i, record in enumerate(generated_profiles(profiles, seed=seed)):
                    if i % max(1, profiles // 2000) == 0:
                        sample.append({k: v for k, v in record.items() if k != "avatar_base64"})
                    yield f"index {i}", record

            started = time.perf_counter()
            ingest = engine.ingest(items())
            elapsed = time.perf_counter() - started
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
        server, url = _serve(data_dir, models_dir)
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
    args = parser.parse_args()
    report = run(profiles=args.profiles, checks=args.checks, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
