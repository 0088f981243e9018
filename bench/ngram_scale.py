"""Scale check for `NgramIndex`: memory per profile, add rate and query time at N profiles.

Names are drawn Zipf-like from synthetic first and last names, so common grams are common
(stop-grams appear) and rare ones are rare, as with real display names. Keys mimic
`indexers.text.candidate_keys`: hashed character 3-grams of name and handle plus whole strings.

    PYTHONPATH=. python bench/ngram_scale.py --profiles 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import time

import numpy as np

from service.indexes.ngram import NgramIndex

SYLLABLES = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiouy"] + ["an", "el", "or", "is"]


def _key(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True
    )


def _words(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(2, 5, size=n)
    return ["".join(rng.choice(SYLLABLES, size=int(ln))) for ln in lengths]


def _profile_keys(name: str, handle: str) -> np.ndarray:
    keys = {_key("n:" + name), _key("h:" + handle)}
    for text in (name.replace(" ", "_"), handle):
        padded = f"^{text}$"
        keys.update(_key("g:" + padded[i : i + 3]) for i in range(len(padded) - 2))
    return np.fromiter(keys, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    firsts, lasts = _words(rng, 5_000), _words(rng, 80_000)
    fi = np.minimum(rng.zipf(1.3, size=args.profiles), len(firsts)) - 1
    li = np.minimum(rng.zipf(1.1, size=args.profiles), len(lasts)) - 1
    li = (
        li + rng.integers(0, len(lasts), size=args.profiles) * (rng.random(args.profiles) < 0.7)
    ) % len(lasts)
    t = time.perf_counter()
    keys = []
    for p in range(args.profiles):
        name = f"{firsts[fi[p]]} {lasts[li[p]]}"
        handle = f"{firsts[fi[p]]}{lasts[li[p]][:4]}{p % 1000}"
        keys.append(_profile_keys(name, handle))
    print(
        f"generated keys in {time.perf_counter() - t:.1f}s, "
        f"mean {np.mean([len(k) for k in keys]):.1f} keys/profile"
    )

    ix = NgramIndex()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for s in range(0, args.profiles, args.batch):
        ix.add_many(
            np.arange(s + 1, min(s + args.batch, args.profiles) + 1), keys[s : s + args.batch]
        )
    bulk = time.perf_counter() - t
    print(
        f"bulk add: {args.profiles / bulk:,.0f} profiles/s ({bulk:.1f}s, batches of {args.batch})"
    )
    print(
        f"base arrays: {ix.nbytes / 1e6:.1f} MB = {ix.nbytes / args.profiles:.1f} B/profile "
        f"(postings dtype {ix._postings.dtype}); peak RSS grew to "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB (from {rss0 / 1e3:.0f})"
    )

    # Incremental single adds (API ingest path): replaces of existing ids + new ids.
    n_inc = 20_000
    t = time.perf_counter()
    for j in range(n_inc):
        pid = int(rng.integers(1, args.profiles + 1)) if j % 2 else args.profiles + 1 + j
        ix.add(pid, keys[j])
    inc = time.perf_counter() - t
    print(
        f"single add/replace: {n_inc / inc:,.0f} /s (incl. compactions), "
        f"pending {ix.pending_changes}"
    )

    qi = rng.integers(0, args.profiles, size=args.queries)
    lat = []
    found = 0
    for q in qi.tolist():
        t = time.perf_counter()
        res = ix.search(keys[q], 50)
        lat.append(time.perf_counter() - t)
        found += any(pid == q + 1 for pid, _ in res) or q < n_inc
    lat_ms = np.array(lat) * 1e3
    print(
        f"query k=50: mean {lat_ms.mean():.2f} ms, p50 {np.percentile(lat_ms, 50):.2f}, "
        f"p99 {np.percentile(lat_ms, 99):.2f}, max {lat_ms.max():.2f}; "
        f"self found {found}/{args.queries}"
    )
    t = time.perf_counter()
    ix.compact()
    print(f"compact: {time.perf_counter() - t:.2f}s; {len(ix):,} profiles")


if __name__ == "__main__":
    main()
