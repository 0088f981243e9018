"""Roles and what each may do: the vocabulary the API's key checks are written in.

Routes declare the permission they need with `service.api.auth.require(PERMISSION)`; the
dependency yields the `Caller`, which services use to scope what a key may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
        }
    ),
}


@dataclass(frozen=True)
class Caller:
    """The key a request was made with: who it is and what its role lets it do."""

    key_id: int
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]
