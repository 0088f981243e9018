"""Avatar near-duplicate search: the project's avatar path against imagededup's PHash.

One folder of images, the same for both: originals (the shared real photos where present,
and generated pictures), each original's transformed copies (every clone transformation of
`training.transforms` alone: re-encoded, resized, cropped, flipped, framed, colour-filtered,
grey, sepia, rotated, circular mask, caption strip; and the shared data's own transformed
copies), and distractors up to the total: pictures of the same generator as the originals (faces,
shapes, textures; alike in layout, distinct in detail) at avatar sizes and JPEG qualities, so
that a false match is as easy to make as it is on a real platform. The images are made once
and cached in `bench/.cache/` (by size and seed).

- imagededup: `PHash().encode_images` then `find_duplicates` over every image, with its own
  defaults: `max_distance_threshold=10`, brute force, and its worker pool on every core.
- clonefinder: each image decoded and hashed as ingest does (`indexers.avatar.decode_avatar`),
  its index codes added to a `FaissBinaryIndex` in batches, then every image searched as a
  check does (both orientations' views, the matcher's `AVATAR_CANDIDATES` per code, each id at
  its best view, its nearest `AVATAR_CANDIDATES` ids kept); a copy's original is found when it
  is among them within `NEAR_COPY_BITS`. FAISS runs on one thread.

Recall is per transformed copy (its original found); false positives are distractors that
come within the threshold of any other image, counted at every threshold for both (for
imagededup from its hashes, all against all, exactly as `find_duplicates` compares them).

    python -m bench.avatar_search --images 100000

imagededup is not a dependency of the project: `pip install -e '.[bench]'` then
`pip install --no-deps imagededup` (its own dependencies pull a CUDA build of torch; its
hashing needs none of them beyond what the project already has).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from PIL import Image, ImageOps

from bench.provenance import provenance, save_result
from indexers import avatar as avatar_hashing
from service.core.settings import Settings
from service.indexes.faiss_backend import FaissBinaryIndex
from service.matching.matcher import AVATAR_CANDIDATES, AVATAR_EVIDENCE_BITS
from training import transforms as tf
from training.synthetic_images import generate_image

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "avatar_search.json"
CACHE = ROOT / ".cache" / "avatar_search"
SHARED = ROOT.parent.parent / "shared" / "data" / "images"
CACHE_VERSION = 3
IMAGEDEDUP_THRESHOLD = 10  # imagededup's default max_distance_threshold
THRESHOLDS = (4, 6, 8, 10, 12, 14, 16)
BATCH = 1_000
# The shared data's own transformed copies: (copy, original, transformation).
SHARED_PAIRS = (
    ("transformed/ukbench00120_gray.jpg", "transformed/ukbench00120.jpg", "shared:grey"),
    ("transformed/ukbench00120_hflip.jpg", "transformed/ukbench00120.jpg", "shared:flip"),
    ("transformed/ukbench00120_resize.jpg", "transformed/ukbench00120.jpg", "shared:resize"),
    ("transformed/ukbench00120_rotation.jpg", "transformed/ukbench00120.jpg", "shared:rotate"),
    ("formats/ukbench09380.png", "objects/ukbench09380.jpg", "shared:format"),
    ("formats/ukbench09380.bmp", "objects/ukbench09380.jpg", "shared:format"),
    ("formats/ukbench09380.webp", "objects/ukbench09380.jpg", "shared:format"),
)
SHARED_ORIGINALS = ("objects", "faces")


def import_phash() -> Any:
    """imagededup's PHash class, or exit with how to install it.

    Importing `imagededup.methods` also imports its CNN method and plotting helpers, which
    need torchvision and matplotlib; PHash uses neither, so those modules are stood in for
    when they cannot be imported (installing torchvision would replace the CPU torch).
    """
    try:
        import imagededup  # noqa: F401
    except ImportError:
        sys.exit(
            "imagededup is not installed: pip install --no-deps imagededup "
            "(plus PyWavelets, scikit-learn and tqdm: pip install -e '.[bench]')"
        )
    stand_ins = {
        "imagededup.utils.plotter": {"plot_duplicates": None},
        "imagededup.utils.models": {"CustomModel": None},
        "imagededup.methods.cnn": {"CNN": None},
    }
    for name, attrs in stand_ins.items():
        try:
            __import__(name)
        except ImportError:
            sys.modules.pop(name, None)
            module = types.ModuleType(name)
            for attr, value in attrs.items():
                setattr(module, attr, value)
            sys.modules[name] = module
    from imagededup.methods.hashing import PHash

    return PHash


# -- the image set ---------------------------------------------------------------------------


def _square_jpeg(img: Image.Image, side: int = 400) -> bytes:
    flat = img.convert("RGBA")
    background = Image.new("RGBA", flat.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, flat).convert("RGB")
    return tf.encode_jpeg(ImageOps.fit(rgb, (side, side), Image.Resampling.LANCZOS))


def _distractor(seed: int, rng: np.random.Generator) -> bytes:
    """Another account's picture: the originals' generator, at an avatar size and quality."""
    img = generate_image(seed, size=int(rng.choice((48, 64, 96, 128, 200))))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(rng.integers(60, 95)))
    return buffer.getvalue()


def build_images(total: int, originals: int, seed: int) -> tuple[Path, list[dict[str, Any]]]:
    """The folder of images and its manifest (file, role, original file, transformation)."""
    folder = CACHE / f"n{total}-o{originals}-s{seed}-v{CACHE_VERSION}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        return folder / "images", json.loads(manifest_path.read_text())
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    entries: list[dict[str, Any]] = []

    def write(name: str, data: bytes, role: str, original: str | None, tag: str | None) -> None:
        (images / name).write_bytes(data)
        entries.append({"file": name, "role": role, "original": original, "transform": tag})

    sources: list[bytes] = []
    if SHARED.is_dir():
        for sub in SHARED_ORIGINALS:
            for path in sorted((SHARED / sub).iterdir()):
                with Image.open(path) as opened:
                    sources.append(_square_jpeg(opened))
        for copy, original, tag in SHARED_PAIRS:
            for rel, role, orig in ((original, "original", None), (copy, "copy", original)):
                name = "shared_" + rel.replace("/", "_")
                if role == "original" and any(e["file"] == name for e in entries):
                    continue
                data = (SHARED / rel).read_bytes()
                write(
                    name,
                    data,
                    role,
                    None if orig is None else "shared_" + orig.replace("/", "_"),
                    tag if role == "copy" else None,
                )
    seed_base = 2_000_000_000 + seed * 100_000
    while len(sources) < originals:
        sources.append(_square_jpeg(generate_image(seed_base + len(sources), size=400)))
    for k, jpeg in enumerate(sources[:originals]):
        name = f"o{k:05d}.jpg"
        write(name, jpeg, "original", None, None)
        for tag in tf.AVATAR_TRANSFORMS:
            altered = tf.transform_avatar(jpeg, [tag], rng)
            write(f"c{k:05d}_{tag.removeprefix('avatar:')}.jpg", altered, "copy", name, tag)
    np_rng = np.random.default_rng(seed)
    distractor_base = seed_base + originals  # seeds no original used
    n = 0
    while len(entries) < total:
        write(f"d{n:06d}.jpg", _distractor(distractor_base + n, np_rng), "distractor", None, None)
        n += 1
    manifest_path.write_text(json.dumps(entries))
    return images, entries


# -- measuring -------------------------------------------------------------------------------


def _recall_table(found: dict[str, list[bool]]) -> dict[str, dict[str, float]]:
    return {
        tag: {"copies": len(v), "recall": round(sum(v) / len(v), 4)}
        for tag, v in sorted(found.items())
    }


def run_imagededup(folder: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    phash_class = import_phash()
    phasher = phash_class(verbose=False)
    started = time.perf_counter()
    encodings = phasher.encode_images(image_dir=str(folder))
    hashed_s = time.perf_counter() - started
    started = time.perf_counter()
    duplicates = phasher.find_duplicates(
        encoding_map=encodings,
        max_distance_threshold=IMAGEDEDUP_THRESHOLD,
        scores=False,
    )
    searched_s = time.perf_counter() - started

    found: dict[str, list[bool]] = defaultdict(list)
    all_found: list[bool] = []
    pair_bits: list[int] = []
    for e in entries:
        if e["role"] != "copy":
            continue
        hit = e["original"] in set(duplicates.get(e["file"], ()))
        found[e["transform"]].append(hit)
        all_found.append(hit)
        a, b = encodings.get(e["file"]), encodings.get(e["original"])
        pair_bits.append(64 if a is None or b is None else bin(int(a, 16) ^ int(b, 16)).count("1"))
    distractors = [e["file"] for e in entries if e["role"] == "distractor"]
    flagged = sum(1 for f in distractors if duplicates.get(f))
    bits = np.asarray(pair_bits)
    closest = _nearest_other_bits(encodings, distractors)
    return {
        "threshold": IMAGEDEDUP_THRESHOLD,
        "hashed": len(encodings),
        "hash_s": round(hashed_s, 1),
        "search_s": round(searched_s, 1),
        "recall": round(sum(all_found) / len(all_found), 4),
        "recall_by_transform": _recall_table(found),
        # The search is exact, so the recall at another threshold is the share of pairs
        # within it.
        "recall_at_threshold": {str(t): round(float((bits <= t).mean()), 4) for t in THRESHOLDS},
        "distractors_flagged": flagged,
        "distractors": len(distractors),
        "distractors_flagged_at_threshold": _flagged_at(closest),
    }


def _flagged_at(closest: np.ndarray) -> dict[str, int]:
    """How many distractors have another image within each threshold."""
    return {str(t): int((closest <= t).sum()) for t in THRESHOLDS}


def _nearest_other_bits(encodings: dict[str, str], files: list[str]) -> np.ndarray:
    """Each file's Hamming distance to the nearest other image by imagededup's hashes: the
    same all-against-all as `find_duplicates`, exact, in FAISS, so that its false matches can be
    read at every threshold and not only at the one it was run with."""
    names = list(encodings)
    codes = np.asarray(
        [np.frombuffer(bytes.fromhex(encodings[n]), dtype=np.uint8) for n in names]
    ).reshape(len(names), -1)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    row = {n: i for i, n in enumerate(names)}
    wanted = np.asarray([row[f] for f in files if f in row], dtype=np.int64)
    distances, found = index.search(codes[wanted], 2)
    # The nearest is the image itself, unless an identical hash came first; either way the
    # nearest other image is the first result that is not the query.
    other = np.where(found[:, 0] == wanted, distances[:, 1], distances[:, 0])
    return np.asarray(other)


def run_clonefinder(folder: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    faiss.omp_set_num_threads(1)
    settings = Settings()
    ids = {e["file"]: i for i, e in enumerate(entries)}
    hashes = np.zeros((len(entries), 2, avatar_hashing.VIEWS, avatar_hashing.CODE_BYTES), np.uint8)
    ok = np.zeros(len(entries), dtype=bool)
    started = time.perf_counter()
    for i, e in enumerate(entries):
        try:
            digest = avatar_hashing.decode_avatar(
                (folder / e["file"]).read_bytes(),
                max_bytes=settings.max_image_bytes,
                max_pixels=settings.max_image_pixels,
            )
        except Exception:  # noqa: BLE001 - an unreadable image is simply not indexed
            continue
        hashes[i], ok[i] = digest.hashes, True
    hashed_s = time.perf_counter() - started

    started = time.perf_counter()
    index = FaissBinaryIndex(avatar_hashing.CODE_BYTES)
    order = np.flatnonzero(ok)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        codes = np.concatenate([avatar_hashing.index_codes(hashes[i]) for i in chunk])
        index.add(np.repeat(chunk.astype(np.int64), avatar_hashing.VIEWS), codes)
    indexed_s = time.perf_counter() - started

    # Every image searched as a check searches (the same all-against-all as find_duplicates).
    started = time.perf_counter()
    nearest: dict[int, dict[int, int]] = {}
    rows = 2 * avatar_hashing.VIEWS
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        codes = np.concatenate([avatar_hashing.query_codes(hashes[i]) for i in chunk])
        distances, found_ids = index.search(codes, AVATAR_CANDIDATES)
        for k, i in enumerate(chunk.tolist()):
            best: dict[int, int] = {}
            block = slice(k * rows, (k + 1) * rows)
            for d, j in zip(
                distances[block].ravel().tolist(), found_ids[block].ravel().tolist(), strict=True
            ):
                if j >= 0 and j != i and d < best.get(j, 1 << 30):
                    best[j] = d
            kept = sorted((d, j) for j, d in best.items())[:AVATAR_CANDIDATES]
            nearest[i] = {j: d for d, j in kept}
    searched_s = time.perf_counter() - started

    found: dict[str, list[bool]] = defaultdict(list)
    pair_bits: list[int] = []
    for e in entries:
        if e["role"] != "copy":
            continue
        d = nearest.get(ids[e["file"]], {}).get(ids[e["original"]], 1 << 30)
        pair_bits.append(d)
        found[e["transform"]].append(d <= avatar_hashing.NEAR_COPY_BITS)
    bits = np.asarray(pair_bits)
    distractors = [ids[e["file"]] for e in entries if e["role"] == "distractor"]
    closest = np.asarray([min(nearest.get(i, {}).values(), default=1 << 30) for i in distractors])
    return {
        "threshold": avatar_hashing.NEAR_COPY_BITS,
        "hashed": int(ok.sum()),
        "hash_s": round(hashed_s, 1),
        "index_s": round(indexed_s, 1),
        "search_s": round(searched_s, 1),
        "inverted_file": index.is_inverted_file,
        "recall": round(float((bits <= avatar_hashing.NEAR_COPY_BITS).mean()), 4),
        "recall_by_transform": _recall_table(found),
        "recall_at_threshold": {str(t): round(float((bits <= t).mean()), 4) for t in THRESHOLDS},
        f"recall_within_evidence_bits_{AVATAR_EVIDENCE_BITS}": round(
            float((bits <= AVATAR_EVIDENCE_BITS).mean()), 4
        ),
        "distractors_flagged": int((closest <= avatar_hashing.NEAR_COPY_BITS).sum()),
        "distractors": len(distractors),
        "distractors_flagged_at_threshold": _flagged_at(closest),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip-imagededup",
        action="store_true",
        help="measure the project's path alone (imagededup's search grows with the square)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.skip_imagededup:
        import_phash()  # fail early, before the images are made
    started = time.perf_counter()
    folder, entries = build_images(args.images, args.originals, args.seed)
    print(f"{len(entries):,} images ready in {time.perf_counter() - started:.0f} s", flush=True)
    result: dict[str, Any] = {
        "images": len(entries),
        "originals": sum(e["role"] == "original" for e in entries),
        "copies": sum(e["role"] == "copy" for e in entries),
        "distractors": sum(e["role"] == "distractor" for e in entries),
    }
    if not args.skip_imagededup:
        result["imagededup_phash"] = run_imagededup(folder, entries)
        print(json.dumps(result["imagededup_phash"], indent=2), flush=True)
    result["clonefinder"] = run_clonefinder(folder, entries)
    print(json.dumps(result["clonefinder"], indent=2), flush=True)
    # One entry per image count, so runs of several sizes sit side by side, each with the
    # provenance of its own run. The file's provenance is its last write's: an entry saved
    # before entries carried their own has no better record, so it keeps that one.
    runs = json.loads(args.out.read_text()) if args.out.exists() else {}
    if (previous := runs.pop("provenance", None)) is not None:
        for entry in runs.values():
            entry.setdefault("provenance", previous)
    result["provenance"] = provenance(argv=argv)
    runs[str(len(entries))] = result
    save_result(args.out, runs, argv=argv)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
