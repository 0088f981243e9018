"""Bio embedding backends compared: throughput and agreement with the float model.

    python -m bench.embedding [--bios 4096] [--out bench/results/embedding.json]

Embeds the same bios with each backend ("torch": the sentence-transformers model in float32;
"onnx-int8": the default, the same model exported to ONNX with int8 matrix products) and
reports bios per second and the cosine between each bio's two vectors. Bios come from the
speed benchmark's generator and, where `../shared/data` is present, from real profiles.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.generate import generated_profiles
from bench.provenance import save_result
from indexers.bio import BioEmbedder

DEFAULT_OUT = Path(__file__).with_name("results") / "embedding.json"
REAL_PROFILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "profiles"


def _real_bios(limit: int) -> list[str]:
    path = REAL_PROFILES / "cresci2015-users.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        bios = [row.get("description") or "" for row in csv.DictReader(handle)]
    return [b for b in bios if b.strip()][:limit]


def _rate(embedder: BioEmbedder, bios: list[str]) -> tuple[float, np.ndarray]:
    embedder._encode(bios[:128])  # warm up: first-call allocations are not throughput
    start = time.perf_counter()
    vectors = embedder._encode(bios)  # the model itself, without the text cache
    return len(bios) / (time.perf_counter() - start), vectors


def measure(count: int) -> dict[str, Any]:
    sets = {
        "generated": [p["bio"] for p in generated_profiles(count, seed=11, avatar_share=0)],
        "real": _real_bios(count),
    }
    with tempfile.TemporaryDirectory() as cache:
        backends = {
            "torch": BioEmbedder(backend="torch"),
            "onnx-int8": BioEmbedder(backend="onnx-int8", cache_dir=Path(cache)),
        }
        report: dict[str, Any] = {"cpus": os.cpu_count(), "bios": {}}
        for set_name, bios in sets.items():
            if not bios:
                continue
            vectors: dict[str, np.ndarray] = {}
            rates: dict[str, float] = {}
            for name, embedder in backends.items():
                rates[name], vectors[name] = _rate(embedder, bios)
            cosine = np.sum(vectors["torch"] * vectors["onnx-int8"], axis=1)
            report["bios"][set_name] = {
                "count": len(bios),
                "bios_per_s": {name: round(rate) for name, rate in rates.items()},
                "cosine_to_float": {
                    "mean": round(float(cosine.mean()), 4),
                    "min": round(float(cosine.min()), 4),
                },
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bios", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    report = measure(args.bios)
    print(json.dumps(save_result(args.out, report), indent=2))


if __name__ == "__main__":
    main()
