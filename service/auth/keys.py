"""API keys: how they are made and stored, who a presented key is, and how often it may call.

A key is `cf_` followed by 32 random bytes (URL-safe base64), shown once when it is created.
The store keeps only its SHA-256 and a short prefix that lets a person tell keys apart.

Why a plain SHA-256 and not a password hash (bcrypt, argon2): those are slow on purpose, to
make guessing a low-entropy password from its hash expensive. A key of 256 random bits cannot
be guessed from its hash at any speed, so the slowness would buy nothing and cost every request
tens of milliseconds; and an unsalted hash can be looked up through a unique index, which is
what lets every request re-read its key's state (a revocation applies at once).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitedError,
)
from service.auth.roles import ROLE_PERMISSIONS, ROLES, Caller, Permission, Role
from service.store.keys import KeyRow, KeyStore

logger = logging.getLogger(__name__)

KEY_PREFIX = "cf_"
# Characters of a key kept in clear to tell keys apart: "cf_" and 6 of its 43 random ones
# (36 of 256 bits), far too few to help a guess.
SHOWN_PREFIX_CHARS = len(KEY_PREFIX) + 6
ADMIN_KEY_FILE = "admin.key"
ADMIN_KEY_NAME = "admin"
MAX_NAME_CHARS = 100
# A key's last use is written at most this often per server process: a write per request
# would queue every request on SQLite's single write lock.
TOUCH_INTERVAL_S = 60.0


@dataclass(frozen=True)
class NewKey:
    """A key just created: its stored row and the key itself, which is never shown again."""

    row: KeyRow
    key: str


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 under which a key is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:SHOWN_PREFIX_CHARS]


def create_key(keys: KeyStore, *, name: str, role: str) -> NewKey:
    """Make and store a key named `name` with `role`; the caller shows `NewKey.key` once.

    Raises InvalidInputError for an unknown role, an unusable name or a name already taken.
    """
    checked_role = _checked_role(role)
    checked_name = _checked_name(name)
    key = new_key()
    row = keys.add(
        name=checked_name, role=checked_role, key_hash=hash_key(key), prefix=key_prefix(key)
    )
    assert row is not None  # only `only_if_empty` adds return None
    logger.info("created API key %r (role %s, %s...)", row.name, row.role, row.prefix)
    return NewKey(row=row, key=key)


def ensure_admin_key(keys: KeyStore, *, data_dir: Path) -> Path | None:
    """On a store that holds no key at all, create the admin key and write it to a file.

    The file is `DATA_DIR/admin.key`, readable by its owner only (mode 0600). Returns its path
    when a key was created, None when the store already had keys (the file, if any, is left
    as it is). Safe when several processes start at once: one of them creates the key.
    """
    if keys.count():
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ADMIN_KEY_FILE
    key = new_key()
    # Written beside the final name first, so the file never holds a key the store lacks and
    # a reader never sees half a key.
    staging = data_dir / f".{ADMIN_KEY_FILE}.{os.getpid()}.tmp"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode given to open() is only what the umask lets through
        os.write(fd, (key + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        row = keys.add(
            name=ADMIN_KEY_NAME,
            role="admin",
            key_hash=hash_key(key),
            prefix=key_prefix(key),
            only_if_empty=True,
        )
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if row is None:
        staging.unlink(missing_ok=True)
        return None
    os.replace(staging, path)
    return path


def _checked_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidInputError(
        f"unknown role {role!r}: use one of {', '.join(ROLES)}",
        details=[{"field": "role", "message": f"one of {', '.join(ROLES)}"}],
    )


def _checked_name(name: str) -> str:
    stripped = name.strip()
    if not stripped or len(stripped) > MAX_NAME_CHARS or not stripped.isprintable():
        message = f"a key name is 1 to {MAX_NAME_CHARS} printable characters"
        raise InvalidInputError(message, details=[{"field": "name", "message": message}])
    return stripped


class RateLimiter:
    """A token bucket per key: `burst` requests at once, then `per_minute` on average.

    In-process: each server process counts on its own, so N processes behind one address
    admit up to N times the limit. `per_minute=0` admits everything.
    """

    def __init__(
        self, *, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0  # tokens per second
        self._burst = float(max(1, burst))
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, when)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def wait_s(self, key_id: int) -> float:
        """Take one request from the key's bucket: 0 when admitted, else seconds until it is."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self._rate


class Authenticator:
    """Turns a presented key into a `Caller`, or the error that says why it cannot call.

    The key's hash is looked up in the store on every request (one indexed read), so a key
    revoked by another process (`clonefinder keys revoke`) is refused from its next request.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        limiter: RateLimiter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self._limiter = limiter
        self._clock = clock
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def authenticate(self, presented: str | None, permission: Permission) -> Caller:
        """The caller of a request that presented `presented` and needs `permission`.

        Raises AuthenticationError (no, unknown or revoked key), RateLimitedError (the key
        is over its limit) or PermissionDeniedError (its role does not allow `permission`),
        checked in that order.
        """
        if not presented:
            raise AuthenticationError(
                "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            )
        row = self.keys.find_by_hash(hash_key(presented))
        if row is None:
            raise AuthenticationError("the API key is not valid")
        if row.revoked:
            raise AuthenticationError(f"the API key {row.name!r} was revoked")
        wait = self._limiter.wait_s(row.id)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimitedError(
                f"too many requests with the key {row.name!r}; retry in {retry_after} s",
                retry_after=retry_after,
            )
        caller = Caller(key_id=row.id, name=row.name, role=row.role)
        if not caller.can(permission):
            allowed = sorted(r for r in ROLES if permission in ROLE_PERMISSIONS[r])
            raise PermissionDeniedError(
                f"the role {row.role!r} of key {row.name!r} does not allow '{permission}' "
                f"(roles that do: {', '.join(allowed)})"
            )
        return caller

    def touch_due(self, key_id: int) -> bool:
        """Whether the key's last use should be written now (at most once a minute)."""
        now = self._clock()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < TOUCH_INTERVAL_S:
                return False
            self._touched[key_id] = now
            return True

    def touch(self, key_id: int) -> None:
        """Write the key's last use; a failure is logged, never the request's problem."""
        try:
            self.keys.touch(key_id)
        except Exception:
            logger.warning("could not record the last use of key %d", key_id, exc_info=True)
