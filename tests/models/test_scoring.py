"""The scoring model's promises: calibrated probabilities, honest labels, quotable reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.result import Context, PairEvidence
from models.scoring import FEATURE_NAMES, ScoringModel, likely_impersonator, reasons

OLD = datetime(2012, 1, 1, tzinfo=UTC)
NEW = datetime(2019, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    return ScoringModel.load()


def full_copy() -> PairEvidence:
    return PairEvidence(
        avatar=0.94,
        avatar_bits=2,
        avatar_popularity=1,
        display_name=1.0,
        display_name_exact=True,
        handle=0.9,
        bio=0.99,
        bio_exact=True,
        bio_popularity=1,
    )


def test_weights_match_the_features(model: ScoringModel) -> None:
    assert len(model.coef) == len(FEATURE_NAMES)


def test_full_copy_is_a_likely_clone(model: ScoringModel) -> None:
    [verdict] = model.score([full_copy()])
    assert verdict.label == "likely_clone"
    assert 0.0 <= verdict.score <= 1.0


def test_unrelated_pair_is_unlikely(model: ScoringModel) -> None:
    unrelated = PairEvidence(avatar=0.0, avatar_bits=33, display_name=0.2, handle=0.1, bio=0.2)
    [verdict] = model.score([unrelated])
    assert verdict.label == "unlikely"


def test_a_shared_name_alone_is_not_a_likely_clone(model: ScoringModel) -> None:
    namesake = PairEvidence(
        avatar=0.0,
        avatar_bits=30,
        display_name=1.0,
        display_name_exact=True,
        display_name_verbatim=True,
        handle=0.5,
        bio=0.3,
    )
    [verdict] = model.score([namesake])
    assert verdict.label != "likely_clone"


def test_a_name_with_a_handle_that_only_spells_it_is_not_a_likely_clone(
    model: ScoringModel,
) -> None:
    """@mariagarcia67 and @mariagarcia, both "Maria Garcia", nothing else in common: what two
    namesakes look like. The same pair with a handle of its own (@mg_reads) is a copy."""
    spelled = PairEvidence(
        display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True,
        handle_from_name=True, handles_only_name=True,
    )  # fmt: skip
    own = PairEvidence(display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True)
    disguised = PairEvidence(
        display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True,
        handle_lookalike=True, handles_only_name=True,
    )  # fmt: skip
    spelled_verdict, own_verdict, disguised_verdict = model.score([spelled, own, disguised])
    assert spelled_verdict.label == "possible_clone"
    assert own_verdict.label == "likely_clone"
    # @danielec0tr0nei for @danielecotronei: a namesake spells the name, never disguises it.
    assert disguised_verdict.label == "likely_clone"
    assert "look-alike characters swapped in" in " ".join(disguised_verdict.reasons)
    assert "both handles just spell the display name" in " ".join(spelled_verdict.reasons)


def test_a_common_avatar_counts_for_less(model: ScoringModel) -> None:
    same_name = {"display_name": 1.0, "display_name_exact": True, "name_popularity": 1}
    rare = PairEvidence(avatar=1.0, avatar_bits=0, avatar_popularity=1, **same_name)
    common = PairEvidence(avatar=1.0, avatar_bits=0, avatar_popularity=30, **same_name)
    rare_score, common_score = model.probabilities([rare, common])
    assert common_score < rare_score
    [verdict] = model.score([common])
    assert verdict.label != "likely_clone"


def test_a_common_name_counts_for_less(model: ScoringModel) -> None:
    unique = PairEvidence(display_name=1.0, display_name_exact=True, name_popularity=1, bio=0.8)
    common = PairEvidence(display_name=1.0, display_name_exact=True, name_popularity=25, bio=0.8)
    unique_score, common_score = model.probabilities([unique, common])
    assert common_score < unique_score


def test_scores_rise_with_evidence(model: ScoringModel) -> None:
    name_only = PairEvidence(display_name=1.0, display_name_exact=True)
    name_and_avatar = PairEvidence(
        display_name=1.0, display_name_exact=True, avatar=0.95, avatar_bits=2, avatar_popularity=1
    )
    low, high = model.probabilities([name_only, name_and_avatar])
    assert high > low


def test_reasons_are_readable_sentences() -> None:
    evidence = full_copy()
    evidence.lookalikes = ["'а' (U+0430 CYRILLIC SMALL LETTER A) looks like 'a'"]
    evidence.display_name_verbatim = False
    text = reasons(evidence)
    assert "avatar is a near-copy: 2 of 64 bits differ" in text
    assert "display name identical after look-alike folding" in text
    assert any("U+0430" in r for r in text)
    assert "bio copied verbatim" in text


def test_reasons_never_empty() -> None:
    assert reasons(PairEvidence()) == ["no field is strongly alike"]


@pytest.mark.parametrize(
    ("query", "candidate", "expected"),
    [
        (Context(OLD, 5000, False), Context(NEW, 12, False), "candidate"),
        (Context(NEW, 12, False), Context(OLD, 5000, False), "query"),
        (Context(NEW, 10, True), Context(OLD, 5000, False), "candidate"),  # the badge wins
        (Context(), Context(), "unknown"),
        (Context(OLD, None, None), Context(OLD, None, None), "unknown"),
        (Context(None, 100, None), Context(None, 10, None), "candidate"),
    ],
)
def test_likely_impersonator(query: Context, candidate: Context, expected: str) -> None:
    assert likely_impersonator(query, candidate) == expected


def test_labels_follow_the_thresholds(model: ScoringModel) -> None:
    t = model.thresholds
    assert t.label(t.likely_clone) == "likely_clone"
    assert t.label(t.possible_clone) == "possible_clone"
    assert t.label(max(0.0, t.possible_clone - 0.01)) == "unlikely"


def test_reasons_say_what_differs() -> None:
    namesake = PairEvidence(
        avatar=0.25, avatar_bits=24, display_name=1.0, display_name_verbatim=True, bio=0.1
    )
    text = reasons(namesake)
    assert "avatars are different pictures: 24 of 64 bits differ" in text
    assert "bios are unrelated (cosine similarity 0.10)" in text
