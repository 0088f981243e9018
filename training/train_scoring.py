"""Fit the scoring model's weights on the TRAIN split and write `models/weights.json`.

    python -m training.train_scoring [--seed 7]

Builds the labelled training corpus (training/pairset.py), ingests it into a throw-away engine,
measures every labelled pair through the service's own comparison code, fits a logistic
regression on the designed features (models/scoring.py), and calibrates it with isotonic
regression on out-of-fold predictions, so the calibration is not fitted on scores the model has
already seen. The test split is never touched here: bench/quality.py measures on it.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from models.scoring import DEFAULT_WEIGHTS, FEATURE_NAMES, feature_matrix
from training.evidence import corpus_engine, measure_pairs
from training.pairset import build_corpus

logger = logging.getLogger(__name__)

# The label thresholds are part of the contract the README states; they are chosen for what a
# label promises (likely: about 9 in 10 such pairs are clones), not fitted to the data.
THRESHOLDS = {"likely_clone": 0.8, "possible_clone": 0.4}
REGULARIZATION_C = 1.0


def train(*, seed: int) -> dict[str, object]:
    corpus = build_corpus("train", seed=seed)
    logger.info("train corpus: %d profiles, %d pairs", len(corpus.profiles), len(corpus.pairs))
    with corpus_engine(corpus) as engine:
        measured = measure_pairs(engine, corpus.pairs)
    x = feature_matrix([m.evidence for m in measured])
    y = np.array([m.pair.is_clone for m in measured], dtype=int)

    model = LogisticRegression(C=REGULARIZATION_C, max_iter=5_000)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    calibration = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    calibration.fit(out_of_fold, y)
    model.fit(x, y)

    return {
        "version": f"lr-isotonic-{datetime.now(UTC):%Y%m%d}",
        "features": list(FEATURE_NAMES),
        "coef": [round(float(c), 6) for c in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
        "calibration": {
            "x": [round(float(v), 6) for v in calibration.X_thresholds_],
            "y": [round(float(v), 6) for v in calibration.y_thresholds_],
        },
        "thresholds": THRESHOLDS,
        "training": {
            "split": "train",
            "seed": seed,
            "pairs": int(len(y)),
            "clones": int(y.sum()),
            "profiles": len(corpus.profiles),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    weights = train(seed=args.seed)
    DEFAULT_WEIGHTS.write_text(json.dumps(weights, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", DEFAULT_WEIGHTS)


if __name__ == "__main__":
    main()
