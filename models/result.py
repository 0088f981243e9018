"""The result record of interface.md section 3, and the evidence a pair is scored on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from models.reasons import explanations_of

Label = Literal["likely_clone", "possible_clone", "unlikely"]
# Which account of a pair looks like the impersonator, by creation date, followers and badge.
Impersonator = Literal["candidate", "query", "unknown"]


@dataclass(frozen=True, slots=True)
class Context:
    """What says which side of a pair is older and more established."""

    created_at: datetime | None = None
    followers_count: int | None = None
    verified: bool | None = None


@dataclass(slots=True)
class PairEvidence:
    """Everything measured about one (query, candidate) pair, before it is scored.

    Similarities are in [0, 1], or None where either side lacks the field. The extra facts
    (bit counts, popularity, look-alike characters) make the features sharper and the reasons
    quotable.
    """

    avatar: float | None = None
    avatar_bits: int | None = None
    avatar_popularity: int = 0  # unrelated identities that share the query's avatar
    avatar_copies: int = 0  # accounts sharing it that also resemble the query's identity
    # The avatars meet in one pair of views only, and strangers' avatars come as close: the
    # match does not point at this account (`indexers.compare.avatar_singled_out`).
    avatar_crowded: bool = False
    display_name: float | None = None
    display_name_exact: bool = False
    display_name_verbatim: bool = False
    name_popularity: int = 0
    handle: float | None = None
    handle_exact: bool = False
    handle_popularity: int = 0  # unrelated identities whose handle has the query's core
    # One handle is the other disguised: look-alike characters swapped in, or (handle_typo) a
    # letter doubled, dropped or changed.
    handle_lookalike: bool = False
    handle_typo: bool = False
    handle_edits: int | None = None  # keystrokes between the handles as written (capped)
    handle_from_name: bool = False  # the handles agree only in spelling the display name
    handles_only_name: bool = False  # ... and neither adds anything to that spelling
    bio: float | None = None
    bio_exact: bool = False
    bio_popularity: int = 0
    # Either account says it is a fan, parody or otherwise unaffiliated account.
    declared_unaffiliated: bool = False
    lookalikes: list[str] = field(default_factory=list)
    query_context: Context = field(default_factory=Context)
    candidate_context: Context = field(default_factory=Context)

    def signals(self) -> dict[str, float | None]:
        """The per-field similarities of the contract's `signals` object."""
        return {
            "avatar": _round(self.avatar),
            "display_name": _round(self.display_name),
            "handle": _round(self.handle),
            "bio": _round(self.bio),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


class Explanation(BaseModel):
    """One reason in plain words (`text`, for the person checked) beside its technical form
    (`detail`, exactly as in `reasons`)."""

    text: str
    detail: str


EXPLANATIONS_DESCRIPTION = (
    "each of `reasons`, in the same order: {text: a plain sentence for people, detail: the "
    "reason as in `reasons`}"
)


def _explained(reasons: list[str]) -> list[Explanation]:
    return [
        Explanation(text=reason.text, detail=reason.detail) for reason in explanations_of(reasons)
    ]


class Verdict(BaseModel):
    """What the scoring model says of one pair."""

    score: float = Field(ge=0.0, le=1.0)
    label: Label
    reasons: list[str]
    likely_impersonator: Impersonator

    @computed_field(description=EXPLANATIONS_DESCRIPTION)  # type: ignore[prop-decorator]
    @property
    def explanations(self) -> list[Explanation]:
        return _explained(self.reasons)


MAY_BE_YOURS_DESCRIPTION = (
    "true when the account may be the checked person's own, on a platform they named no "
    "account on: the very same photo and display name, and it looks like the original (older, "
    "verified or more followed). Ask the person before calling it a clone; it stays a match, "
    "as it may also be the clone of someone with no other account"
)


class Match(BaseModel):
    """One candidate account and why it looks like a copy of the query's identity."""

    profile: dict[str, Any]
    score: float = Field(ge=0.0, le=1.0)
    label: Label
    signals: dict[str, float | None]
    reasons: list[str]
    likely_impersonator: Impersonator
    may_be_yours: bool = Field(default=False, description=MAY_BE_YOURS_DESCRIPTION)

    # Made from `reasons` whenever it is read, so the two can never disagree.
    @computed_field(description=EXPLANATIONS_DESCRIPTION)  # type: ignore[prop-decorator]
    @property
    def explanations(self) -> list[Explanation]:
        return _explained(self.reasons)


class OwnAccount(BaseModel):
    """An account the checked person declared as their own: never among the matches."""

    platform: str
    handle: str
    found: bool | None = Field(
        description="whether a profile is stored for it (its likeness is then compared too); "
        "null where the caller may not read stored profiles by name: the account is only kept "
        "out of the matches"
    )
    profile: dict[str, Any] | None = Field(
        default=None, description="the stored record, as a match's `profile`, when found"
    )


class QueryRef(BaseModel):
    platform: str | None = None
    handle: str | None = None


class Result(BaseModel):
    """The answer to one check: matches sorted by score, highest first."""

    query: QueryRef
    matches: list[Match]
    own_accounts: list[OwnAccount] = Field(
        default_factory=list,
        description="the accounts the check declared as the person's own, in the order given",
    )
