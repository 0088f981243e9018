"""The scoring model's promises: calibrated probabilities, honest labels, quotable reasons."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from models import reasons as reason_forms
from models.result import Context, Match, PairEvidence
from models.scoring import (
    FEATURE_NAMES,
    ScoringModel,
    explain,
    likely_impersonator,
    reasons,
)

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
    """@mariagarcia67 and @mariagarcia, both "Maria Garcia" (a name other indexed people
    carry), nothing else in common: what two namesakes look like. The same pair with a handle
    of its own (@mg_reads) is a copy, and so is the same spelling of a name nobody else in the
    index carries."""
    spelled = PairEvidence(
        display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True,
        handle_from_name=True, handles_only_name=True, name_popularity=6,
    )  # fmt: skip
    rare = PairEvidence(
        display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True,
        handle_from_name=True, handles_only_name=True, name_popularity=0, handle_edits=1,
    )  # fmt: skip
    own = PairEvidence(display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True)
    disguised = PairEvidence(
        display_name=1.0, display_name_exact=True, handle=1.0, handle_exact=True,
        handle_lookalike=True, handles_only_name=True,
    )  # fmt: skip
    spelled_verdict, own_verdict, disguised_verdict, rare_verdict = model.score(
        [spelled, own, disguised, rare]
    )
    assert spelled_verdict.label != "likely_clone"
    assert rare_verdict.label == "likely_clone"
    assert "no other indexed account carries that name" in " ".join(rare_verdict.reasons)
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


def photo_theft(**overrides: object) -> PairEvidence:
    """The victim's own photo (rarely shared) and a look-alike of their handle, under another
    name and bio: what catfish accounts do."""
    fields: dict[str, object] = {
        "avatar": 1.0,
        "avatar_bits": 0,
        "avatar_popularity": 0,
        "display_name": 0.3,
        "handle": 0.97,
        "bio": 0.2,
    }
    return PairEvidence(**{**fields, **overrides})  # type: ignore[arg-type]


def test_a_stolen_photo_with_a_lookalike_handle_is_a_likely_clone(model: ScoringModel) -> None:
    [verdict] = model.score([photo_theft()])
    assert verdict.label == "likely_clone"
    assert "avatar is the same image: all 64 hash bits agree" in verdict.reasons


def test_a_stolen_photo_alone_is_a_lead_unless_strangers_wear_it(model: ScoringModel) -> None:
    alone = photo_theft(handle=0.2)
    stock = photo_theft(handle=0.2, avatar_popularity=40)
    [lead, worn] = model.score([alone, stock])
    assert lead.label == "possible_clone"
    assert worn.label == "unlikely"
    assert any("unrelated accounts" in r for r in worn.reasons)


def test_a_photo_copied_by_a_family_of_clones_is_said_to_be_theirs() -> None:
    said = reasons(photo_theft(avatar_copies=12))
    assert any("copy this identity" in r for r in said)
    assert not any("counts for little" in r for r in said)


def test_a_declared_fan_or_parody_account_is_for_a_person_to_review(model: ScoringModel) -> None:
    copied = full_copy()
    declared = full_copy()
    declared.declared_unaffiliated = True
    [plain, fan] = model.score([copied, declared])
    assert plain.label == "likely_clone"
    assert fan.label == "possible_clone"
    assert any("fan, parody" in r for r in fan.reasons)


@pytest.mark.parametrize(
    "second_tie",
    [{"bio": 0.97}, {"handle": 0.95}, {"display_name": 0.95}],
    ids=["bio", "handle", "name"],
)
def test_a_copied_photo_and_any_second_tie_is_a_likely_clone(
    model: ScoringModel, second_tie: dict[str, float]
) -> None:
    """Whichever field is the second tie: the model reads the strongest ties, not recipes."""
    pair = photo_theft(avatar=0.9, avatar_bits=3, display_name=0.2, handle=0.3, bio=0.3)
    for name, value in second_tie.items():
        setattr(pair, name, value)
    [verdict] = model.score([pair])
    assert verdict.label == "likely_clone"


def test_a_photo_that_strangers_come_as_close_to_is_no_lead(model: ScoringModel) -> None:
    """The same picture at its closest views, but strangers' photos as close and the rest of
    the pictures apart: chance, not a stolen photo."""
    alone = photo_theft(handle=0.2, avatar=0.875, avatar_bits=4)
    crowded = dataclasses.replace(alone, avatar_crowded=True)
    [lead, by_chance] = model.score([alone, crowded])
    assert lead.label == "possible_clone"
    assert by_chance.label == "unlikely"
    assert any("other people's photos come as close" in r for r in by_chance.reasons)
    assert not any("same image" in r or "near-copy" in r for r in by_chance.reasons)


def test_a_handle_that_many_strangers_carry_is_no_finding(model: ScoringModel) -> None:
    """ "imtina" and "imtina1" are one spelling, but strangers pick it too: with a first name
    in common, that is two Tinas, not a copy."""
    pair = PairEvidence(
        display_name=0.75,
        handle=1.0,
        handle_exact=True,
        handle_edits=1,
        bio=0.2,
    )
    shared = dataclasses.replace(pair, handle_popularity=12)
    [rare, common] = model.score([pair, shared])
    assert common.label == "unlikely" and common.score < rare.score
    assert any("unrelated accounts have that handle too" in r for r in common.reasons)


@pytest.mark.parametrize(
    "only",
    [
        {"handle": 1.0, "handle_exact": True},
        {"bio": 0.99, "bio_exact": True},
        {"display_name": 1.0, "display_name_exact": True},
    ],
    ids=["handle", "bio", "name"],
)
def test_one_field_alike_is_never_a_likely_clone(
    model: ScoringModel, only: dict[str, object]
) -> None:
    """Strangers share a handle spelling, a bio or a name by chance at a million profiles; a
    finding takes a second tie."""
    unrelated: dict[str, object] = {
        "avatar": 0.2, "avatar_bits": 26, "display_name": 0.3, "handle": 0.3, "bio": 0.2,
    }  # fmt: skip
    [verdict] = model.score([PairEvidence(**{**unrelated, **only})])  # type: ignore[arg-type]
    assert verdict.label != "likely_clone"


def test_like_names_with_handles_that_spell_them_are_two_names(model: ScoringModel) -> None:
    """ "Kristin Miller" @kristinmiller and "Kristen Miller" @kristenmiller: each handle spells
    its own name; no name is copied, so the handles tie nothing."""
    pair = PairEvidence(
        display_name=0.93, handle=0.92, handle_from_name=True, handles_only_name=True,
        handle_edits=1, name_popularity=0,
    )  # fmt: skip
    [verdict] = model.score([pair])
    assert verdict.label != "likely_clone"


# -- reasons in plain words ---------------------------------------------------------------------

# Words a person checking their own identity does not know, or reads as an accusation or as
# our internal vocabulary.
JARGON = re.compile(
    r"\bbits?\b|\bhash|cosine|similarity|look-alike folding|candidate|query|decoration|victim"
    r"|\d+%|\b0\.\d+\b"
)


def every_kind_of_reason() -> list[PairEvidence]:
    """Pairs that, together, give every reason the scorer can give."""
    greek = "'Ο' (U+039F GREEK CAPITAL LETTER OMICRON) looks like 'O'"
    return [
        full_copy(),
        photo_theft(lookalikes=[greek, "U+200B ZERO WIDTH SPACE is invisible"]),
        photo_theft(avatar=0.875, avatar_bits=4, avatar_crowded=True),
        photo_theft(avatar=0.9, avatar_bits=3, avatar_popularity=40, handle_typo=True),
        photo_theft(avatar_copies=12, handle_lookalike=True),
        PairEvidence(avatar=0.25, avatar_bits=24, bio=0.1, handle=0.85),
        PairEvidence(handle=1.0, handle_exact=True),
        PairEvidence(display_name=1.0, display_name_verbatim=True, bio=0.95, bio_popularity=20),
        PairEvidence(display_name=0.9, bio=0.8, declared_unaffiliated=True),
        PairEvidence(
            display_name=0.93,
            handle=0.92,
            handle_from_name=True,
            handles_only_name=True,
            handle_edits=1,
            name_popularity=0,
        ),  # fmt: skip
        PairEvidence(display_name=0.93, handle=0.92, handle_from_name=True, handle_edits=3),
        PairEvidence(
            display_name=1.0,
            display_name_exact=True,
            handle=0.95,
            handle_from_name=True,
            handle_edits=1,
            handle_popularity=12,
        ),  # fmt: skip
        PairEvidence(query_context=Context(OLD, verified=True), candidate_context=Context(NEW)),
        PairEvidence(query_context=Context(NEW), candidate_context=Context(OLD, verified=True)),
        PairEvidence(),
    ]


def test_every_reason_has_a_plain_sentence_beside_its_technical_form() -> None:
    said = [reason for e in every_kind_of_reason() for reason in explain(e)]
    assert {reason_forms.explanation_of(r.detail) for r in said} == set(said)
    # Every kind of reason is among them, so each plain sentence below is checked.
    unsaid = [f.detail for f in reason_forms.FORMS if not any(f.read(r.detail) for r in said)]
    assert unsaid == []
    for reason in said:
        assert reason.text != reason.detail
        assert not JARGON.search(reason.text), reason.text
        assert not reason.text.startswith("but"), reason.text


def test_the_technical_reasons_are_the_details_of_the_plain_ones() -> None:
    for evidence in every_kind_of_reason():
        assert reasons(evidence) == [r.detail for r in explain(evidence)]


def test_a_reason_that_weakens_another_says_what_it_weakens() -> None:
    spelled = PairEvidence(
        display_name=0.93, handle=0.92, handle_from_name=True, handles_only_name=True,
        handle_edits=1, name_popularity=0,
    )  # fmt: skip
    but = [r for r in explain(spelled) if r.detail.startswith("but")]
    assert [r.text for r in but] == [
        "the handle is built from the same name — but many people with this name pick handles "
        "like that, so it proves little"
    ]


def test_a_lookalike_letter_is_named_by_its_alphabet() -> None:
    note = "'Ο' (U+039F GREEK CAPITAL LETTER OMICRON) looks like 'O'"
    texts = [r.text for r in explain(photo_theft(lookalikes=[note]))]
    assert (
        "the name is spelled with a Greek 'Ο' in place of 'O', so it looks identical to yours"
        in texts
    )


def test_a_reason_from_another_scorer_version_is_shown_as_it_is() -> None:
    kept = reason_forms.explanation_of("avatar hashes agree in 63 of 64 bits")
    assert kept.text == kept.detail == "avatar hashes agree in 63 of 64 bits"


def test_a_match_carries_its_reasons_in_plain_words_in_the_same_order(
    model: ScoringModel,
) -> None:
    [verdict] = model.score([photo_theft(handle_lookalike=True)])
    match = Match(
        profile={"platform": "twitter", "handle": "jane"},
        score=verdict.score,
        label=verdict.label,
        signals={},
        reasons=verdict.reasons,
        likely_impersonator=verdict.likely_impersonator,
    )
    for dumped in (verdict.model_dump(), match.model_dump(mode="json")):
        assert [e["detail"] for e in dumped["explanations"]] == dumped["reasons"]
        texts = [e["text"] for e in dumped["explanations"]]
        assert texts[:2] == ["uses the same photo as you", "the handle is very close to yours"]
        assert texts[2].startswith("the handle is yours with look-alike characters swapped in")
