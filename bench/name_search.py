"""Name and handle candidate search: the n-gram index against a rapidfuzz scan of every name.

N generated profiles (`bench.generate`) are indexed exactly as the service indexes them
(`indexers.text` normalization and `candidate_keys`, one `NgramIndex` holding each profile's
folded name and handle), and each query's candidates are the matcher's own
(`service.matching.matcher.name_candidates`: a pool of `name_pool(N)` ids by shared
n-grams, re-ranked by the true similarities, `NAME_CANDIDATES` kept). Queries are clones of
indexed profiles (look-alike letters, a swapped, doubled or dropped letter, decorations; the
handle with an underscore, digits, "real" or "official", a doubled or dropped letter, look-alike
digits) and unrelated new names.

The ground truth is a brute-force scan: every indexed profile scored with the service's own
similarities (`text.name_similarity` of the folded display names, `text.handle_similarity` of
the folded handles) in rapidfuzz's `process.cdist`, one worker, and the top 10 of each kept.
The candidates are rescored with the same similarities, as the service's screen does, and
their top 10 compared with the scan's: an id scoring at least the scan's 10th score counts
as correct (ties at the 10th score). Timings include normalizing the query on both sides.

    python -m bench.name_search --profiles 1000000 --queries 1000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.generate import _name, generated_profiles
from bench.provenance import save_result
from indexers import text
from models.scoring import SHARED_NAME
from service.indexes.ngram import NgramIndex
from service.matching.matcher import (
    NAME_CANDIDATES,
    name_candidates,
    name_pool,
)
from training import transforms as tf

RESULTS = Path(__file__).resolve().parent / "results" / "name_search.json"
TOP = 10
TARGET_SPEEDUP = 50.0
TARGET_RECALL = 0.99
# Scores are float32 percentages / 100; two ids whose scores differ by less are tied.
TIE = 1e-5
BATCH = 100_000
# Other pool sizes, measured too: what a shallower or deeper pool would find and cost.
POOLS = (512, 1024, 2048, 4096, 8192)
NAME_KINDS = (
    "name:exact",
    "name:case",
    "name:decoration",
    "name:cyrillic",
    "name:greek",
    "name:I_for_l",
    "name:0_for_o",
    "name:rn_for_m",
    "name:swap_letters",
    "name:double_letter",
    "name:drop_letter",
)


def _typo(name: str, kind: str, rng: random.Random) -> str | None:
    """A swapped, doubled or dropped letter inside one word of `name`."""
    spots = [i for i in range(1, len(name) - 1) if name[i].isalpha() and name[i + 1].isalpha()]
    if not spots:
        return None
    i = rng.choice(spots)
    if kind == "swap_letters":
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    if kind == "double_letter":
        return name[: i + 1] + name[i:]
    return name[:i] + name[i + 1 :]


def clone_name(name: str, kind: str, rng: random.Random) -> str:
    """`name` as a clone writes it; `name:exact` where the chosen change cannot apply."""
    short = kind.removeprefix("name:")
    if short in ("swap_letters", "double_letter", "drop_letter"):
        out = _typo(name, short, rng)
    else:
        out = tf.transform_name(name, kind, rng)
    return out if out is not None else name


def clone_handle(handle: str, rng: random.Random) -> tuple[str, str]:
    for _ in range(8):
        kind = rng.choice(tf.HANDLE_TRANSFORMS)
        out = tf.transform_handle(handle, kind, rng, platform="instagram")
        if out is not None:
            return out, kind
    return handle + "_", "handle:underscore"


def make_queries(
    names: list[str], handles: list[str], count: int, *, unrelated_share: float, seed: int
) -> list[dict[str, Any]]:
    """Clones of random indexed profiles, and unrelated generated names with their handles."""
    rng = random.Random(seed)
    other = random.Random(seed + 1)
    queries: list[dict[str, Any]] = []
    for q in range(count):
        if rng.random() < unrelated_share:
            name = _name(other)
            handle = f"{name.replace(' ', '_').lower()}{other.randint(0, 999)}"
            queries.append({"name": name, "handle": handle, "kind": "unrelated", "source": None})
            continue
        source = rng.randrange(len(names))
        name_kind = NAME_KINDS[q % len(NAME_KINDS)]
        handle, handle_kind = clone_handle(handles[source], rng)
        queries.append(
            {
                "name": clone_name(names[source], name_kind, rng),
                "handle": handle,
                "kind": f"{name_kind} {handle_kind}",
                "source": source,
            }
        )
    return queries


def _kth(scores: np.ndarray, k: int) -> float:
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def _recall(candidates: np.ndarray, scores: np.ndarray, kth: float) -> tuple[int, np.ndarray]:
    """Correct ids among the candidates' top 10 by `scores`, and the scan's ids they missed."""
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")][:TOP]
    hits = int((scores[ranked] >= kth - TIE).sum())
    truth = np.flatnonzero(scores >= kth - TIE)
    missed = np.setdiff1d(truth, candidates)
    return min(hits, TOP), missed


def _relevant_recall(candidates: np.ndarray, scores: np.ndarray, kth: float) -> tuple[int, int]:
    """(found, wanted) for the scan's top 10 that are one name (at least SHARED_NAME alike)."""
    floor = max(kth, SHARED_NAME) - TIE
    wanted = min(TOP, int((scores >= floor).sum()))
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")][:TOP]
    return min(wanted, int((scores[ranked] >= floor).sum())), wanted


def _ms(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1e3
    return {
        "mean": round(float(arr.mean()), 3),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
    }


def run(profiles: int, queries: int, *, unrelated_share: float, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    names: list[str] = []
    handles: list[str] = []
    for record in generated_profiles(profiles, seed=seed, avatar_share=0.0):
        names.append(record["display_name"])
        handles.append(record["handle"])
    generated_s = time.perf_counter() - started
    print(f"generated {profiles:,} profiles in {generated_s:.1f} s", flush=True)

    started = time.perf_counter()
    name_keys = [text.normalize_name(n) for n in names]
    handle_norms = [text.normalize_handle(h) for h in handles]
    normalized_s = time.perf_counter() - started
    started = time.perf_counter()
    index = NgramIndex()
    for start in range(0, profiles, BATCH):
        stop = min(start + BATCH, profiles)
        keys = [text.candidate_keys(name_keys[i], handle_norms[i]) for i in range(start, stop)]
        texts = list(zip(name_keys[start:stop], handle_norms[start:stop], strict=True))
        index.add_many(np.arange(start, stop, dtype=np.int64), keys, texts)
    indexed_s = time.perf_counter() - started
    print(
        f"normalized in {normalized_s:.1f} s, indexed in {indexed_s:.1f} s "
        f"({index.nbytes / profiles:.1f} bytes a profile)",
        flush=True,
    )

    asked = make_queries(names, handles, queries, unrelated_share=unrelated_share, seed=seed + 7)
    pool = name_pool(len(index))
    index_s: list[float] = []
    scan_s: list[float] = []
    pool_s: dict[int, list[float]] = {p: [] for p in POOLS}
    hits: dict[str, int] = {"name": 0, "handle": 0}
    slots: dict[str, int] = {"name": 0, "handle": 0}
    relevant_hits: dict[str, int] = {"name": 0, "handle": 0}
    relevant_slots: dict[str, int] = {"name": 0, "handle": 0}
    pool_hits: dict[int, int] = dict.fromkeys(POOLS, 0)
    by_kind: dict[str, list[float]] = defaultdict(list)
    source_found = 0
    sources = 0
    misses: list[dict[str, Any]] = []
    for n, query in enumerate(asked):
        t0 = time.perf_counter()
        q_name, q_handle = (
            text.normalize_name(query["name"]),
            text.normalize_handle(query["handle"]),
        )
        # The matcher's own name candidates, then the screen's rescoring of them.
        cand = np.asarray(name_candidates(index, q_name, q_handle, pool=pool), dtype=np.int64)
        left = np.zeros(len(cand), dtype=np.intp)
        text.paired_name_similarities(
            [q_name], [name_keys[i] for i in cand], left, np.arange(len(cand))
        )
        text.paired_handle_similarities(
            [q_handle], [handle_norms[i] for i in cand], left, np.arange(len(cand))
        )
        index_s.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        q_name, q_handle = (
            text.normalize_name(query["name"]),
            text.normalize_handle(query["handle"]),
        )
        by_name = text.name_scores(q_name, name_keys)
        by_handle = text.handle_scores(q_handle, handle_norms)
        kth_name, kth_handle = _kth(by_name, TOP), _kth(by_handle, TOP)
        scan_s.append(time.perf_counter() - t0)

        other: dict[int, np.ndarray] = {}
        for size in POOLS:
            t0 = time.perf_counter()
            other[size] = np.asarray(
                name_candidates(index, q_name, q_handle, pool=size), dtype=np.int64
            )
            pool_s[size].append(time.perf_counter() - t0)
        recalls = []
        for field, scores, kth in (("name", by_name, kth_name), ("handle", by_handle, kth_handle)):
            got, missed = _recall(cand, scores, kth)
            for size in POOLS:
                pool_hits[size] += _recall(other[size], scores, kth)[0]
            found_rel, wanted_rel = _relevant_recall(cand, scores, kth)
            relevant_hits[field] += found_rel
            relevant_slots[field] += wanted_rel
            hits[field] += got
            slots[field] += TOP
            recalls.append(got / TOP)
            if got < TOP and len(misses) < 40:
                q_keys = index.buckets(text.candidate_keys(q_name, q_handle))
                misses.append(
                    {
                        "field": field,
                        "kind": query["kind"],
                        "query": [query["name"], query["handle"]],
                        "query_keys": [q_name, q_handle],
                        "tenth_score": round(kth, 4),
                        "found": got,
                        "missed": [
                            {
                                "profile": [names[i], handles[i]],
                                "score": round(float(scores[i]), 4),
                                "shared_keys": int(
                                    np.intersect1d(
                                        q_keys,
                                        index.buckets(
                                            text.candidate_keys(name_keys[i], handle_norms[i])
                                        ),
                                    ).size
                                ),
                            }
                            for i in missed[:5].tolist()
                        ],
                    }
                )
        by_kind[query["kind"].split(" ")[0]].append(sum(recalls) / 2)
        if query["source"] is not None:
            sources += 1
            source_found += int(query["source"] in set(cand.tolist()))
        if (n + 1) % 100 == 0:
            print(
                f"{n + 1}/{len(asked)} queries: index {statistics.mean(index_s) * 1e3:.2f} ms, "
                f"scan {statistics.mean(scan_s) * 1e3:.0f} ms, recall@10 name "
                f"{hits['name'] / slots['name']:.4f} handle {hits['handle'] / slots['handle']:.4f}",
                flush=True,
            )

    recall_name = hits["name"] / slots["name"]
    recall_handle = hits["handle"] / slots["handle"]
    speedup = statistics.mean(scan_s) / statistics.mean(index_s)
    return {
        "profiles": profiles,
        "queries": len(asked),
        "unrelated_share": unrelated_share,
        "candidates_asked": NAME_CANDIDATES,
        "pool": pool,
        "brute_force": "rapidfuzz process.cdist over every indexed profile, workers=1: "
        "name_similarity (ratio, token_sort_ratio, damped token_set_ratio) and handle_similarity",
        "build_s": {
            "generate": round(generated_s, 1),
            "normalize": round(normalized_s, 1),
            "index": round(indexed_s, 1),
        },
        "index_bytes_per_profile": round(index.nbytes / profiles, 1),
        "index_ms_per_query": _ms(index_s),
        "brute_force_ms_per_query": _ms(scan_s),
        "speedup": round(speedup, 1),
        "recall_at_10": {
            "name": round(recall_name, 4),
            "handle": round(recall_handle, 4),
            "both": round((hits["name"] + hits["handle"]) / (slots["name"] + slots["handle"]), 4),
        },
        "recall_at_10_by_pool": {
            str(size): {
                "recall": round(pool_hits[size] / (slots["name"] + slots["handle"]), 4),
                "ms_per_query": _ms(pool_s[size]),
            }
            for size in POOLS
        },
        "recall_at_10_of_shared_names": {
            "floor": SHARED_NAME,
            "name": round(relevant_hits["name"] / max(relevant_slots["name"], 1), 4),
            "handle": round(relevant_hits["handle"] / max(relevant_slots["handle"], 1), 4),
            "ids_wanted": relevant_slots,
        },
        "recall_at_10_by_name_kind": {
            kind: {"queries": len(v), "recall": round(statistics.mean(v), 4)}
            for kind, v in sorted(by_kind.items())
        },
        "clone_source_among_candidates": round(source_found / max(sources, 1), 4),
        "targets_met": speedup >= TARGET_SPEEDUP
        and min(recall_name, recall_handle) >= TARGET_RECALL,
        "misses": misses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--unrelated-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.profiles, args.queries, unrelated_share=args.unrelated_share, seed=args.seed)
    summary = {k: v for k, v in result.items() if k != "misses"}
    print(json.dumps(summary, indent=2))
    save_result(args.out, result, argv=argv)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
