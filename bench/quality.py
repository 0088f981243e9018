"""Detection quality on a split the scoring model never saw in training.

    python -m bench.quality [--split test|validation] [--seed 7] [--out FILE]

Design choices are tried on the validation split (`--split validation`, saved beside the test
figures as quality-validation.json); the test split is read for the figures the README quotes.

Builds the held-out labelled corpus, ingests it into a throw-away engine, scores every labelled
pair through the service, and reports: recall and precision at `likely_clone`, average
precision, recall per kind of clone (at the label each kind must reach) and per transformation,
each kind's recall by a model trained without that kind (leave one out), false flags on
namesakes, shared default avatars and stock photos, how a person's own second account and
declared fan accounts are labelled, the accuracy and coverage of `likely_impersonator` by kind
of context, calibration by score band, and retrieval (is the clone among the first 50 matches
of a plain check of the original?).
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

from bench.provenance import save_result
from models.scoring import ScoringModel, Thresholds
from training.evidence import MeasuredPair, corpus_engine, measure_pairs
from training.pairset import (
    CLONE_KINDS,
    EXPECTED_LABEL,
    SELF_DECLARED_KINDS,
    SPLITS,
    Split,
    build_corpus,
)
from training.train_scoring import fit, measure_split

logger = logging.getLogger(__name__)
DEFAULT_OUT = Path(__file__).with_name("results") / "quality.json"
LABELS = ("likely_clone", "possible_clone", "unlikely")
RETRIEVAL_TOP_K = 50


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def evaluate(*, seed: int, split: Split = "test", leave_one_out: bool = True) -> dict[str, Any]:
    corpus = build_corpus(split, seed=seed)
    with corpus_engine(corpus) as engine:
        every = measure_pairs(engine, corpus.pairs)
        retrieval = _retrieval(engine, corpus.pairs)
        scorer = engine.scorer
    likely = scorer.thresholds.likely_clone
    possible = scorer.thresholds.possible_clone
    # Pairs whose truth no comparison settles (a person's own second account, a declared fan
    # account) are reported on their own, outside precision and recall.
    measured = [m for m in every if m.pair.kind not in SELF_DECLARED_KINDS]
    aside = [m for m in every if m.pair.kind in SELF_DECLARED_KINDS]
    verdicts = scorer.score([m.evidence for m in measured])

    scores = np.array([v.score for v in verdicts])
    truth = np.array([m.pair.is_clone for m in measured])
    flagged = scores >= likely
    # A clone counts as found at the label its kind must reach (a photo alone: possible).
    needed = np.array([_needed(m.pair.kind, scorer.thresholds) for m in measured])
    found = scores >= needed
    must = truth & (needed == likely)
    report: dict[str, Any] = {
        "split": split,
        "seed": seed,
        "model_version": scorer.version,
        "pairs": int(len(truth)),
        "clones": int(truth.sum()),
        "thresholds": {"likely_clone": likely, "possible_clone": possible},
        # Over the kinds that must reach likely_clone (a photo alone is a lead, held below).
        "recall_at_likely": _rate(int((flagged & must).sum()), int(must.sum())),
        "recall_at_expected_label": _rate(int((found & truth).sum()), int(truth.sum())),
        "precision_at_likely": _rate(int((flagged & truth).sum()), int(flagged.sum())),
        "recall_at_possible": _rate(int(((scores >= possible) & truth).sum()), int(truth.sum())),
        "average_precision": round(float(average_precision_score(truth, scores)), 4),
    }
    report["recall_per_clone_kind"] = {
        kind: {
            "expected_label": EXPECTED_LABEL.get(kind, "likely_clone"),
            "recall": _rate(sum(hits), len(hits)),
            "pairs": len(hits),
        }
        for kind in CLONE_KINDS
        if (hits := [bool(f) for m, f in zip(measured, found, strict=True) if m.pair.kind == kind])
    }
    report["self_declared"] = {
        kind: _labels_of(scorer, [m for m in aside if m.pair.kind == kind])
        for kind in SELF_DECLARED_KINDS
    }
    if leave_one_out:
        report["leave_one_out"] = _leave_one_out(measured, seed=seed)

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
    report["stock_photo_false_flags"] = _kind_rate(per_kind, "stock_photo")
    # The mistakes themselves, so a reader can judge them rather than trust a rate.
    judged = list(zip(measured, verdicts, flagged, strict=True))
    report["false_flags"] = [_pair(m, v) for m, v, hit in judged if hit and not m.pair.is_clone]
    report["missed_clones"] = [_pair(m, v) for m, v, hit in judged if m.pair.is_clone and not hit]

    decided = right = clones_with_truth = 0
    by_context: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # clones, decided, right
    for m, v in zip(measured, verdicts, strict=True):
        if not m.pair.is_clone or m.pair.copy_side == "unknown":
            continue
        clones_with_truth += 1
        context = next((t for t in m.pair.transforms if t.startswith("context:")), "plain")
        by_context[context][0] += 1
        if v.likely_impersonator != "unknown":
            decided += 1
            right += v.likely_impersonator == m.pair.copy_side
            by_context[context][1] += 1
            by_context[context][2] += v.likely_impersonator == m.pair.copy_side
    report["likely_impersonator"] = {
        "accuracy_when_decided": _rate(right, decided),
        "coverage": _rate(decided, clones_with_truth),
        "unknown_rate": _rate(clones_with_truth - decided, clones_with_truth),
        "per_context": {
            context: {
                "clones": n,
                "accuracy_when_decided": _rate(r, d),
                "coverage": _rate(d, n),
            }
            for context, (n, d, r) in sorted(by_context.items())
        },
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


def _needed(kind: str, thresholds: Thresholds) -> float:
    if EXPECTED_LABEL.get(kind) == "possible_clone":
        return thresholds.possible_clone
    return thresholds.likely_clone


def _labels_of(scorer: ScoringModel, measured: list[MeasuredPair]) -> dict[str, Any]:
    """How pairs were labelled: the share at each label."""
    labels: list[str] = [v.label for v in scorer.score([m.evidence for m in measured])]
    return {
        "pairs": len(labels),
        **{label: _rate(labels.count(label), len(labels)) for label in LABELS},
    }


def _leave_one_out(test: list[MeasuredPair], *, seed: int) -> dict[str, Any]:
    """Each clone kind's recall at `likely_clone` by a model trained WITHOUT that kind: does
    the model recognise a way of copying it was never shown? (Kinds the model never trains
    on, such as a photo alone, are left out of this table.)"""
    train = measure_split("train", seed=seed)
    out: dict[str, Any] = {}
    for kind in CLONE_KINDS:
        held = [m for m in test if m.pair.kind == kind]
        if not held or kind in EXPECTED_LABEL:
            continue
        scorer = ScoringModel(fit(train, seed=seed, leave_out=[kind]))
        scores = scorer.probabilities([m.evidence for m in held])
        hits = int((np.round(scores, 4) >= scorer.thresholds.likely_clone).sum())
        out[kind] = {"recall_left_out": _rate(hits, len(held)), "pairs": len(held)}
    return out


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
    """Is each clone among the first RETRIEVAL_TOP_K matches of a plain check of its original
    (min score 0)? Deep enough for a victim's whole family of clones (up to 30)."""
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
        result = engine.check(
            {"platform": original[0], "handle": original[1]},
            top_k=RETRIEVAL_TOP_K,
            min_score=0.0,
        )
        latencies.append(time.perf_counter() - started)
        total += 1
        keys = {(m.profile["platform"], m.profile["handle"].casefold()) for m in result.matches}
        found += (copy[0], copy[1].casefold()) in keys
    return {
        "clone_found": _rate(found, total),
        "top_k": RETRIEVAL_TOP_K,
        "checks": total,
        "check_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--split",
        choices=[s for s in SPLITS if s != "train"],
        default="test",
        help="validation while designing; test only for the figures the README quotes",
    )
    parser.add_argument("--no-leave-one-out", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate(seed=args.seed, split=args.split, leave_one_out=not args.no_leave_one_out)
    if args.out is None:
        args.out = (
            DEFAULT_OUT
            if args.split == "test"
            else DEFAULT_OUT.with_name(f"quality-{args.split}.json")
        )
    saved = save_result(args.out, report)
    print(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
