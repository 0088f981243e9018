"""Fit the scoring model's weights on the TRAIN split and write `models/weights.json`.

    python -m training.train_scoring [--seed 7]

Builds the labelled training corpus (training/pairset.py), ingests it into a throw-away engine,
measures every labelled pair through the service's own comparison code, fits a logistic
regression on the designed features (models/scoring.py), and calibrates it with isotonic
regression on out-of-fold predictions, so the calibration is not fitted on scores the model has
already seen. Neither the validation split (where design choices are tried) nor the test
split (read only for the README's figures, by bench/quality.py) is touched here.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from models.scoring import (
    CONTRADICTING_FEATURES,
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    ScoringModel,
    feature_matrix,
)
from training.evidence import MeasuredPair, corpus_engine, measure_pairs
from training.pairset import (
    EXPECTED_LABEL,
    SELF_DECLARED_KINDS,
    LabelledPair,
    Split,
    build_corpus,
)

logger = logging.getLogger(__name__)

# The label thresholds are part of the contract the README states; they are chosen for what a
# label promises (likely: about 9 in 10 such pairs are clones), not fitted to the data.
THRESHOLDS = {"likely_clone": 0.8, "possible_clone": 0.4}
REGULARIZATION_C = 1.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_monotone_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression with sign-constrained weights.

    Likeness features get weights >= 0 and contradiction features weights <= 0: any other sign
    could only encode a quirk of the training corpus; the bounds keep the score monotone in
    the evidence.
    """
    n, d = x.shape

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:d], params[d]
        z = x @ w + b
        p = _sigmoid(z)
        # log(1 + e^z) - y z, computed stably
        nll = float(np.sum(np.logaddexp(0.0, z) - y * z)) / n
        penalty = float(w @ w) / (2 * REGULARIZATION_C * n)
        grad_z = (p - y) / n
        grad = np.concatenate([x.T @ grad_z + w / (REGULARIZATION_C * n), [grad_z.sum()]])
        return nll + penalty, grad

    bounds = [
        (None, 0.0) if name in CONTRADICTING_FEATURES else (0.0, None) for name in FEATURE_NAMES
    ] + [(None, None)]
    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    if not result.success:
        logger.warning("logistic fit did not converge: %s", result.message)
    return result.x[:d], float(result.x[d])


def trains_on(pair: LabelledPair) -> bool:
    """Whether a labelled pair teaches the model: not one whose truth no comparison can settle
    (a person's own second account, a declared fan account), nor a clone whose expected label
    is a lead for review rather than a finding (a photo alone)."""
    return pair.kind not in SELF_DECLARED_KINDS and pair.kind not in EXPECTED_LABEL


def measure_split(split: Split, *, seed: int) -> list[MeasuredPair]:
    """Every labelled pair of one split, measured through the service's own code."""
    corpus = build_corpus(split, seed=seed)
    logger.info("%s corpus: %d profiles, %d pairs", split, len(corpus.profiles), len(corpus.pairs))
    with corpus_engine(corpus, scorer=ScoringModel.untrained()) as engine:
        return measure_pairs(engine, corpus.pairs)


def fit(
    measured: Sequence[MeasuredPair], *, seed: int, leave_out: Iterable[str] = ()
) -> dict[str, object]:
    """The weights fitted on `measured` (less the kinds in `leave_out`), calibrated on
    out-of-fold predictions."""
    left_out = set(leave_out)
    kept = [m for m in measured if trains_on(m.pair) and m.pair.kind not in left_out]
    x = feature_matrix([m.evidence for m in kept])
    y = np.array([m.pair.is_clone for m in kept], dtype=int)

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    out_of_fold = np.zeros(len(y))
    for fit_rows, held_rows in folds.split(x, y):
        coef, intercept = fit_monotone_logistic(x[fit_rows], y[fit_rows])
        out_of_fold[held_rows] = _sigmoid(x[held_rows] @ coef + intercept)
    calibration = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    calibration.fit(out_of_fold, y)
    coef, intercept = fit_monotone_logistic(x, y)

    return {
        "version": f"lr-isotonic-{datetime.now(UTC):%Y%m%d}",
        "features": list(FEATURE_NAMES),
        "coef": [round(float(c), 6) for c in coef],
        "intercept": round(float(intercept), 6),
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
            "left_out": sorted(left_out),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }


def train(*, seed: int) -> dict[str, object]:
    return fit(measure_split("train", seed=seed), seed=seed)


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
