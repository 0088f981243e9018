"""Detection quality on the TEST split, which the scoring model never saw in training.

    python -m bench.quality [--seed 7] [--out bench/results/quality.json]

Builds the held-out labelled corpus, ingests it into a throw-away engine, scores every labelled
pair through the service, and reports: recall and precision at `likely_clone`, average
precision, recall per transformation, false flags on namesakes and shared default avatars, the
accuracy of `likely_impersonator`, calibration by score band, and retrieval recall (is the clone
among the top 10 of a plain check of the original?).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from training.evidence import corpus_engine, measure_pairs
from training.pairset import build_corpus

logger = logging.getLogger(__name__)
DEFAULT_OUT = Path(__file__).with_name("results") / "quality.json"


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate(*, seed: int) -> dict[str, Any]:
    corpus = build_corpus("test", seed=seed)
    with corpus_engine(corpus) as engine:
        measured = measure_pairs(engine, corpus.pairs)
        verdicts = engine.scorer.score([m.evidence for m in measured])
        retrieval = _retrieval(engine, corpus.pairs)
        likely = engine.scorer.thresholds.likely_clone
        possible = engine.scorer.thresholds.possible_clone

    scores = np.array([v.score for v in verdicts])
    truth = np.array([m.pair.is_clone for m in measured])
    flagged = scores >= likely
    report: dict[str, Any] = {
        "pairs": int(len(truth)),
        "clones": int(truth.sum()),
        "thresholds": {"likely_clone": likely, "possible_clone": possible},
        "recall_at_likely": _rate(int((flagged & truth).sum()), int(truth.sum())),
        "precision_at_likely": _rate(int((flagged & truth).sum()), int(flagged.sum())),
        "recall_at_possible": _rate(int(((scores >= possible) & truth).sum()), int(truth.sum())),
        "average_precision": round(float(average_precision_score(truth, scores)), 4),
    }

    per_transform: dict[str, list[bool]] = defaultdict(list)
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for m, hit in zip(measured, flagged, strict=True):
        per_kind[m.pair.kind].append(bool(hit))
        if m.pair.is_clone:
            for tag in m.pair.transforms:
                per_transform[tag].append(bool(hit))
    report["recall_per_transform"] = {
        tag: {"recall": _rate(sum(h), len(h)), "pairs": len(h)}
        for tag, h in sorted(per_transform.items())
    }
    report["flag_rate_per_kind"] = {
        kind: {"flagged_likely": _rate(sum(h), len(h)), "pairs": len(h)}
        for kind, h in sorted(per_kind.items())
    }
    report["namesake_false_flags"] = _kind_rate(per_kind, "namesake")
    report["shared_default_avatar_false_flags"] = _kind_rate(per_kind, "shared_default_avatar")
    # The mistakes themselves, so a reader can judge them rather than trust a rate.
    judged = list(zip(measured, verdicts, flagged, strict=True))
    report["false_flags"] = [_pair(m, v) for m, v, hit in judged if hit and not m.pair.is_clone]
    report["missed_clones"] = [_pair(m, v) for m, v, hit in judged if m.pair.is_clone and not hit]

    decided = right = clones_with_truth = 0
    for m, v in zip(measured, verdicts, strict=True):
        if not m.pair.is_clone or m.pair.copy_side == "unknown":
            continue
        clones_with_truth += 1
        if v.likely_impersonator != "unknown":
            decided += 1
            right += v.likely_impersonator == m.pair.copy_side
    report["likely_impersonator"] = {
        "accuracy_when_decided": _rate(right, decided),
        "coverage": _rate(decided, clones_with_truth),
    }

    bands = []
    for tenth in range(10):
        # Whole tenths, not a float range: 0.6 must fall in the 0.6-0.7 band, not between two.
        low = tenth / 10
        in_band = (scores >= low) & (scores < (tenth + 1) / 10 if tenth < 9 else scores <= 1.0)
        if in_band.any():
            bands.append(
                {
                    "band": f"{low:.1f}-{low + 0.1:.1f}",
                    "pairs": int(in_band.sum()),
                    "mean_score": round(float(scores[in_band].mean()), 3),
                    "observed_clone_rate": round(float(truth[in_band].mean()), 3),
                }
            )
    report["calibration"] = bands
    report["retrieval"] = retrieval
    return report


def _pair(measured: Any, verdict: Any) -> dict[str, Any]:
    """One labelled pair as the report lists it, with what the model said of it."""
    return {
        "kind": measured.pair.kind,
        "query": "/".join(measured.pair.query),
        "candidate": "/".join(measured.pair.candidate),
        "transforms": measured.pair.transforms,
        "score": round(verdict.score, 3),
        "reasons": verdict.reasons,
    }


def _kind_rate(per_kind: dict[str, list[bool]], needle: str) -> float | None:
    hits = [h for kind, flags in per_kind.items() if needle in kind for h in flags]
    return _rate(sum(hits), len(hits))


def _retrieval(engine: Any, pairs: list[Any]) -> dict[str, Any]:
    """Is each clone among the top 10 of a plain check of its original (min score 0)?"""
    found = total = 0
    latencies = []
    for pair in pairs:
        if not pair.is_clone:
            continue
        original, copy = (
            (pair.query, pair.candidate)
            if pair.copy_side == "candidate"
            else (pair.candidate, pair.query)
        )
        started = time.perf_counter()
        result = engine.check({"platform": original[0], "handle": original[1]}, min_score=0.0)
        latencies.append(time.perf_counter() - started)
        total += 1
        keys = {(m.profile["platform"], m.profile["handle"].casefold()) for m in result.matches}
        found += (copy[0], copy[1].casefold()) in keys
    return {
        "clone_in_top10": _rate(found, total),
        "checks": total,
        "check_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate(seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
