"""The most a pair can score, from its four similarities alone.

Comparing and scoring a pair in full (look-alike notes, handle spellings, popularity, context)
costs microseconds of Python each; a table lookup costs nanoseconds. Screens that see far more
pairs than can match (the watchlist against every ingested profile, a check against every
proposed candidate) look up each pair's bound and score in full only the pairs whose bound
reaches the score they need, so they keep exactly the matches a full scoring would.
"""

from __future__ import annotations

import numpy as np

from models.result import PairEvidence
from models.scoring import ScoringModel

# The table's resolution: similarities are rounded up to steps of 1 / STEPS (after a margin
# that absorbs float32 rounding); ABSENT is the index of a field one side lacks.
STEPS = 10
ROUNDING = 1e-4
ABSENT = STEPS + 1


class ScoreBounds:
    """The most a pair can score, looked up from its four similarities rounded up.

    Every likeness feature of the scoring model grows with each field's similarity, each
    contradiction shrinks with it, and the calibration is monotone; so the model's score at the
    similarities rounded up (exact-match flags set in the top step, a field one side lacks left
    out, and nothing discounted for being shared by many accounts) bounds the pair's real score.
    The table holds that score for every combination of steps, computed from the weights, so a
    retrained model can never make a screen drop a pair it would keep; one array lookup
    per pair then stands in for comparing and scoring it in Python.
    """

    def __init__(self, scorer: ScoringModel) -> None:
        levels = [k / STEPS for k in range(STEPS + 1)]
        optional: list[float | None] = [*levels, None]  # index ABSENT: the field is missing
        evidence = [
            PairEvidence(
                avatar=avatar,
                bio=bio,
                bio_exact=bio == 1.0,
                display_name=name,
                display_name_exact=name == 1.0,
                handle=handle,
                handle_exact=handle == 1.0,
                # A look-alike swap can come with any handle similarity: assume it always.
                handle_lookalike=True,
            )
            for avatar in optional
            for bio in optional
            for name in levels
            for handle in levels
        ]
        n = len(levels)
        self.table = scorer.probabilities(evidence).reshape(n + 1, n + 1, n, n)

    @staticmethod
    def steps(similarity: np.ndarray) -> np.ndarray:
        """Table indexes of similarities in [0, 1], rounded up."""
        scaled = np.ceil((np.asarray(similarity, dtype=np.float64) + ROUNDING) * STEPS)
        return np.clip(scaled, 0, STEPS).astype(np.intp)

    def of(
        self, *, avatar: np.ndarray, bio: np.ndarray, name: np.ndarray, handle: np.ndarray
    ) -> np.ndarray:
        """The bound of each pair from its similarities; NaN avatar or bio: a side lacks it."""
        return self.table[
            _optional_steps(avatar), _optional_steps(bio), self.steps(name), self.steps(handle)
        ]


def _optional_steps(similarity: np.ndarray) -> np.ndarray:
    values = np.asarray(similarity, dtype=np.float64)
    return np.where(np.isnan(values), ABSENT, ScoreBounds.steps(np.nan_to_num(values)))
