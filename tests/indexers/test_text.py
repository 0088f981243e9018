"""Names and handles: a look-alike or decorated copy must fold to the original's key."""

from __future__ import annotations

import csv
import json
import os
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexers import text
from indexers.text import (
    candidate_keys,
    handle_similarity,
    is_verbatim,
    lookalikes,
    name_similarity,
    normalize_handle,
    normalize_name,
    skeleton,
)
from tests.requirements import SHARED_DATA_ABSENT

CYR_A = "\u0430"  # CYRILLIC SMALL LETTER A
CYR_O = "\u043e"  # CYRILLIC SMALL LETTER O
GREEK_O = "\u03bf"  # GREEK SMALL LETTER OMICRON


def _shared_data() -> Path:
    env = os.environ.get("CLONEFINDER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


# --- skeleton ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disguised", "plain"),
    [
        (f"J{CYR_A}ne D{CYR_O}e", "Jane Doe"),
        (f"J{GREEK_O}hn", "John"),
        ("ＪａｎｅＤｏｅ", "JaneDoe"),  # fullwidth, folded by NFKC
        ("𝐉𝐚𝐧𝐞", "Jane"),  # mathematical bold
        ("Ja\u200bne", "Jane"),  # zero-width space
    ],
)
def test_skeleton_folds_lookalikes_to_the_plain_text(disguised: str, plain: str) -> None:
    assert skeleton(disguised) == skeleton(plain)


def test_skeleton_maps_lookalikes_before_casefolding() -> None:
    # Casefolding first would turn "I" into "i" and lose that it poses as "l".
    assert skeleton("aIa") == skeleton("ala") == skeleton("a1a") == skeleton("a|a") == "ala"
    assert skeleton("0") == skeleton("o") == skeleton("O") == "o"
    assert skeleton("m") == skeleton("rn") == skeleton("M") == "rn"
    assert skeleton("wiIliam") == skeleton("william")
    assert skeleton("Ian") != skeleton("ian")


def test_skeleton_of_all_caps_text_reads_i_as_a_capital_i() -> None:
    assert skeleton("LIAM") == skeleton("Liam") == skeleton("liam")
    assert skeleton("JANE DOE") == skeleton("Jane Doe")


@pytest.mark.parametrize(
    "value", ["Jane Doe", f"J{CYR_A}ne", "Mary-Ann O'Neil", "Дмитрий", "محمد", "王小明", "JOSÉ"]
)
def test_skeleton_is_stable_when_applied_twice(value: str) -> None:
    once = skeleton(value)
    assert skeleton(once) == once


def test_skeleton_of_empty_text_is_empty() -> None:
    assert skeleton("") == ""


def test_shipped_table_is_uts39_and_its_prototypes_are_fixed_points() -> None:
    # The fast mapping replaces characters one by one; that is only right if no prototype
    # contains a mapped character, which UTS #39 promises and a regenerated table must keep.
    table = json.loads((Path(text.__file__).parent / "data" / "confusables.json").read_text())
    assert table["unicode_version"].split(".")[0].isdigit()
    mapping = table["map"]
    assert mapping["0049"] == "006C"  # I -> l
    assert mapping["0430"] == "0061"  # Cyrillic a -> a
    assert mapping["006D"] == "0072 006E"  # m -> rn
    targets = {cp for dst in mapping.values() for cp in dst.split()}
    assert not targets & set(mapping)


# --- normalize_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "Jane Doe",
        "jane doe",
        "JANE DOE",
        "  Jane   Doe  ",
        f"J{CYR_A}ne D{CYR_O}e",
        f"Jane D{GREEK_O}e",
        "Jane D0e",
        "Jane Doe ✔",
        "Jane Doe ✓ ☑ ✅ 🔵",
        "Jane Doe 🇺🇸",
        "Jane Doe ™",
        "Jane Doe®",
        "🔥 Jane Doe 🔥",
        "Jane Doe 👩🏽‍💻",
        "Jane Doe (official)",
        "Jane Doe [Official Account]",
        "jane doe | backup account",
        "Real Jane Doe",
        "The Real Jane Doe",
        "Jane Doe 2",
        "Jane Doe2021",
        "Jane Doe 1️⃣",
        "Jane.Doe",
        "🅹🅰🅽🅴 🅳🅾🅴",
    ],
)
def test_decorated_and_lookalike_names_normalize_to_the_original(variant: str) -> None:
    assert normalize_name(variant) == normalize_name("Jane Doe") == "jane doe"


@pytest.mark.parametrize(
    ("name", "kept"),
    [("Jane Doe Fan Page", "fan"), ("Jane Doe (parody)", "parody"), ("Not Jane Doe", "not")],
)
def test_disclosure_words_are_kept(name: str, kept: str) -> None:
    # "fan", "parody" and "not" are the account saying what it is; scoring may weigh them.
    assert kept in normalize_name(name).split()


def test_words_inside_a_name_and_brackets_with_content_are_kept() -> None:
    assert normalize_name("Jane (Janie) Doe") == "jane janie doe"
    assert normalize_name("Jane Real Doe") == "jane real doe"


def test_a_name_of_only_decoration_words_is_kept_rather_than_erased() -> None:
    assert normalize_name("Official") == "official"


def test_spaced_out_letters_are_one_word() -> None:
    assert normalize_name("♡ D e b o r a ♡") == normalize_name("Debora")


@pytest.mark.parametrize("empty", [None, "", "   ", "🔥🔥", "✔", "\u200b"])
def test_missing_or_symbol_only_names_normalize_to_empty(empty: str | None) -> None:
    assert normalize_name(empty) == ""


ARABIC_A = "محمد علي"
ARABIC_B = "أحمد حسن"
HEBREW_A = "משה כהן"
HEBREW_B = "דוד לוי"


@pytest.mark.parametrize("name", [ARABIC_A, ARABIC_B, HEBREW_A, HEBREW_B])
def test_right_to_left_names_survive(name: str) -> None:
    normalized = normalize_name(name)
    assert normalized
    assert normalized == normalize_name(name + " ✔")
    assert name_similarity(normalized, normalize_name(name)) == 1.0


def test_different_right_to_left_names_differ() -> None:
    for a, b in [(ARABIC_A, ARABIC_B), (HEBREW_A, HEBREW_B), (ARABIC_A, HEBREW_A)]:
        assert normalize_name(a) != normalize_name(b)
        assert name_similarity(normalize_name(a), normalize_name(b)) < 0.5


def test_bidi_controls_do_not_change_a_name() -> None:
    assert normalize_name("\u200f" + HEBREW_A + "\u200e") == normalize_name(HEBREW_A)


def test_cjk_and_cyrillic_names_survive() -> None:
    assert normalize_name("王小明")
    assert normalize_name("王小明") != normalize_name("李大伟")
    assert normalize_name("王 小 明") == normalize_name("王小明")
    assert normalize_name("김민수")
    assert normalize_name("Дмитрий Иванов")
    assert normalize_name("Дмитрий Иванов") != normalize_name("Сергей Петров")


def test_accented_names_keep_their_letters() -> None:
    assert normalize_name("José Núñez") != normalize_name("Jose Nunez")
    assert name_similarity(normalize_name("José Núñez"), normalize_name("Jose Nunez")) > 0.75


# --- normalize_handle -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "janedoe",
        "@janedoe",
        "JaneDoe",
        "JANEDOE",
        "jane_doe",
        "jane.doe",
        "jane-doe",
        "jane_d0e",
        f"j{CYR_A}nedoe",
        "ｊａｎｅｄｏｅ",
        "janedoe_official",
        "officialjanedoe",
        "realjanedoe",
        "real_jane_doe",
        "therealjanedoe",
        "the_real_jane_doe",
        "iamjanedoe",
        "itsjanedoe",
        "notjanedoe",
        "jane.doe.backup",
        "janedoebackup",
        "jane.doe99",
        "janedoe_",
        "_janedoe_",
        "janedoe1",
        "janedoe99official",
        "jane_doe_99_official",
    ],
)
def test_decorated_and_lookalike_handles_normalize_to_the_original(variant: str) -> None:
    assert normalize_handle(variant) == normalize_handle("janedoe") == "janedoe"


def test_rn_poses_as_m_and_capital_i_as_l() -> None:
    assert normalize_handle("rnary") == normalize_handle("mary")
    assert normalize_handle("emiIy") == normalize_handle("emily")
    assert normalize_handle("bi11y") == normalize_handle("billy")


def test_glued_words_are_cut_only_where_clones_glue_them() -> None:
    # "iam" is a clone's prefix, not a suffix; "william" keeps its ending.
    assert normalize_handle("william") != normalize_handle("will")
    # A handle that is nothing but a decoration word stays itself.
    assert normalize_handle("official") == "official"
    assert normalize_handle("its") == "its"


def test_digit_only_handles_are_kept() -> None:
    assert normalize_handle("12345")
    assert normalize_handle("12345") != normalize_handle("67890")


@pytest.mark.parametrize("empty", [None, "", "@", "  ", "___"])
def test_missing_handles_normalize_to_empty(empty: str | None) -> None:
    assert normalize_handle(empty) == ""


def test_distinct_handles_stay_distinct() -> None:
    handles = ["janedoe", "johndoe", "janedough", "marksmith", "jane", "doe", "jdoe"]
    assert len({normalize_handle(h) for h in handles}) == len(handles)


# --- similarity -------------------------------------------------------------------------------


def test_name_similarity_is_one_for_identical_and_zero_for_empty() -> None:
    assert name_similarity("jane doe", "jane doe") == 1.0
    assert name_similarity("", "jane doe") == 0.0
    assert name_similarity("jane doe", "") == 0.0
    assert name_similarity("", "") == 0.0


def test_name_similarity_is_low_for_distinct_names() -> None:
    assert name_similarity(normalize_name("Jane Doe"), normalize_name("Mark Smith")) < 0.5
    assert name_similarity(normalize_name("Alice Walker"), normalize_name("Bob Stone")) < 0.5


def test_name_similarity_ignores_token_order_and_survives_a_dropped_middle_name() -> None:
    assert name_similarity("doe jane", "jane doe") == 1.0
    dropped = name_similarity("jane marie doe", "jane doe")
    assert 0.85 <= dropped < 1.0
    # A shared first name alone is weaker evidence than a dropped middle name.
    assert name_similarity("jane", "jane doe") < dropped
    assert name_similarity("jane doe", "jane smith") < dropped


def test_name_similarity_is_symmetric_and_bounded() -> None:
    pairs = [("jane doe", "jane marie doe"), ("jane", "jane doe"), ("ab", "abc def ghi")]
    for a, b in pairs:
        assert name_similarity(a, b) == name_similarity(b, a)
        assert 0.0 <= name_similarity(a, b) <= 1.0


def test_handle_similarity() -> None:
    assert handle_similarity("janedoe", "janedoe") == 1.0
    assert handle_similarity("", "janedoe") == 0.0
    assert handle_similarity("janedoe", "") == 0.0
    assert handle_similarity("janedoe", "janedo") > 0.9
    assert handle_similarity("janedoe", "rnarksrnith") < 0.3


# --- candidate keys ---------------------------------------------------------------------------


def _keys(name: str, handle: str) -> set[int]:
    return set(candidate_keys(normalize_name(name), normalize_handle(handle)).tolist())


def test_candidate_keys_are_sorted_unique_int64() -> None:
    keys = candidate_keys("jane doe", "janedoe")
    assert keys.dtype == np.int64
    assert keys.ndim == 1
    assert np.all(np.diff(keys) > 0)


def test_candidate_keys_are_pinned_across_processes_and_releases() -> None:
    # Stored index keys must stay valid: the hash may never depend on PYTHONHASHSEED or change.
    assert candidate_keys("ab", "").tolist() == [
        -6946468683798098368,
        -5588541039982175494,
        -1959670067385772464,
    ]


def test_candidate_keys_of_nothing_are_empty() -> None:
    assert candidate_keys("", "").size == 0
    assert candidate_keys("", "janedoe").size > 0
    assert candidate_keys("jane doe", "").size > 0


def test_a_lookalike_copy_shares_most_keys_and_a_stranger_almost_none() -> None:
    original = _keys("Jane Doe", "janedoe")
    clone = _keys(f"J{CYR_A}ne D{CYR_O}e ✔", "jane_d0e")
    near = _keys("Jane Doee", "jane_doee")
    stranger = _keys("Mark Smith", "marksmith")
    assert clone == original
    assert len(near & original) >= 0.7 * len(original)
    assert len(stranger & original) <= 1


def test_name_and_handle_share_one_key_space() -> None:
    # A clone that took the original's name as its handle is still a candidate.
    assert _keys("Jane Doe", "") & _keys("", "jane_doe")


# --- lookalikes and is_verbatim ---------------------------------------------------------------


def test_lookalikes_names_the_disguised_characters() -> None:
    notes = lookalikes(f"J{CYR_A}ne D{CYR_O}e J{CYR_A}ne")
    assert notes == [
        f"'{CYR_A}' (U+0430 CYRILLIC SMALL LETTER A) looks like 'a'",
        f"'{CYR_O}' (U+043E CYRILLIC SMALL LETTER O) looks like 'o'",
    ]


def test_lookalikes_reports_invisible_characters_and_nothing_for_plain_text() -> None:
    assert lookalikes("Ja\u200bne") == ["U+200B ZERO WIDTH SPACE is invisible"]
    assert lookalikes("Jane Doe") == []
    assert lookalikes("I0l1") == []  # ASCII look-alikes are left to the similarity
    assert lookalikes("") == []
    assert lookalikes("José") == []  # an accent is a different letter, not a disguise


def test_is_verbatim_tells_identical_from_folded() -> None:
    assert is_verbatim("Jane Doe", " Jane Doe\n")
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    assert is_verbatim(composed, decomposed)
    assert not is_verbatim("Jane Doe", f"J{CYR_A}ne Doe")
    assert not is_verbatim("Jane Doe", "jane doe")
    assert not is_verbatim(None, "Jane Doe")
    assert not is_verbatim(None, None)
    assert not is_verbatim("", "")


# --- real data --------------------------------------------------------------------------------


def test_real_twitter_names_and_handles_normalize_sensibly() -> None:
    path = _shared_data() / "profiles" / "cresci2015-users.csv"
    if not path.is_file():
        pytest.skip(f"{SHARED_DATA_ABSENT}: no {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    handles = [normalize_handle(r["screen_name"]) for r in rows]
    assert all(handles)
    # Distinct accounts rarely fold together: normalization must not be a blunt instrument.
    collisions = sum(n - 1 for n in Counter(handles).values() if n > 1)
    assert collisions / len(rows) < 0.01
    for row in rows:
        name = row["name"]
        normalized = normalize_name(name)
        if any(unicodedata.category(ch)[0] in "LN" for ch in name):
            assert normalized, name
            assert name_similarity(normalized, normalize_name(name)) == 1.0
        assert normalized == " ".join(normalized.split())


@pytest.mark.parametrize(
    ("handle", "name", "rest"),
    [
        ("mariagarcia67", "Maria Garcia", ""),
        ("maria_garcia", "María García", ""),
        ("jkhan609", "J Khan", ""),
        ("oivanova314", "Olga Ivanova", ""),
        ("garciam", "Maria Garcia", ""),
        ("mariagar", "Maria Garcia", ""),
        ("marigar", "Maria Garcia", ""),  # cut short, as namesakes and platforms cut names
        ("Micha6957804391", "Michael Johnson", ""),  # a platform's default: name cut, digits
        ("jane_d0e", "Jane Doe", ""),
        ("BarackObama", "Barack Obama", ""),
        ("maya_okafor_art", "Maya Okafor", "art"),
        ("art_by_mayaokafor", "Maya Okafor", "artby"),
        ("janedoejanedoe", "Jane Doe", "janedoe"),  # each name word spells once
    ],
)
def test_a_handle_made_of_the_name_leaves_only_its_own_part(
    handle: str, name: str, rest: str
) -> None:
    assert text.handle_beyond_name(text.normalize_handle(handle), text.normalize_name(name)) == rest


@pytest.mark.parametrize(
    ("handle", "name"),
    [
        ("mg_lovesbooks", "Maria Garcia"),  # words of its own
        ("potus", "Barack Obama"),
        ("m", "Maria Garcia"),  # an initial is not a spelling
        ("mgrc", "Maria Garcia"),  # no three letters of a name word: a nickname of its own
        ("", "Jane Doe"),
        ("janedoe", ""),
    ],
)
def test_a_handle_of_its_own_does_not_spell_the_name(handle: str, name: str) -> None:
    assert text.handle_beyond_name(text.normalize_handle(handle), text.normalize_name(name)) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("danielec0tr0nei", "danielecotronei"),  # zeros for o's
        ("DevonHoIcomb1", "DevonHolcomb1"),  # a capital I for an l
        ("maurober1anda", "mauroberlanda"),  # a one for an l
        ("rnaria", "maria"),  # "rn" for "m"
        ("@j0hn", "john"),
    ],
)
def test_a_handle_with_lookalikes_swapped_in_is_marked(a: str, b: str) -> None:
    assert text.is_lookalike_handle(a, b)
    assert text.is_lookalike_handle(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SamFoler", "samfoler"),  # case alone: handles are case-insensitive
        ("_samfoler", "samfoler"),  # a separator: what a namesake adds too
        ("janedoe1", "janedoe"),  # a digit added
        ("TraceyG16685944", "TraceyG16685934"),  # a digit changed, not a look-alike
        ("maria", "maria"),
        ("maria", None),
        ("", "maria"),
    ],
)
def test_other_handle_differences_are_not_lookalikes(a: str, b: str | None) -> None:
    assert not text.is_lookalike_handle(a, b)


NAMES_FOR_BATCHES = [
    "jane doe", "jane marie doe", "doe jane", "jane", "janet doe", "j doe", "", "maria garcia",
    "maría garcía", "mariagarcia", "john smith", "smith", "jo", "jane doe jane",
]  # fmt: skip


def test_batched_name_and_handle_similarities_equal_the_pairwise_measures() -> None:
    """The screens' batched measures (all pairs of a batch, or chosen pairs) are the measures
    a single comparison uses: a screen never bounds a pair on another number."""
    names = [text.normalize_name(n) for n in NAMES_FOR_BATCHES]
    handles = [text.normalize_handle(n.replace(" ", "_")) for n in NAMES_FOR_BATCHES]
    rng = np.random.default_rng(1)
    left_of = rng.integers(0, len(names), 200)
    right_of = rng.integers(0, len(names), 200)
    paired = text.paired_name_similarities(names, names, left_of, right_of)
    paired_handles = text.paired_handle_similarities(handles, handles, left_of, right_of)
    grid = text.name_similarities(names, names)
    for k, (i, j) in enumerate(zip(left_of.tolist(), right_of.tolist(), strict=True)):
        assert paired[k] == pytest.approx(text.name_similarity(names[i], names[j]), abs=1e-6)
        assert grid[i, j] == pytest.approx(text.name_similarity(names[i], names[j]), abs=1e-6)
        assert paired_handles[k] == pytest.approx(
            text.handle_similarity(handles[i], handles[j]), abs=1e-6
        )


def test_candidate_keys_hold_each_word_so_word_order_does_not_hide_a_name() -> None:
    # "Eral Tocoen" is 0.9 alike "Tocoen Eral" (token-sorted ratio): each word's padded grams
    # are shared whatever the order, where the joined name's grams across the gap are not.
    forward, swapped = _keys("Tocoen Eral", ""), _keys("Eral Tocoen", "")
    words = {text._key(gram) for word in ("tocoen", "eral") for gram in text._grams(word)}
    assert words <= forward and words <= swapped
    assert len(forward & swapped) >= len(words)
    # A one-word name adds nothing beyond its joined grams (so its keys are unchanged).
    assert _keys("Tocoen", "") == set(candidate_keys("tocoen", "").tolist())


def test_a_checks_name_and_handle_scores_are_the_pairwise_similarities() -> None:
    choices = [
        "jane doe",
        "doe jane",  # words swapped
        "jane marie doe",  # shares words: the damped token-set ratio wins
        "jane",  # one shared word, one word alone
        "luha luha",  # no shared word but a repeated one: token-set differs from token-sort
        "jnae deo",
        "",
        "zzz",
    ]
    for query in ("jane doe", "luha nyer", "doe doe", "jane", ""):
        expected = [text.name_similarity(query, c) for c in choices]
        assert np.allclose(text.name_scores(query, choices), expected, atol=1e-6), query
    handles = ["janedoe", "jane_doe", "", "j4nedoe"]
    assert np.allclose(
        text.handle_scores("janedoe", handles),
        [text.handle_similarity("janedoe", h) for h in handles],
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("name", "bio", "declared"),
    [
        ("Jane Doe Fan Page", None, True),
        ("Jane Doe Fans", None, True),
        ("Jane Doe", "Parody account, not affiliated with Jane Doe", True),
        ("Jane Doe", "Unofficial updates", True),
        ("Ｊａｎｅ Ｄｏｅ ＦＡＮ", None, True),  # full-width letters
        ("Jane Doe", "Football fan, runner", False),  # a hobby, not a disclosure
        ("Jane Doe", "Thank you to all my fans", False),
        ("Fanny Fantini", None, False),
    ],
)
def test_declared_fan_and_parody_accounts_are_recognised(
    name: str, bio: str | None, declared: bool
) -> None:
    assert text.declares_unaffiliated(name, bio) is declared


@pytest.mark.parametrize(
    ("handle", "carries"),
    [
        ("user8472918273", False),
        ("u0000123_45", False),
        ("1234567", False),
        ("admin", False),
        ("bob", False),
        ("janedoe", True),
        ("jane_doe_1987", True),
        ("danielec0tr0nei", True),
    ],
)
def test_a_handle_carries_identity_only_when_it_can_tell_people_apart(
    handle: str, carries: bool
) -> None:
    assert text.handle_carries_identity(handle, text.normalize_handle(handle)) is carries
