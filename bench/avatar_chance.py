"""Chance meetings of avatars: how often an unrelated photo comes as close as a copy does.

    python -m bench.avatar_chance [--index 150000] [--queries 1500] [--sizes 20000,150000]
                                  [--out bench/results/avatar_chance.json]

An avatar match is the smallest distance over many pairs of views (`indexers.avatar`), which
finds cropped, framed and captioned copies, but also lets two unrelated pictures meet in one
pair of views by chance; the bigger the index, the more often some stranger's photo does.
This measures both sides of that trade on photos cut from real ones, the way
`bench.false_alarms` makes its million avatars (`_avatar_spec`, `render_avatar`): index
avatars from the index side's photos, query photos from the query side's (never a crop of an
indexed photo), and for each query a copy made by one to three of the clone transformations of
`training.transforms` (the ones `bench.avatar_search` measures).

For each rule it reports the *copy* rate (the query's copy counts as avatar evidence) and the
*chance* rate (the query's nearest unrelated indexed avatar counts as avatar evidence: with a
second tie, a false alarm) at each index size (the first N of the index):

- `within_N_bits`: the distance alone (12 bits: any avatar evidence; 4 bits: a photo lead);
- `singled_out_within_N_bits`: also `indexers.compare.avatar_singled_out`: the two pictures
  agree view for view (`aligned_distance` at most `AGREEING_VIEWS_BITS`), or no other stranger
  comes within `RIVAL_MARGIN_BITS` of the match.

Chance rates are per query and grow with the index; copies do not depend on it except through
the rival margin. What it does not cover: faces re-photographed or a different photo of the
same person (no perceptual hash finds those), and photo libraries more varied than these
crops (real avatars crowd less, so real chance rates are lower at the same size).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import false_alarms as fa
from bench.provenance import save_result, shared_data_dir
from indexers import avatar as avatar_hashing
from indexers.compare import RIVAL_MARGIN_BITS
from training import transforms as tf

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "avatar_chance.json"
CHUNK = 500
LIMITS = {"evidence": avatar_hashing.NEAR_COPY_BITS, "photo_lead": avatar_hashing.SAME_IMAGE_BITS}
_MAX = 10**9  # decode limits: these images are ours

_photos: dict[str, list[Any]] = {}


def _side_photos(side: fa.Population) -> tuple[list[Any], tuple[float, ...]]:
    split = fa.split_photos(shared_data_dir())
    if side not in _photos:
        _photos[side] = [fa.load_photo(label, shared_data_dir()) for label in split.side(side)]
    return _photos[side], split.weights(side)


def _photo_spec(rng: random.Random, side: fa.Population, weights: Sequence[float]) -> fa.AvatarSpec:
    while True:
        spec = fa._avatar_spec(rng, side, weights)
        if spec.kind == "photo":
            return spec


def _hashes(data: bytes) -> np.ndarray:
    return avatar_hashing.decode_avatar(data, max_bytes=_MAX, max_pixels=_MAX).hashes


def _index_chunk(start: int) -> np.ndarray:
    photos, weights = _side_photos("index")
    out = []
    for number in range(start, start + CHUNK):
        rng = random.Random(f"avatar-chance-index-{number}")
        data = fa.render_avatar(_photo_spec(rng, "index", weights), photos)
        assert data is not None
        out.append(_hashes(data))
    return np.stack(out)


def _query(number: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    photos, weights = _side_photos("query")
    rng = random.Random(f"avatar-chance-query-{number}")
    data = fa.render_avatar(_photo_spec(rng, "query", weights), photos)
    assert data is not None
    tags = rng.sample(sorted(tf.AVATAR_TRANSFORMS), rng.randint(1, 3))
    return _hashes(data), _hashes(tf.transform_avatar(data, tags, rng)), tags


def _words(hashes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hashes).view(np.uint64)[..., 0]


def _singled_out(bits: np.ndarray, aligned: np.ndarray, rival: np.ndarray) -> np.ndarray:
    """`indexers.compare.avatar_singled_out` on arrays: whole pictures agree, or no rival."""
    return (aligned <= avatar_hashing.AGREEING_VIEWS_BITS) | (rival > bits + RIVAL_MARGIN_BITS)


def measure(index: np.ndarray, queries: Sequence[tuple[np.ndarray, np.ndarray, list[str]]],
            size: int) -> dict[str, Any]:  # fmt: skip
    indexed = _words(index[:size, 0])  # (size, VIEWS): unmirrored views, as the index holds
    copy_bits, copy_aligned, nearest, nearest_aligned, second = [], [], [], [], []
    for query, copy, _ in queries:
        words = _words(avatar_hashing.query_codes(query))  # (2 * VIEWS,)
        distances = np.bitwise_count(indexed[:, np.newaxis, :] ^ words[np.newaxis, :, np.newaxis])
        closest = distances.reshape(size, -1).min(axis=1)
        first, runner_up = np.argsort(closest, kind="stable")[:2]
        copy_bits.append(avatar_hashing.avatar_distance(query, copy))
        copy_aligned.append(avatar_hashing.aligned_distance(query, copy))
        nearest.append(int(closest[first]))
        nearest_aligned.append(avatar_hashing.aligned_distance(query, index[first]))
        second.append(int(closest[runner_up]))
    c_bits, c_aligned = np.array(copy_bits), np.array(copy_aligned)
    n_bits, n_aligned, n_second = np.array(nearest), np.array(nearest_aligned), np.array(second)
    # The copy's rival is the nearest stranger; the chance neighbour's, the next one.
    copy_singled = _singled_out(c_bits, c_aligned, n_bits)
    chance_singled = _singled_out(n_bits, n_aligned, n_second)
    rules: dict[str, dict[str, float]] = {}
    for name, limit in LIMITS.items():
        rules[f"within_{limit}_bits ({name})"] = {
            "copies": round(float(np.mean(c_bits <= limit)), 4),
            "chance": round(float(np.mean(n_bits <= limit)), 4),
        }
        rules[f"singled_out_within_{limit}_bits ({name})"] = {
            "copies": round(float(np.mean((c_bits <= limit) & copy_singled)), 4),
            "chance": round(float(np.mean((n_bits <= limit) & chance_singled)), 4),
        }
    return {
        "index_avatars": size,
        "nearest_unrelated_bits": {f"p{p}": float(np.percentile(n_bits, p)) for p in (1, 10, 50)},
        "rules": rules,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=150_000)
    parser.add_argument("--queries", type=int, default=1_500)
    parser.add_argument("--sizes", default="20000,150000")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > args.index:
        parser.error("--sizes may not exceed --index")
    count = -(-args.index // CHUNK) * CHUNK
    with multiprocessing.Pool(args.processes) as pool:
        index = np.concatenate(pool.map(_index_chunk, range(0, count, CHUNK)))
        queries = pool.map(_query, range(args.queries))
    report = {
        "queries": args.queries,
        "transforms_per_copy": "1 to 3 of " + ", ".join(sorted(tf.AVATAR_TRANSFORMS)),
        "agreeing_views_bits": avatar_hashing.AGREEING_VIEWS_BITS,
        "rival_margin_bits": RIVAL_MARGIN_BITS,
        "by_index_size": [measure(index, queries, size) for size in sizes],
    }
    saved = save_result(args.out, report, argv=argv)
    for run in saved["by_index_size"]:
        print(f"{run['index_avatars']:>8} indexed avatars")
        for rule, rates in run["rules"].items():
            print(f"  {rule:<42} copies {rates['copies']:.3f}  chance {rates['chance']:.4f}")


if __name__ == "__main__":
    main()
