"""The accounts a person checking their identity declares as their own.

A person has accounts on several platforms; a check may name them (`own_accounts` in a check's
body, `clonefinder check --mine PLATFORM:HANDLE`). They are never among the matches, and each
one stored is compared as a side of the person too (`Engine.check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import CloneFinderError, InvalidInputError
from models.profile import identity_key, parse_record

FIELD = "own_accounts"
# Enough for every platform a person is on; each one stored is one more side to search and
# score, so a check costs at most this many times one without them.
MAX_OWN_ACCOUNTS = 10


@dataclass(frozen=True, slots=True)
class OwnAccount:
    """One declared account: its platform (a lower-case slug) and handle (no leading @)."""

    platform: str
    handle: str

    @property
    def key(self) -> tuple[str, str]:
        return identity_key(self.platform, self.handle)


def parse_own_accounts(raw: Any, *, field: str = FIELD) -> tuple[OwnAccount, ...]:
    """A check's `own_accounts`: a list of at most MAX_OWN_ACCOUNTS `{"platform", "handle"}`
    objects (missing or null: none). Each is validated as a record's platform and handle are;
    an error names the entry and its field (`own_accounts[1].handle`). An account named twice
    is kept once."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _field_error(field, "must be a list of {platform, handle} objects")
    if len(raw) > MAX_OWN_ACCOUNTS:
        raise _field_error(field, f"at most {MAX_OWN_ACCOUNTS} accounts, got {len(raw)}")
    accounts: dict[tuple[str, str], OwnAccount] = {}
    for position, entry in enumerate(raw):
        account = _own_account(entry, where=f"{field}[{position}]")
        accounts.setdefault(account.key, account)
    return tuple(accounts.values())


def parse_mine(value: str) -> OwnAccount:
    """`--mine PLATFORM:HANDLE` of the command line (the handle may contain colons)."""
    platform, colon, handle = value.partition(":")
    if not colon:
        raise InvalidInputError(f"--mine {value}: write it PLATFORM:HANDLE, as twitter:janedoe")
    try:
        return _own_account({"platform": platform, "handle": handle}, where="--mine")
    except InvalidInputError as exc:
        raise InvalidInputError(f"--mine {value}: {exc.message}") from None


def own_accounts_of(values: Sequence[str]) -> tuple[OwnAccount, ...]:
    """Every `--mine` given, each account once (as first written)."""
    accounts: dict[tuple[str, str], OwnAccount] = {}
    for account in map(parse_mine, values):
        accounts.setdefault(account.key, account)
    return tuple(accounts.values())


def _own_account(entry: Any, *, where: str) -> OwnAccount:
    if not isinstance(entry, dict):
        raise _field_error(where, "must be an object with 'platform' and 'handle'")
    unknown = sorted(str(name) for name in entry if name not in ("platform", "handle"))
    if unknown:
        raise _field_error(where, f"unknown fields {unknown}: only 'platform' and 'handle'")
    for name in ("platform", "handle"):
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise _field_error(f"{where}.{name}", "required, as text")
    try:
        record = parse_record(entry, where=where)
    except CloneFinderError as exc:
        problem = exc.details[0] if exc.details else {}
        bad = problem.get("field")
        message = str(problem.get("message") or exc.message)
        raise _field_error(f"{where}.{bad}" if bad else where, message) from None
    return OwnAccount(platform=record.platform, handle=record.handle)


def _field_error(field: str, problem: str) -> InvalidInputError:
    message = f"field '{field}': {problem}"
    return InvalidInputError(message, details=[{"field": field, "message": message}])
