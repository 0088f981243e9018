"""The service's Ed25519 signing key: created on first use, kept in the data folder.

The private key is a PKCS #8 PEM file readable by its owner only (mode 0600). Whoever holds a
bundle checks it with the public key inside it, and checks that key against the one the
service publishes (`GET /v1/evidence/public-key`) by its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.errors import ConfigurationError, InvalidInputError

logger = logging.getLogger(__name__)

ALGORITHM = "Ed25519"


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """`SHA256:` and the hex SHA-256 of the raw 32-byte public key: how people compare keys."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; InvalidInputError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"not a readable public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInputError("not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class EvidenceSigner:
    """Signs with the key at `path`, which is created there the first time it is needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()

    def _private(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                self._key = self._load_or_create()
            return self._key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private().public_key()

    def existing_public_key(self) -> Ed25519PublicKey | None:
        """The public key, or None while no key has been created: for checks, which must
        not make a new key (everything signed before would then fail against it)."""
        with self._lock:
            if self._key is None:
                if not self.path.exists():
                    return None
                self._key = self._load_or_create()
            return self._key.public_key()

    @property
    def public_key_pem(self) -> str:
        return public_pem(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._private().sign(data)

    @property
    def signing_began_path(self) -> Path:
        return self.path.with_name(self.path.name + ".audit-signed-from")

    def note_signing_began(self, seq: int) -> None:
        """Record, beside the key, the audit entry this key began signing the log at (first
        time only). It lies outside the database on purpose: whoever rewrites the log there
        and strips every signature, to make it look written before signing, cannot move it."""
        if self.signing_began_path.exists():
            return
        try:
            with self.signing_began_path.open("x", encoding="ascii") as out:
                out.write(f"{seq}\n")
        except FileExistsError:
            pass  # another process recorded it first

    def signing_began(self) -> int | None:
        """The entry the log is signed from, as recorded beside the key, or None."""
        try:
            text = self.signing_began_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() and int(text) >= 1 else None

    def signature_b64(self, data: bytes) -> str:
        return base64.b64encode(self.sign(data)).decode("ascii")

    def _load_or_create(self) -> Ed25519PrivateKey:
        if not self.path.exists():
            self._create()
        try:
            key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot read the signing key {self.path}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"{self.path} is not an Ed25519 private key")
        return key

    def _create(self) -> None:
        """Write a new key beside its final name, then link it there: a reader never sees
        half a key, and of several processes starting at once one key wins, kept by all.

        The file written first has a name of its own, created exclusively (`mkstemp`): replicas
        in containers all run as PID 1, so a name made of the process id would be the same
        file for all of them on a shared volume, each truncating the others' key."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, staged = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            staging = Path(staged)
            try:
                os.fchmod(fd, 0o600)  # open()'s mode is only what the umask lets through
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(staging, self.path)
                logger.warning(
                    "created the evidence signing key %s (Ed25519, %s), readable by its owner "
                    "only; keep a backup: bundles signed with it are checked against it",
                    self.path,
                    fingerprint(key.public_key()),
                )
            except FileExistsError:
                pass  # another process created it first: use theirs
            finally:
                staging.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the signing key {self.path}: {exc.strerror or exc}"
            ) from None
