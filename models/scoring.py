"""The scoring model: the evidence of a pair -> a calibrated probability, a label and reasons.

A logistic regression with non-negative weights over a few designed features (each field's
similarity, weighed down when the avatar or bio is shared by many accounts, and the pairwise
agreement between fields), then an
isotonic calibration map, so that of pairs scored near 0.9 about nine in ten are clones. The
weights are data (`weights.json`), written by `training/train_scoring.py` from a labelled pair set
kept apart from the one the quality benchmark measures on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from models import reasons as reason_forms
from models.reasons import Reason
from models.result import Context, Impersonator, Label, PairEvidence, Verdict

DEFAULT_WEIGHTS = Path(__file__).with_name("weights.json")
HASH_BITS = 64


SHARED_BY_FEW = 2
SHARED_BY_MANY = 12


# Below these similarities a field is no evidence of a copy at all (its strength is 0), so
# the matcher need not propose candidates on their strength alone.
BIO_EVIDENCE_FROM = 0.5
AVATAR_EVIDENCE_FROM = 0.5
# Two display names this alike are one name (look-alikes, a dropped middle name, a typo).
SHARED_NAME = 0.8
# Handles this few keystrokes apart, as written, are one handle copied (namesakes add more).
NEAR_HANDLE_EDITS = 2
# A pair whose second strongest tie is weaker than this has one tie only.
SECOND_TIE = 0.25
# Below this a name's or a handle's likeness is no tie at all.
TIE_FROM = 0.6
# An avatar this strong (the same image, 4 of 64 bits apart or closer, rarely shared) is a
# lead. Not a looser near-copy: at 200,000 profiles most photos have an unrelated one within
# 6 to 10 bits (`python -m bench.false_alarms`).
PHOTO_LEAD = 0.75
# The most an avatar match counts for when it does not single the candidate out (the pictures
# meet in one pair of views while strangers' photos come as close): a weak tie, which still
# joins a strong second one, but never a lead and never a match on its own.
CROWDED_AVATAR = 0.35


@dataclass(frozen=True)
class PairColumns:
    """The fields the features read, one array entry per pair; a missing similarity is 0
    (a missing field contributes nothing, for or against)."""

    avatar: np.ndarray
    has_avatar: np.ndarray
    avatar_popularity: np.ndarray
    avatar_crowded: np.ndarray
    name: np.ndarray
    name_exact: np.ndarray
    name_popularity: np.ndarray
    handle: np.ndarray
    handle_exact: np.ndarray
    handle_popularity: np.ndarray
    handle_lookalike: np.ndarray
    handle_from_name: np.ndarray
    handle_edits: np.ndarray
    handles_only_name: np.ndarray
    bio: np.ndarray
    has_bio: np.ndarray
    bio_exact: np.ndarray
    bio_popularity: np.ndarray
    declared_unaffiliated: np.ndarray

    @classmethod
    def of(cls, evidence: Sequence[PairEvidence]) -> PairColumns:
        def column(values: Iterable[float | None]) -> np.ndarray:
            return np.fromiter(
                (0.0 if v is None else v for v in values), dtype=np.float64, count=len(evidence)
            )

        avatar = [e.avatar for e in evidence]
        bio = [e.bio for e in evidence]
        return cls(
            avatar=column(avatar),
            has_avatar=column(v is not None for v in avatar),
            avatar_popularity=column(e.avatar_popularity for e in evidence),
            avatar_crowded=column(e.avatar_crowded for e in evidence),
            name=column(e.display_name for e in evidence),
            name_exact=column(e.display_name_exact for e in evidence),
            name_popularity=column(e.name_popularity for e in evidence),
            handle=column(e.handle for e in evidence),
            handle_exact=column(e.handle_exact for e in evidence),
            handle_popularity=column(e.handle_popularity for e in evidence),
            handle_lookalike=column(e.handle_lookalike for e in evidence),
            handle_from_name=column(e.handle_from_name for e in evidence),
            handle_edits=column(e.handle_edits for e in evidence),
            handles_only_name=column(e.handles_only_name for e in evidence),
            bio=column(bio),
            has_bio=column(v is not None for v in bio),
            bio_exact=column(e.bio_exact for e in evidence),
            bio_popularity=column(e.bio_popularity for e in evidence),
            declared_unaffiliated=column(e.declared_unaffiliated for e in evidence),
        )


def _discount(popularity: np.ndarray) -> np.ndarray:
    """How much a shared avatar, bio or name still says: 1 when a few accounts share it (an
    original and its clones), nothing once many do (a default avatar, a template, John Smith)."""
    fading = (SHARED_BY_MANY - popularity) / (SHARED_BY_MANY - SHARED_BY_FEW)
    return np.where(popularity <= SHARED_BY_FEW, 1.0, np.clip(fading, 0.0, 1.0))


def _bio_strength(c: PairColumns) -> np.ndarray:
    # Unrelated English bios sit around 0.1-0.4 cosine; only the top half means "copied".
    rising = np.maximum(0.0, (c.bio - BIO_EVIDENCE_FROM) / (1 - BIO_EVIDENCE_FROM))
    return rising * c.has_bio * _discount(c.bio_popularity)


def _avatar_strength(c: PairColumns) -> np.ndarray:
    # Distinct photos still come within 16-24 bits (similarity 0.25-0.5) at the minimum over
    # several views; only the part above that is evidence of a copy.
    rising = np.maximum(0.0, (c.avatar - AVATAR_EVIDENCE_FROM) / (1 - AVATAR_EVIDENCE_FROM))
    rising = np.where(c.avatar_crowded > 0, np.minimum(rising, CROWDED_AVATAR), rising)
    return rising * c.has_avatar * _discount(c.avatar_popularity)


def _avatar_differs(c: PairColumns) -> np.ndarray:
    # Two different photos argue against a copy: impersonators take the victim's photo.
    # 0 for a near-copy (12 bits or closer), rising to 1 at about 19 bits apart.
    return np.clip((0.6 - c.avatar) / 0.2, 0.0, 1.0) * c.has_avatar


def _bio_differs(c: PairColumns) -> np.ndarray:
    return np.maximum(0.0, (0.4 - c.bio) / 0.4) * c.has_bio


def name_is_the_only_link(c: PairColumns) -> np.ndarray:
    """Whether nothing but the display name ties each pair: no copied photo or bio, and no
    handle beyond the bare name spelled out (which a namesake would pick too) unless it is
    spelled with look-alike characters swapped into the other's (which no namesake does) or
    is the other's within a keystroke or two where the name has (almost) no namesakes among
    the indexed identities."""
    own_handle_match = ((c.handle >= 0.8) & ((c.handles_only_name == 0) | _copied_spelling(c))) | (
        c.handle_lookalike == 1
    )
    return (
        (c.name >= SHARED_NAME)
        & (_avatar_strength(c) < 0.2)
        & (_bio_strength(c) < 0.2)
        & ~own_handle_match
    )


def _namesakes_handles(c: PairColumns) -> np.ndarray:
    """Whether each pair's handles agree only as namesakes' would (both spell the shared
    name). Not where the name has almost no namesakes (no more other indexed identities
    carry it than the name's discount ignores) and one handle is the other within a
    keystroke or two ("jane_doe" for "janedoe"): that is the name's owner's handle, copied."""
    return c.handle_from_name * ~_copied_spelling(c)


def _copied_spelling(c: PairColumns) -> np.ndarray:
    """Whether each pair carries the very same name (after look-alike folding), a name almost
    no other indexed identity carries, with one handle the other's within a keystroke or two:
    the name's owner's handle, copied. Two like names ("Kristin" and "Kristen Miller") are two
    names, each spelled by its own handle."""
    return (
        (c.name_exact == 1)
        & (c.name_popularity <= SHARED_BY_FEW)
        & (c.handle_edits <= NEAR_HANDLE_EDITS)
    )


def _handle_strength(c: PairColumns) -> np.ndarray:
    # A look-alike swap or a misspelling is never "only the name" (compare sees to that), so
    # a disguised handle keeps its likeness here; a core that strangers carry too says little.
    return c.handle * (1.0 - _namesakes_handles(c)) * _discount(c.handle_popularity)


def _ties(c: PairColumns) -> np.ndarray:
    """Each field's strength as evidence that the two accounts are one identity, one column
    per field (avatar, bio, name, handle), sorted strongest first.

    Which fields tie a pair varies from one impersonator to the next (a photo and a handle, a
    name and a bio, a name and a look-alike handle): features read the strongest, second and
    third strongest ties rather than any named combination, so a way of copying that training
    never showed still counts by how many strong ties it leaves."""
    fields = np.column_stack(
        [_avatar_strength(c), _bio_strength(c), _rising(c.name), _rising(_handle_strength(c))]
    )
    return -np.sort(-fields, axis=1)


def _rising(similarity: np.ndarray) -> np.ndarray:
    # Unrelated names and handles still share letters (0.5-0.6 alike is common); as for the
    # avatar and the bio, only the part above that says "copied", on the same 0-1 scale.
    return np.clip((similarity - TIE_FROM) / (1 - TIE_FROM), 0.0, 1.0)


def photo_is_a_lead(c: PairColumns) -> np.ndarray:
    """Whether each pair's avatars are one image (within 4 of 64 bits) that no more than a
    few unrelated accounts wear: enough for a person to look, never a finding."""
    return _avatar_strength(c) >= PHOTO_LEAD


def _strong_fields(c: PairColumns) -> np.ndarray:
    return (
        (_avatar_strength(c) >= 0.4).astype(np.float64)
        + (c.name >= 0.9)
        + (_bio_strength(c) >= 0.8)
        + (_handle_strength(c) >= 0.85)
    )


# Each feature measures either likeness (its weight is kept >= 0 in training) or contradiction
# (kept <= 0), so more likeness never lowers a score and the model cannot learn a quirk of the
# training corpus such as "a missing avatar means a clone". A missing field contributes nothing.
# Each is computed for every pair of a batch at once.
FEATURES: dict[str, Callable[[PairColumns], np.ndarray]] = {
    "avatar": _avatar_strength,
    "name": lambda c: c.name,
    "name_exact": lambda c: c.name_exact * _discount(c.name_popularity),
    "handle": _handle_strength,
    "handle_exact": lambda c: (
        c.handle_exact * (1.0 - _namesakes_handles(c)) * _discount(c.handle_popularity)
    ),
    "handle_lookalike": lambda c: c.handle_lookalike,
    "bio": _bio_strength,
    "bio_exact": lambda c: c.bio_exact * _discount(c.bio_popularity),
    "second_tie": lambda c: _ties(c)[:, 1],
    "third_tie": lambda c: _ties(c)[:, 2],
    "strong_fields": _strong_fields,
    "avatar_differs": _avatar_differs,
    "bio_differs": _bio_differs,
    # A handle that only spells the display name is what any namesake would pick: this takes
    # back part of the name's weight (how much is learned) when both handles are such.
    "handle_from_name": lambda c: c.name * _namesakes_handles(c),
}
# Features that can only count against a pair (their weights are kept at or below zero).
CONTRADICTING_FEATURES = frozenset({"avatar_differs", "bio_differs", "handle_from_name"})
FEATURE_NAMES = tuple(FEATURES)


def feature_matrix(evidence: Sequence[PairEvidence] | PairColumns) -> np.ndarray:
    """The model's input: one row of FEATURE_NAMES per pair."""
    columns = evidence if isinstance(evidence, PairColumns) else PairColumns.of(evidence)
    if not len(columns.avatar):
        return np.zeros((0, len(FEATURES)), dtype=np.float64)
    return np.column_stack([np.asarray(fn(columns), dtype=np.float64) for fn in FEATURES.values()])


@dataclass(frozen=True)
class Thresholds:
    likely_clone: float
    possible_clone: float

    def label(self, score: float) -> Label:
        if score >= self.likely_clone:
            return "likely_clone"
        if score >= self.possible_clone:
            return "possible_clone"
        return "unlikely"


class ScoringModel:
    """Scores pairs in one batch; built once from its weights file."""

    def __init__(self, weights: dict[str, Any]) -> None:
        names = tuple(weights["features"])
        if names != FEATURE_NAMES:
            raise ValueError(
                "weights were trained on other features; run training/train_scoring.py again"
            )
        self.coef = np.asarray(weights["coef"], dtype=np.float64)
        self.intercept = float(weights["intercept"])
        self.calibration_x = np.asarray(weights["calibration"]["x"], dtype=np.float64)
        self.calibration_y = np.asarray(weights["calibration"]["y"], dtype=np.float64)
        self.thresholds = Thresholds(**weights["thresholds"])
        self.version = str(weights.get("version", "unversioned"))

    @classmethod
    def load(cls, path: Path | None = None) -> ScoringModel:
        return cls(json.loads((path or DEFAULT_WEIGHTS).read_text(encoding="utf-8")))

    @classmethod
    def untrained(cls) -> ScoringModel:
        """A model that knows the features but weighs none of them: what training measures
        pairs with, since the weights on disk may be for other features."""
        return cls(
            {
                "features": list(FEATURE_NAMES),
                "coef": [0.0] * len(FEATURE_NAMES),
                "intercept": 0.0,
                "calibration": {"x": [0.0, 1.0], "y": [0.0, 1.0]},
                "thresholds": {"likely_clone": 0.8, "possible_clone": 0.4},
                "version": "untrained",
            }
        )

    def probabilities(self, evidence: Sequence[PairEvidence]) -> np.ndarray:
        """Calibrated clone probabilities, one per pair."""
        if not evidence:
            return np.zeros(0)
        columns = PairColumns.of(evidence)
        raw = feature_matrix(columns) @ self.coef + self.intercept
        uncalibrated = 1.0 / (1.0 + np.exp(-raw))
        calibrated = np.interp(uncalibrated, self.calibration_x, self.calibration_y)
        # Between the two thresholds: reviewable, never a finding on its own.
        review = (self.thresholds.possible_clone + self.thresholds.likely_clone) / 2
        # Namesakes exist: a name, even with a handle that only spells it, is never enough for
        # likely_clone, however the corpus that trained the weights happened to balance them.
        # A declared fan or parody account may show the person openly; whether it crosses
        # into impersonation is for a person to judge.
        judged = name_is_the_only_link(columns) | (columns.declared_unaffiliated > 0)
        # One field alike, however strongly, is a lead for a person, never a finding: a
        # finding takes a second tie (a photo and a handle, a name and a bio, ...).
        one_tie = _ties(columns)[:, 1] < SECOND_TIE
        # A photo that no stranger wears, copied, is a lead whatever else differs: catfish
        # accounts keep the photo and change everything else.
        lead = photo_is_a_lead(columns) & ~judged
        calibrated = np.where(judged | one_tie, np.minimum(calibrated, review), calibrated)
        calibrated = np.where(lead, np.maximum(calibrated, review), calibrated)
        # No pair of profiles proves identity beyond doubt, nor rules it out entirely.
        return np.clip(calibrated, 0.001, 0.999)

    def score(self, evidence: Sequence[PairEvidence]) -> list[Verdict]:
        """A verdict per pair: score, label, quotable reasons and which side is the copy."""
        return [
            self.verdict(e, p) for e, p in zip(evidence, self.probabilities(evidence), strict=True)
        ]

    def verdict(self, evidence: PairEvidence, probability: float) -> Verdict:
        """The verdict of one pair whose probability is known: callers that rank many pairs
        compute probabilities in one batch and explain only the pairs they keep."""
        score = round(float(probability), 4)
        return Verdict(
            score=score,
            label=self.thresholds.label(score),
            reasons=reasons(evidence),
            likely_impersonator=likely_impersonator(
                evidence.query_context, evidence.candidate_context
            ),
        )


def reasons(e: PairEvidence) -> list[str]:
    """Short sentences a person can read and a lawyer can quote, strongest evidence first:
    the technical form of each of `explain(e)`."""
    return [reason.detail for reason in explain(e)]


def explain(e: PairEvidence) -> list[Reason]:
    """The reasons of a pair, each in plain words for people and in its technical form,
    strongest evidence first."""
    out: list[Reason] = []
    columns = PairColumns.of([e])
    if e.avatar is not None and e.avatar_bits is not None:
        bits = {"bits": e.avatar_bits, "total": HASH_BITS}
        if e.avatar >= 0.6 and e.avatar_crowded:
            out.append(reason_forms.AVATAR_CROWDED.say(**bits))
        elif e.avatar_bits == 0:
            out.append(reason_forms.AVATAR_SAME.say(total=HASH_BITS))
        elif e.avatar >= 0.6:
            out.append(reason_forms.AVATAR_NEAR_COPY.say(**bits))
        elif _avatar_differs(columns)[0] >= 0.5:
            out.append(reason_forms.AVATARS_DIFFER.say(**bits))
        if e.avatar >= 0.6 and e.avatar_popularity > SHARED_BY_FEW:
            out.append(reason_forms.AVATAR_STOCK.say(count=e.avatar_popularity))
        elif e.avatar >= 0.6 and e.avatar_copies >= 2:
            out.append(reason_forms.AVATAR_OF_CLONES.say(count=e.avatar_copies))
    if e.display_name is not None:
        if e.display_name_verbatim:
            out.append(reason_forms.NAME_VERBATIM.say())
        elif e.display_name_exact:
            out.append(reason_forms.NAME_FOLDED.say())
        elif e.display_name >= 0.85:
            out.append(reason_forms.NAME_NEAR.say(alike=f"{e.display_name:.0%}"))
        out.extend(reason_forms.NAME_LOOKALIKE_LETTER.say(note=n) for n in e.lookalikes[:3])
    if e.handle is not None:
        if e.handle_exact:
            out.append(reason_forms.HANDLE_DECORATED.say())
        elif e.handle >= 0.8:
            out.append(reason_forms.HANDLE_SIMILAR.say(alike=f"{e.handle:.0%}"))
        if e.handle_typo:
            out.append(reason_forms.HANDLE_TYPO.say())
        elif e.handle_lookalike:
            out.append(reason_forms.HANDLE_LOOKALIKE.say())
        if e.handle_from_name and e.handle >= 0.8:
            if not _copied_spelling(columns)[0] and e.handles_only_name:
                out.append(reason_forms.HANDLE_SPELLS_NAME.say())
            elif not _copied_spelling(columns)[0]:
                out.append(reason_forms.HANDLE_NAME_AND_WORDS.say())
            else:
                out.append(reason_forms.HANDLE_COPIED_SPELLING.say())
        if e.handle >= 0.8 and e.handle_popularity > SHARED_BY_FEW:
            out.append(reason_forms.HANDLE_COMMON.say(count=e.handle_popularity))
    if e.declared_unaffiliated:
        out.append(reason_forms.DECLARED_UNAFFILIATED.say())
    if e.bio is not None:
        if e.bio_exact:
            out.append(reason_forms.BIO_VERBATIM.say())
        elif e.bio >= 0.9:
            out.append(reason_forms.BIO_NEAR.say(cosine=f"{e.bio:.2f}"))
        elif e.bio >= 0.75:
            out.append(reason_forms.BIO_SAME_MEANING.say(cosine=f"{e.bio:.2f}"))
        elif _bio_differs(columns)[0] >= 0.5:
            out.append(reason_forms.BIOS_UNRELATED.say(cosine=f"{e.bio:.2f}"))
        if e.bio >= 0.9 and e.bio_popularity > SHARED_BY_FEW:
            out.append(reason_forms.BIO_TEMPLATE.say(count=e.bio_popularity))
    out.extend(_context_reasons(e.query_context, e.candidate_context))
    if not out:
        out.append(reason_forms.NOTHING_ALIKE.say())
    return out


def _context_reasons(query: Context, candidate: Context) -> list[Reason]:
    out = []
    if query.created_at and candidate.created_at and query.created_at != candidate.created_at:
        newer = (
            reason_forms.NEWER_ACCOUNT
            if candidate.created_at > query.created_at
            else reason_forms.OLDER_ACCOUNT
        )
        out.append(newer.say(created=_day(candidate.created_at), yours=_day(query.created_at)))
    if query.verified != candidate.verified and (query.verified or candidate.verified):
        out.append(
            reason_forms.ONLY_YOURS_VERIFIED.say()
            if query.verified
            else reason_forms.ONLY_THEIRS_VERIFIED.say()
        )
    return out


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def likely_impersonator(query: Context, candidate: Context) -> Impersonator:
    """Which side is the copy: the newer, less followed, unverified one (Goga et al., 2015).

    Each clue votes for the side it marks as the copy (the badge most, then age, then
    followers); no clue, or clues that cancel, say `unknown` rather than guess.
    """
    votes = 0.0  # > 0: the candidate is the copy
    if query.verified != candidate.verified and (query.verified or candidate.verified):
        # The platform vouched for one side's identity: that outweighs age and followers.
        votes += 4.0 if query.verified else -4.0
    if query.created_at and candidate.created_at:
        gap_days = (candidate.created_at - query.created_at).total_seconds() / 86_400
        if abs(gap_days) >= 1:
            votes += 2.0 if gap_days > 0 else -2.0
    if query.followers_count is not None and candidate.followers_count is not None:
        q, c = query.followers_count + 1, candidate.followers_count + 1
        if max(q, c) >= 2 * min(q, c):
            votes += 1.0 if c < q else -1.0
    if votes > 0:
        return "candidate"
    if votes < 0:
        return "query"
    return "unknown"
