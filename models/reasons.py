"""Each reason in its two forms: the technical `detail` a lawyer quotes (the contract's
`reasons`) and a plain `text` for the person whose identity was checked.

Both forms of a reason come from one `ReasonForm`, so they cannot drift apart: the scorer
says a reason through its form (`ReasonForm.say`), and a detail kept elsewhere (a match's
`reasons`, a capture stored before plain sentences existed) is read back through the same
forms (`explanation_of`). In the plain texts "you" is the checked identity and "this account"
the one compared with it; they name no bits, hashes, cosines or similarity numbers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason: a plain sentence for people, and its precise technical form."""

    text: str
    detail: str


# A plain text is a format string of the detail's fields, or a function of them (where the
# plain words depend on what a field holds).
PlainText = str | Callable[[dict[str, str]], str]


@dataclass(frozen=True)
class ReasonForm:
    """How one kind of reason is said: `detail` is a format string whose fields are filled
    with text (numbers already formatted), `text` says the same to a person."""

    detail: str
    text: PlainText
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.detail):
            parts.append(re.escape(literal))
            if name is not None:
                parts.append(f"(?P<{name}>.+?)")
        object.__setattr__(self, "_pattern", re.compile("".join(parts), flags=re.S))

    def say(self, **fields: object) -> Reason:
        values = {name: str(value) for name, value in fields.items()}
        return Reason(text=self._plain(values), detail=self.detail.format(**values))

    def read(self, detail: str) -> Reason | None:
        """The reason whose detail is `detail`, if this form says it."""
        found = self._pattern.fullmatch(detail)
        if found is None:
            return None
        return Reason(text=self._plain(found.groupdict()), detail=detail)

    def _plain(self, values: dict[str, str]) -> str:
        return self.text.format(**values) if isinstance(self.text, str) else self.text(values)


# -- what a look-alike letter is ------------------------------------------------------------

# Scripts whose letters stand in for Latin ones, as a person would name them.
_SCRIPTS = frozenset(
    {"GREEK", "CYRILLIC", "ARMENIAN", "CHEROKEE", "COPTIC", "GEORGIAN", "HEBREW", "ARABIC"}
)
# The notes of `indexers.text.lookalikes`.
_SWAPPED = re.compile(
    r"'(?P<char>.+)' \(U\+[0-9A-F]{4,6}(?: (?P<name>[^)]*))?\) looks like '(?P<like>.+)'"
)
_INVISIBLE = re.compile(r"U\+[0-9A-F]{4,6}(?: (?P<name>.*))? is invisible")


def _lookalike_letter(fields: dict[str, str]) -> str:
    note = fields["note"]
    swapped = _SWAPPED.fullmatch(note)
    if swapped is not None:
        first_word = (swapped["name"] or "").split(" ")[0]
        script = first_word.capitalize() if first_word in _SCRIPTS else "look-alike"
        article = "an" if script[0] in "AEIOU" else "a"
        return (
            f"the name is spelled with {article} {script} '{swapped['char']}' in place of "
            f"'{swapped['like']}', so it looks identical to yours"
        )
    invisible = _INVISIBLE.fullmatch(note)
    if invisible is not None:
        what = (invisible["name"] or "").lower()
        shown = f" ({what})" if what else ""
        return f"the name hides an invisible character{shown}, so it looks identical to yours"
    return "the name uses a letter from another alphabet that looks like an ordinary one"


# -- the forms ------------------------------------------------------------------------------

AVATAR_CROWDED = ReasonForm(
    "avatars look alike in one part ({bits} of {total} bits differ where they agree most), "
    "but other people's photos come as close, so it is not taken for a copy",
    "part of the photo looks like yours — but photos of other people come just as close, "
    "so this does not show your photo was copied",
)
AVATAR_SAME = ReasonForm(
    "avatar is the same image: all {total} hash bits agree", "uses the same photo as you"
)
AVATAR_NEAR_COPY = ReasonForm(
    "avatar is a near-copy: {bits} of {total} bits differ",
    "uses your photo, slightly changed (cropped, resized or recoloured)",
)
AVATARS_DIFFER = ReasonForm(
    "avatars are different pictures: {bits} of {total} bits differ",
    "uses a different photo from yours",
)
AVATAR_STOCK = ReasonForm(
    "but that avatar is shared by {count} unrelated accounts (a default or stock image), "
    "so it counts for little",
    "the photo matches yours — but {count} unrelated accounts use that picture too (a "
    "default or stock image), so it proves little",
)
AVATAR_OF_CLONES = ReasonForm(
    "the same photo is worn by {count} other accounts, all of which copy this identity "
    "(not a stock image)",
    "{count} other accounts use this same photo, and all of them copy you too (it is not a "
    "stock picture)",
)
NAME_VERBATIM = ReasonForm("display name identical", "uses exactly your name")
NAME_FOLDED = ReasonForm(
    "display name identical after look-alike folding",
    "shows your name, with letters swapped for ones from another alphabet that look the same",
)
NAME_NEAR = ReasonForm(
    "display name nearly identical ({alike} alike)", "uses a name almost identical to yours"
)
NAME_LOOKALIKE_LETTER = ReasonForm(
    "display name uses a look-alike letter: {note}", _lookalike_letter
)
HANDLE_DECORATED = ReasonForm(
    "handle is the same once decorations (separators, digits, 'real') are removed",
    "the handle is yours, or yours with a separator, a number or a word such as 'real' or "
    "'official' added",
)
HANDLE_SIMILAR = ReasonForm(
    "handle is similar ({alike} alike)", "the handle is very close to yours"
)
HANDLE_TYPO = ReasonForm(
    "handle is the other's with one letter doubled, dropped or changed",
    "the handle is yours with one letter doubled, dropped or changed, a slip that is easy to miss",
)
HANDLE_LOOKALIKE = ReasonForm(
    "handle is the other's with look-alike characters swapped in",
    "the handle is yours with look-alike characters swapped in (such as 0 for o, or I for "
    "l), so it looks the same at a glance",
)
HANDLE_SPELLS_NAME = ReasonForm(
    "but both handles just spell the display name, as a namesake's would",
    "the handle is built from the same name — but many people with this name pick handles "
    "like that, so it proves little",
)
HANDLE_NAME_AND_WORDS = ReasonForm(
    "but the handles agree only in the name and everyday words, as namesakes' handles often do",
    "the handle shares only the name and everyday words with yours — but people with the "
    "same name often pick handles like that, so it proves little",
)
HANDLE_COPIED_SPELLING = ReasonForm(
    "both handles spell the display name, one the other's within a keystroke or two, and "
    "no other indexed account carries that name",
    "the handle is yours within a keystroke or two, and nobody else known to clonefinder "
    "has this name, so it points at you",
)
HANDLE_COMMON = ReasonForm(
    "but {count} unrelated accounts have that handle too, so it counts for little",
    "the handle is close to yours — but {count} unrelated accounts have a handle like it "
    "too, so it proves little",
)
DECLARED_UNAFFILIATED = ReasonForm(
    "one account says it is a fan, parody or unofficial account: for a person to judge",
    "one of the two accounts says it is a fan, parody or unofficial account; whether it "
    "goes too far is for a person to judge",
)
BIO_VERBATIM = ReasonForm("bio copied verbatim", "the bio is copied from yours word for word")
BIO_NEAR = ReasonForm(
    "bio nearly identical (cosine similarity {cosine})",
    "the bio is yours, almost word for word",
)
BIO_SAME_MEANING = ReasonForm(
    "bio similar in meaning (cosine similarity {cosine})",
    "the bio says the same thing as yours in other words",
)
BIOS_UNRELATED = ReasonForm(
    "bios are unrelated (cosine similarity {cosine})",
    "the bio is about something else than yours",
)
BIO_TEMPLATE = ReasonForm(
    "but that bio is shared by {count} unrelated accounts (a template), so it counts for little",
    "the bio matches yours — but {count} unrelated accounts use the same text (a "
    "template), so it proves little",
)
NEWER_ACCOUNT = ReasonForm(
    "the candidate account is newer (created {created} vs {yours})",
    "this account was made after yours (on {created}; yours on {yours})",
)
OLDER_ACCOUNT = ReasonForm(
    "the query account is newer (created {created} vs {yours})",
    "your account was made after this one (yours on {yours}; this one on {created})",
)
ONLY_YOURS_VERIFIED = ReasonForm(
    "only the query account is verified", "your account is verified and this one is not"
)
ONLY_THEIRS_VERIFIED = ReasonForm(
    "only the candidate account is verified", "this account is verified and yours is not"
)
NOTHING_ALIKE = ReasonForm(
    "no field is strongly alike", "nothing about this account is strongly like yours"
)

FORMS: tuple[ReasonForm, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, ReasonForm)
)


@lru_cache(maxsize=4096)
def explanation_of(detail: str) -> Reason:
    """Both forms of a reason known by its detail. A detail no form says (from another
    version of the scorer) is its own plain text: shown as it is, never dropped."""
    for form in FORMS:
        reason = form.read(detail)
        if reason is not None:
            return reason
    return Reason(text=detail, detail=detail)


def explanations_of(details: Iterable[str]) -> list[Reason]:
    """`explanation_of` each detail, in order."""
    return [explanation_of(detail) for detail in details]
