"""Pair evidence: what comparison says of two profiles, field by field."""

from __future__ import annotations

import numpy as np
import pytest

from indexers import text
from indexers.avatar import VIEWS
from indexers.compare import (
    Popularity,
    ProfileSide,
    Sharers,
    avatar_singled_out,
    compare,
    identity_popularity,
)


def side(name: str, handle: str) -> ProfileSide:
    return ProfileSide(
        display_name=name,
        name_key=text.normalize_name(name),
        handle=handle,
        handle_norm=text.normalize_handle(handle),
    )


@pytest.mark.parametrize(
    ("name", "query_handle", "candidate_handle", "explained", "bare"),
    [
        ("Maria Garcia", "mariagarcia67", "mariagarcia", True, True),  # namesakes' handles
        ("Maya Okafor", "maya_okafor", "maya_okafor_art", True, False),  # a word of her own
        ("Jane Doe", "janedoe_art", "janedoe_art1", False, False),  # the same own word: copied
        ("Maria Garcia", "mg_lovesbooks", "mg_lovesbooks1", False, False),  # not from the name
    ],
)
def test_handles_that_agree_only_in_the_name_are_marked(
    name: str, query_handle: str, candidate_handle: str, explained: bool, bare: bool
) -> None:
    [evidence] = compare(side(name, query_handle), [side(name, candidate_handle)])
    assert evidence.handle_from_name is explained
    assert evidence.handles_only_name is bare
    assert evidence.handle is not None and evidence.handle > 0.6


@pytest.mark.parametrize(
    ("name", "query_handle", "candidate_handle"),
    [
        ("John Smith", "johnreads3", "johnreads"),  # the name and a word many Johns pick
        ("John Davis", "justjohndavis9", "justjohndavis"),
        ("Sara Bruno", "sarabrunoart", "sarabruno_art"),
    ],
)
def test_an_everyday_word_beside_a_common_name_is_how_namesakes_handles_agree(
    name: str, query_handle: str, candidate_handle: str
) -> None:
    """Two of the dozens who carry a name may both add "reads" or "art" to it; one whose name
    nobody else carries, copied with that word, is the same account's handle copied."""
    common = Popularity(name=20)
    [among_namesakes] = compare(
        side(name, query_handle), [side(name, candidate_handle)], popularity=common
    )
    assert among_namesakes.handle_from_name
    assert not among_namesakes.handles_only_name
    [alone] = compare(side(name, query_handle), [side(name, candidate_handle)])
    assert not alone.handle_from_name


def test_an_addition_of_ones_own_is_not_explained_by_namesakes() -> None:
    """An invented addition ("zorblat") is nobody's everyday word: the same one on two handles
    was copied, however many share the name."""
    [evidence] = compare(
        side("John Smith", "johnzorblat"),
        [side("John Smith", "john_zorblat7")],
        popularity=Popularity(name=20),
    )
    assert not evidence.handle_from_name


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        (("James Johnson", "James_johnson3"), ("James", "jamesjohnson")),
        (("David Smith", "davidsmith5"), ("David S.", "Davidsmith")),
    ],
)
def test_a_short_form_of_the_name_reads_handles_against_the_full_one(
    query: tuple[str, str], candidate: tuple[str, str]
) -> None:
    """A namesake may show only a first name, or initials: a handle that spells the full name
    is still what any namesake would pick."""
    [evidence] = compare(side(*query), [side(*candidate)])
    assert evidence.handle_from_name
    assert evidence.handles_only_name


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        (("Tina Haskett", "imtina1"), ("Tina Darst", "imtina")),  # a first name and "im"
        (("James Miller", "jmiller8"), ("Julie Miller", "jmiller83")),  # initial and surname
    ],
)
def test_different_names_that_spell_one_handle_agree_in_the_words_they_share(
    query: tuple[str, str], candidate: tuple[str, str]
) -> None:
    """Many share a first name or a surname: handles built from each one's own name agree
    only in what the names share."""
    [evidence] = compare(side(*query), [side(*candidate)])
    assert evidence.handle is not None and evidence.handle >= 0.9
    assert evidence.handle_from_name


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        (("Jane Doe", "janedoe"), ("Mary Smith", "janedoe_")),  # another's name: a thief's
        (("Jane Doe", "janedoe"), ("Jane Smith", "janedoe_")),  # spells more than "Jane"
    ],
)
def test_a_handle_that_spells_more_than_ones_own_name_is_still_evidence(
    query: tuple[str, str], candidate: tuple[str, str]
) -> None:
    [evidence] = compare(side(*query), [side(*candidate)])
    assert evidence.handle == 1.0
    assert not evidence.handle_from_name


def test_a_lookalike_swap_is_not_how_namesakes_handles_agree() -> None:
    """@danielec0tr0nei next to @danielecotronei, both "Daniele Cotronei": the handles spell
    only the name, but no namesake writes his with zeros for o's."""
    [evidence] = compare(
        side("Daniele Cotronei", "danielec0tr0nei"), [side("Daniele Cotronei", "danielecotronei")]
    )
    assert evidence.handle_lookalike
    assert not evidence.handle_from_name


def test_lookalike_handles_of_different_names_are_not_marked() -> None:
    [evidence] = compare(side("Jane Doe", "j0hn"), [side("John Smith", "john")])
    assert not evidence.handle_lookalike


@pytest.mark.parametrize(
    ("query_handle", "candidate_handle"),
    [
        ("user8472918273", "user1234567890"),  # TikTok's default handles
        ("u0000123_45", "u0000999_12"),  # a core of one letter once decorations go
        ("12345678", "12345679"),  # a bare number
        ("support", "support_"),  # a generic word
        ("mike1987", "mike2001"),  # a short core: the numbers stripped count again
    ],
)
def test_handles_that_carry_no_identity_are_no_evidence(
    query_handle: str, candidate_handle: str
) -> None:
    [evidence] = compare(
        side("Maria Garcia", query_handle), [side("Maria Garcia", candidate_handle)]
    )
    assert not evidence.handle_exact
    assert evidence.handle is None or evidence.handle < 0.8
    from models.scoring import ScoringModel, reasons

    assert "handle is the same once decorations (separators, digits, 'real') are removed" not in (
        reasons(evidence)
    )
    [verdict] = ScoringModel.load().score([evidence])
    assert verdict.label != "likely_clone"


@pytest.mark.parametrize(
    ("query_handle", "candidate_handle"),
    [("jane_doe", "jane.doe_"), ("jane_doe", "janedoe1987"), ("JaneDoe", "realjanedoe")],
)
def test_real_decoration_tricks_still_make_one_handle(
    query_handle: str, candidate_handle: str
) -> None:
    [evidence] = compare(side("Jane Doe", query_handle), [side("Jane Doe", candidate_handle)])
    assert evidence.handle_exact
    assert evidence.handle == 1.0


def test_a_disclosure_only_one_side_makes_is_noticed() -> None:
    query = side("Jane Doe", "janedoe")
    fan = side("Jane Doe Fan Page", "janedoefans")
    copied_disclosure = side("Jane Doe Fan Page", "janedoe_fp")
    [to_fan] = compare(query, [fan])
    [between_fans] = compare(fan, [copied_disclosure])
    assert to_fan.declared_unaffiliated
    assert not between_fans.declared_unaffiliated


def test_popularity_counts_strangers_not_the_family_of_copies() -> None:
    query = side("Marisol Quintero", "marisol.quintero")

    def identity(name: str, handle: str) -> tuple[str, str, str]:
        return text.normalize_name(name), text.normalize_handle(handle), handle

    identities = {
        # copies: the name, or the handle, of the query
        1: identity("Marisol Quintero ✨", "mari_daily"),
        2: identity("Lena Berg", "marisol_quintero1"),
        3: identity("Marisol Quintero", "sol_03"),
        # strangers wearing the photo
        4: identity("Omar Haddad", "omarh"),
        5: identity("Eva Novak", "user48291034"),
        # namesakes of their own
        6: identity("Marisol Quintero", "mq_paints"),
        7: identity("Marisol Quintero", "quintero_m"),
        # a copy of the handle within a keystroke, with no photo
        8: identity("Marisol Quintero", "marisol_quintero"),
    }
    sharers = Sharers(avatar=(1, 2, 3, 4, 5), avatar_near=(1, 2, 3, 4, 5))
    common = identity_popularity(query, sharers, identities)
    assert (common.avatar, common.avatar_copies) == (2, 3)
    # Namesake 3 wears the (rarely shared) photo and 8 copies the handle: copies, not namesakes.
    assert common.name == 2


def _with_avatar(base: ProfileSide, hashes: np.ndarray) -> ProfileSide:
    return ProfileSide(
        display_name=base.display_name,
        name_key=base.name_key,
        handle=base.handle,
        handle_norm=base.handle_norm,
        avatar_hashes=hashes,
    )


def _random_hashes(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(2, VIEWS, 8), dtype=np.uint8)


def test_an_avatar_met_in_one_view_is_singled_out_only_with_no_stranger_as_close() -> None:
    query = _with_avatar(side("Palmer Stephens", "palmerstephens"), _random_hashes(1))
    # Unrelated pictures whose closest views meet (one view in common, the rest apart).
    met = _random_hashes(2)
    met[0, 2] = query.avatar_hashes[0, 4]  # type: ignore[index]
    stranger = _with_avatar(side("Dana Whitfield", "dwhitfield"), met)
    # Nobody else near: the only picture this close (the search found it among the
    # strangers), so it points at this account.
    assert avatar_singled_out(query, stranger, 0, Popularity(avatar_strangers=(0, 20)))
    # Another stranger's photo as close: closeness says nothing about this account.
    assert not avatar_singled_out(query, stranger, 0, Popularity(avatar_strangers=(0, 2)))
    # A look-alike name is no stranger, so the strangers around the photo are all others.
    namesake = _with_avatar(side("Stephen Palmer", "stephen_palmer"), met)
    assert avatar_singled_out(query, namesake, 0, Popularity(avatar_strangers=(6, 20)))
    crowded = Popularity(avatar_strangers=(2, 20))
    [evidence] = compare(query, [namesake], popularity=crowded)
    assert evidence.avatar_bits == 0 and evidence.avatar_crowded


def test_a_copy_of_the_whole_picture_is_singled_out_among_strangers() -> None:
    original = _random_hashes(3)
    query = _with_avatar(side("Maya Okafor", "mayaokafor"), original)
    copy = original.copy()
    copy[:, :, 0] ^= 0b1010_0000  # every view two bits off: a re-encoded copy
    clone = _with_avatar(side("Maya 0kafor", "maya_0kafor"), copy)
    crowded = Popularity(avatar_strangers=(1, 3))
    assert avatar_singled_out(query, clone, 2, crowded)
    [evidence] = compare(query, [clone], popularity=crowded)
    assert evidence.avatar_bits == 2 and not evidence.avatar_crowded


def test_strangers_are_counted_around_the_avatar_but_not_the_family_of_copies() -> None:
    query = side("Marisol Quintero", "marisol.quintero")
    identities = {
        1: (text.normalize_name("Marisol Quintero"), text.normalize_handle("mq_x"), "mq_x"),
        2: (text.normalize_name("Omar Haddad"), text.normalize_handle("omarh"), "omarh"),
        3: (text.normalize_name("Eva Novak"), text.normalize_handle("evan"), "evan"),
        4: (text.normalize_name("Li Wei"), text.normalize_handle("liwei"), "liwei"),
    }
    sharers = Sharers(avatar_bits=((1, 0), (2, 9), (3, 6), (4, 14)))
    # The copy (1) is no stranger; the two nearest strangers are reported.
    assert identity_popularity(query, sharers, identities).avatar_strangers == (6, 9)


def test_a_handle_core_that_strangers_carry_too_is_counted_against_it() -> None:
    query = side("Tina Haskett", "imtina1")

    def identity(name: str, handle: str) -> tuple[str, str, str]:
        return text.normalize_name(name), text.normalize_handle(handle), handle

    identities = {
        1: identity("Tina Darst", "imtina"),  # strangers with the same core
        2: identity("Tina Rowe", "im_tina"),
        3: identity("Tina Oduya", "imtina_22"),
        4: identity("Tina Haskett", "tina.h"),  # the name: a copy or the person, not a stranger
        5: identity("Tina Haskett", "imtina"),
        6: identity("Marta Lind", "marta_lind"),  # another core
    }
    assert identity_popularity(query, Sharers(), identities).handle == 3
    # One that wears the query's photo is tied to it, not a stranger.
    tied = Sharers(avatar=(1,), avatar_near=(1,))
    assert identity_popularity(query, tied, identities).handle == 2
