"""Field-by-field comparison of a victim's and a clone's records, for a person to read.

Look-alike characters are named with their code points, so that a Cyrillic `а` (U+0430) is
visibly not a Latin `a` on paper, where the two print the same.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from indexers.text import skeleton

Mark = Literal["same", "look-alike", "differs", "only victim", "only clone"]

# The record's fields in the order a comparison shows them, with their labels.
COMPARED_FIELDS: tuple[tuple[str, str], ...] = (
    ("platform", "platform"),
    ("handle", "handle"),
    ("display_name", "display name"),
    ("bio", "bio"),
    ("location", "location"),
    ("url", "url"),
    ("profile_url", "profile address"),
    ("id", "account id"),
    ("created_at", "created"),
    ("followers_count", "followers"),
    ("following_count", "following"),
    ("posts_count", "posts"),
    ("verified", "verified"),
    ("avatar_sha256", "avatar SHA-256"),
)
# Fields whose characters a person reads (and an impersonator disguises): their differences
# are spelled out character by character. Digests, dates and counts are only marked.
SPELLED_FIELDS = frozenset(
    {"platform", "handle", "display_name", "bio", "location", "url", "profile_url"}
)
MAX_NOTES = 8
# Longer added or removed runs are counted rather than spelled out.
MAX_SPELLED = 12
MAX_QUOTED = 40


@dataclass(frozen=True)
class FieldComparison:
    label: str
    victim: str
    clone: str
    mark: Mark
    notes: list[str]  # character-level differences, with code points


def code_point(ch: str) -> str:
    """`'а' (U+0430 CYRILLIC SMALL LETTER A)`: a character as a person can tell it apart."""
    name = unicodedata.name(ch, "")
    shown = ch if ch.isprintable() and not ch.isspace() else ""
    label = f"U+{ord(ch):04X} {name}".rstrip()
    return f"'{shown}' ({label})" if shown else f"({label})"


def _spelled(text: str) -> str:
    """A run of added or removed characters: plain ASCII quoted as it is, anything else
    named by code point (hidden or look-alike characters hide there)."""
    if text.isascii() and text.isprintable():
        return f"'{text}'" if len(text) <= MAX_QUOTED else f"{len(text)} characters"
    if len(text) > MAX_SPELLED:
        return f"{len(text)} characters"
    return ", ".join(code_point(ch) for ch in text)


def character_differences(victim: str, clone: str, *, original: str = "the victim") -> list[str]:
    """How `clone` differs from `victim`, character by character, each named by code point
    ("'Ο' (U+039F GREEK CAPITAL LETTER OMICRON) where the victim has 'O' (U+004F LATIN
    CAPITAL LETTER O)"); at most MAX_NOTES notes. `original` names the victim's side in
    them ("yours" in a report for the person checked)."""
    notes: list[str] = []
    matcher = difflib.SequenceMatcher(a=victim, b=clone, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        gone, added = victim[a0:a1], clone[b0:b1]
        if op == "replace" and len(gone) == len(added):
            for old, new in zip(gone, added, strict=True):
                notes.append(f"{code_point(new)} where {original} has {code_point(old)}")
        elif op == "replace":
            notes.append(f"{_spelled(added)} where {original} has {_spelled(gone)}")
        elif op == "insert":
            notes.append(f"added {_spelled(added)}")
        else:
            notes.append(f"removed {_spelled(gone)}")
    if len(notes) > MAX_NOTES:
        notes = notes[:MAX_NOTES] + [f"... and {len(notes) - MAX_NOTES} more differences"]
    return notes


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def compare_field(
    label: str,
    victim_value: Any,
    clone_value: Any,
    *,
    spell: bool = True,
    original: str = "the victim",
) -> FieldComparison:
    victim, clone = _shown(victim_value), _shown(clone_value)
    if not victim and not clone:
        mark: Mark = "same"
    elif not clone:
        mark = "only victim"
    elif not victim:
        mark = "only clone"
    elif victim == clone:
        mark = "same"
    elif isinstance(victim_value, str) and skeleton(victim) == skeleton(clone):
        mark = "look-alike"
    else:
        mark = "differs"
    notes: list[str] = []
    if spell and mark in ("look-alike", "differs") and isinstance(victim_value, str):
        notes = character_differences(victim, clone, original=original)
    return FieldComparison(label=label, victim=victim, clone=clone, mark=mark, notes=notes)


def compare_records(
    victim: dict[str, Any],
    clone: dict[str, Any],
    *,
    original: str = "the victim",
    fields: tuple[tuple[str, str], ...] = COMPARED_FIELDS,
) -> list[FieldComparison]:
    """Every field of `fields` either record has, compared; fields neither has are left
    out. `original` names the victim's side in the notes."""
    return [
        compare_field(
            label,
            victim.get(name),
            clone.get(name),
            spell=name in SPELLED_FIELDS,
            original=original,
        )
        for name, label in fields
        if victim.get(name) not in (None, "") or clone.get(name) not in (None, "")
    ]
