"""Roles and what each may do and read: the one authorisation matrix of the service.

Routes declare the permission they need with `service.api.auth.require(PERMISSION)`; the
dependency yields the `Caller`, which services use to scope what a key may see. What a caller
may read of other people's stored profiles is its `ProfileAccess`, the same on every endpoint
(a check, a watchlist entry, an alert, an evidence export), so that no endpoint answers more
than another. The README's role table is `role_table()` (a test compares them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from models.profile import StoredProfile
from models.result import Result

Role = Literal["individual", "platform", "investigator", "admin"]
ROLES: tuple[Role, ...] = ("individual", "platform", "investigator", "admin")

Permission = Literal[
    "checks",  # POST /v1/checks
    "profiles.read",  # GET /v1/profiles/...
    "profiles.write",  # POST /v1/profiles, DELETE /v1/profiles/...
    "scans",  # /v1/scans...
    "watchlist",  # /v1/watchlist..., /v1/alerts..., /v1/webhook deliveries (own entries only,
    # unless the role also has "watchlist.all")
    "watchlist.all",  # every key's watchlist entries and alerts
    "cases",  # /v1/cases...: cases, their captures and evidence exports
    "evidence",  # the evidence of the caller's own check; the signing key's public half
    "keys",  # key management
    "metrics.read",  # GET /metrics
]

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "individual": frozenset({"checks", "watchlist", "evidence"}),
    "platform": frozenset(
        {"checks", "profiles.read", "profiles.write", "scans", "watchlist", "evidence"}
    ),
    "investigator": frozenset({"checks", "profiles.read", "watchlist", "cases", "evidence"}),
    "admin": frozenset(
        {
            "checks",
            "profiles.read",
            "profiles.write",
            "scans",
            "watchlist",
            "watchlist.all",
            "cases",
            "evidence",
            "keys",
            "metrics.read",
        }
    ),
}

# What each permission opens, as the README's role table says it.
PERMISSION_OPERATIONS: dict[Permission, str] = {
    "checks": "run checks (`POST /v1/checks`)",
    "profiles.read": "read stored profiles (`GET /v1/profiles/{platform}/{handle}`)",
    "profiles.write": "ingest and erase profiles (`POST /v1/profiles`, `DELETE /v1/profiles/...`)",
    "scans": "bulk scans (`/v1/scans`; `ingest=true` needs `profiles.write` too)",
    "watchlist": "keep a watchlist of its own (`/v1/watchlist`, `/v1/alerts`)",
    "watchlist.all": "see and manage every key's watchlist entries and alerts",
    "cases": "its own cases, their captures and evidence exports (`/v1/cases`)",
    "evidence": (
        "export the evidence of its own checks (`POST /v1/evidence/checks`); read the signing "
        "key's public half (`GET /v1/evidence/public-key`)"
    ),
    "keys": "see every key's scans and cases (keys are managed with `clonefinder keys`)",
    "metrics.read": "read the service's Prometheus metrics (`GET /metrics`)",
}

ALL_PROFILE_FIELDS: frozenset[str] = frozenset(StoredProfile.model_fields)
# What anyone sees on the account itself, and the context that decides which side is the copy
# (creation date, followers, badge). Not `attributes` (whatever an ingesting platform added),
# not the ingest times, the platform's own account id, location, links or other counts.
PUBLIC_PROFILE_FIELDS: frozenset[str] = frozenset(
    {
        "platform",
        "handle",
        "display_name",
        "bio",
        "avatar_url",
        "avatar_sha256",
        "profile_url",
        "created_at",
        "followers_count",
        "verified",
    }
)


@dataclass(frozen=True)
class ProfileAccess:
    """What a caller may read of the stored profiles of other people.

    `fields`: the fields of a stored profile it is shown, wherever one appears (a check's
    match, an alert, a capture in an evidence export). `by_name`: whether it may read a stored
    profile by naming its platform and handle, which includes having a check, a watchlist
    entry or an evidence export filled in from the store. `ranks`: whether it may see matches
    below the `possible_clone` threshold (ranking or browsing the store by a name).
    """

    fields: frozenset[str]
    by_name: bool
    ranks: bool

    @property
    def every_field(self) -> bool:
        return self.fields >= ALL_PROFILE_FIELDS

    def least_score(self, requested: float | None, possible_clone: float) -> float | None:
        """The least score to report for a request that asked `requested` (None: the
        default, the possible_clone threshold)."""
        if self.ranks or requested is None:
            return requested
        return max(requested, possible_clone)

    def profile(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A stored profile's document cut to the fields this access may read."""
        return {name: value for name, value in document.items() if name in self.fields}

    def result(self, result: Result) -> Result:
        """A check's result with each match's profile cut to the readable fields."""
        if self.every_field:
            return result
        matches = [
            match.model_copy(update={"profile": self.profile(match.profile)})
            for match in result.matches
        ]
        return result.model_copy(update={"matches": matches})


FULL_ACCESS = ProfileAccess(fields=ALL_PROFILE_FIELDS, by_name=True, ranks=True)
PUBLIC_ACCESS = ProfileAccess(fields=PUBLIC_PROFILE_FIELDS, by_name=False, ranks=False)

ROLE_PROFILE_ACCESS: dict[Role, ProfileAccess] = {
    "individual": PUBLIC_ACCESS,
    "platform": FULL_ACCESS,
    "investigator": FULL_ACCESS,
    "admin": FULL_ACCESS,
}

# The web page, which has no key: in `public` mode anyone, who reads what an individual key
# reads; in `local` mode the person at the server's machine, whose checks may name a stored
# profile, but whose page shows only what a card shows.
PAGE_PROFILE_ACCESS: dict[str, ProfileAccess] = {
    "public": PUBLIC_ACCESS,
    "local": ProfileAccess(fields=PUBLIC_PROFILE_FIELDS, by_name=True, ranks=False),
}


@dataclass(frozen=True)
class Caller:
    """The key a request was made with: who it is and what its role lets it do."""

    key_id: int
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def access(self) -> ProfileAccess:
        return ROLE_PROFILE_ACCESS[self.role]


def _reads(access: ProfileAccess) -> str:
    if access.every_field and access.by_name and access.ranks:
        return "every field, by platform and handle or as a match at any score"
    fields = ", ".join(f"`{name}`" for name in StoredProfile.model_fields if name in access.fields)
    where = "as a match" if not access.by_name else "by platform and handle, or as a match"
    if not access.ranks:
        where += " at or above the `possible_clone` threshold"
    return f"{where}: {fields}; never `attributes` or the other fields"


def role_table() -> str:
    """The README's role table, made from the tables above."""
    lines = ["| role | may | reads of other people's stored profiles |", "|---|---|---|"]
    for role in ROLES:
        may = "; ".join(
            PERMISSION_OPERATIONS[p] for p in PERMISSION_OPERATIONS if p in ROLE_PERMISSIONS[role]
        )
        lines.append(f"| `{role}` | {may} | {_reads(ROLE_PROFILE_ACCESS[role])} |")
    return "\n".join(lines) + "\n"
