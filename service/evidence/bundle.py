"""Evidence bundles: a signed ZIP of the report, the data, the avatars and a manifest; and the
check that tells whether one is exactly as the service made it.

Two signatures, by the service's Ed25519 key:
- `manifest.sig` signs `manifest.json`, which lists the SHA-256 of every other file, so a
  changed file is named;
- the archive's comment signs every byte of the archive before it, so a changed byte anywhere
  (a timestamp or name in a ZIP header, which no file digest covers) fails too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from models.errors import InvalidInputError
from service.evidence.exports import capture_digest, evidence_digest, sha256_hex
from service.evidence.signing import (
    ALGORITHM,
    EvidenceSigner,
    fingerprint,
    load_public_key,
    signature_valid,
)

BUNDLE_FORMAT = "clonefinder-evidence-bundle/1"
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
REPORT = "report.pdf"
ARCHIVE_SIGNATURE_PREFIX = b"clonefinder-archive-signature:v1:"
_SIGNATURE_B64_LENGTH = 88  # base64 of a 64-byte Ed25519 signature
# Every member gets this time: the archive's bytes depend only on its content.
_FIXED_TIME = (2000, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BundleFiles:
    """What goes into a bundle besides the manifest and signatures."""

    report: bytes
    evidence: dict[str, bytes]  # case.json, items.csv, avatars/...
    manifest_fields: dict[str, Any]  # case id, export time and actor, software, audit head


def build_bundle(files: BundleFiles, *, signer: EvidenceSigner) -> bytes:
    """The signed ZIP archive of `files`."""
    public = signer.public_key_pem.encode("ascii")
    members = {**files.evidence, REPORT: files.report, PUBLIC_KEY: public}
    digests = {path: sha256_hex(data) for path, data in members.items()}
    evidence_digests = {path: digests[path] for path in files.evidence}
    manifest = {
        **files.manifest_fields,
        "format": BUNDLE_FORMAT,
        "hash_algorithm": "SHA-256",
        "files": dict(sorted(digests.items())),
        # Checked before a member is read, so a member cannot be inflated past its size.
        "file_sizes": {path: len(data) for path, data in sorted(members.items())},
        "evidence_files": sorted(evidence_digests),
        "evidence_digest": evidence_digest(evidence_digests),
        "signature": {
            "algorithm": ALGORITHM,
            "public_key": PUBLIC_KEY,
            "key_fingerprint": signer.fingerprint,
            "manifest_signature": MANIFEST_SIGNATURE,
        },
    }
    manifest_bytes = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    signature = signer.signature_b64(manifest_bytes).encode("ascii")

    buffer = io.BytesIO()
    placeholder = ARCHIVE_SIGNATURE_PREFIX + b"0" * _SIGNATURE_B64_LENGTH
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in [
            (MANIFEST, manifest_bytes),
            (MANIFEST_SIGNATURE, signature + b"\n"),
            *sorted(members.items()),
        ]:
            info = zipfile.ZipInfo(path, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
        archive.comment = placeholder
    data = buffer.getvalue()
    assert data.endswith(placeholder)
    signed = data[: -len(placeholder)]
    archive_signature = signer.signature_b64(signed).encode("ascii")
    return signed + ARCHIVE_SIGNATURE_PREFIX + archive_signature


# -- verification -----------------------------------------------------------------------------

# What a check reads, whatever a bundle claims: a hostile archive can declare members of any
# size, and a few kilobytes of deflate stream can inflate to gigabytes.
MAX_BUNDLE_BYTES = 1 << 30
# A member the manifest gives no size for (bundles made before sizes were recorded).
MAX_MEMBER_BYTES = 512 << 20
# Every member read, together: bounds the time a check takes.
MAX_CONTENT_BYTES = 4 << 30
# manifest.json and case.json are parsed whole; parsing holds several times their size.
MAX_PARSED_BYTES = 64 << 20
# public_key.pem and manifest.sig are read before the manifest is trusted.
MAX_SMALL_MEMBER_BYTES = 64 << 10
_READ_CHUNK = 1 << 20
_SHOWN_CHARS = 120
# Bundles are written with deflate; other methods (bzip2, LZMA) inflate without a bound per
# read in the zipfile module, so they are refused before reading.
_READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_HEX = frozenset("0123456789abcdef")
# What reading a damaged, encrypted or otherwise unreadable member raises.
_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    NotImplementedError,
)


@dataclass
class VerifyReport:
    files_checked: int = 0
    captures_checked: int = 0
    key_fingerprint: str | None = None
    case_id: int | None = None
    exported_at: str | None = None
    audit_head: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)  # the members that do not match

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str, *, member: str | None = None) -> None:
        self.problems.append(message)
        if member is not None and member not in self.bad_files:
            self.bad_files.append(member)


@dataclass(frozen=True)
class _Manifest:
    """The parts of a manifest the check relies on, each of the type it must have."""

    files: dict[str, str]  # path: SHA-256
    sizes: dict[str, int] | None  # path: bytes; None in bundles made before sizes were kept
    evidence_files: list[str]
    evidence_digest: str | None


class _Unreadable(Exception):
    """A member that cannot be read within its limits; the message says why."""


def _shown(value: object) -> str:
    """A name or value from a bundle as it can be printed safely: control characters (a
    terminal's escape sequences) escaped, and cut short."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, int | float):
        text = repr(value)
    else:  # a list or object from a hostile file: its repr could be huge, or nested too deep
        text = f"a {type(value).__name__}"
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def verify_bundle(data: bytes, *, expected_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Check every digest and both signatures of a bundle; the report names each member that
    does not match. `expected_key` pins the signer (else the bundle's own key is used, and
    its fingerprint is reported for a person to compare).

    Total: whatever the bytes, the answer is a report, never an exception; each member is
    read only up to its size in the manifest, checked before reading."""
    report = VerifyReport()
    try:
        _verify(data, expected_key, report)
    except Exception as exc:  # noqa: BLE001 - a verifier answers about any bytes it is given
        report.fail(f"the bundle could not be checked ({type(exc).__name__}: {_shown(str(exc))})")
    return report


def verify_bundle_file(path: Path, *, expected_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """`verify_bundle` of the file at `path`, which is read only if it is not too large to be
    a bundle. InvalidInputError when the file cannot be read at all."""
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_BUNDLE_BYTES:
                report = VerifyReport()
                report.fail(
                    f"the archive is {size} bytes, more than the {MAX_BUNDLE_BYTES} a bundle "
                    "may have: not read"
                )
                return report
            data = stream.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return verify_bundle(data, expected_key=expected_key)


def _verify(data: bytes, expected_key: Ed25519PublicKey | None, report: VerifyReport) -> None:
    if len(data) > MAX_BUNDLE_BYTES:
        report.fail(f"the archive is more than the {MAX_BUNDLE_BYTES} bytes a bundle may have")
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        report.fail(f"not a readable ZIP archive: {_shown(str(exc))}")
        return
    with archive:
        members = _members(archive, report)
        key = _bundle_key(archive, members, report, expected_key)
        _check_archive_signature(data, archive.comment, key, report)
        manifest = _manifest(archive, members, key, report)
        if manifest is None:
            return
        case_json = _check_files(archive, members, manifest, report)
    for path in sorted(set(members) - set(manifest.files) - {MANIFEST, MANIFEST_SIGNATURE}):
        report.fail(f"{_shown(path)}: not listed in the manifest", member=path)
    evidence = {path: manifest.files.get(path, "") for path in manifest.evidence_files}
    if evidence_digest(evidence) != manifest.evidence_digest:
        report.fail(f"{MANIFEST}: evidence_digest does not match its files", member=MANIFEST)
    if case_json is not None:
        _check_captures(case_json, report)


def _members(archive: zipfile.ZipFile, report: VerifyReport) -> dict[str, zipfile.ZipInfo]:
    """Each member by name. A name twice is reported: a reader would see only one of them."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename in members:
            report.fail(
                f"{_shown(info.filename)}: more than once in the archive", member=info.filename
            )
            continue
        members[info.filename] = info
    return members


def _read_whole(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int, expected_size: int | None
) -> bytes:
    """A member's bytes, read only if its declared size fits: `_Unreadable` otherwise."""
    _check_readable(info, limit=limit, expected_size=expected_size)
    try:
        with archive.open(info) as stream:
            data = stream.read(limit + 1)
    except _MEMBER_ERRORS as exc:
        raise _Unreadable(f"damaged in the archive ({_shown(str(exc))})") from None
    if len(data) > limit:  # pragma: no cover - zipfile stops at the declared size
        raise _Unreadable(f"more than {limit} bytes")
    return data


def _streamed_digest(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int, expected_size: int | None
) -> str:
    """The SHA-256 of a member, read a chunk at a time: memory stays flat whatever its size."""
    _check_readable(info, limit=limit, expected_size=expected_size)
    digest = hashlib.sha256()
    read = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_READ_CHUNK):
                read += len(chunk)
                if read > limit:  # pragma: no cover - zipfile stops at the declared size
                    raise _Unreadable(f"more than {limit} bytes")
                digest.update(chunk)
    except _MEMBER_ERRORS as exc:
        raise _Unreadable(f"damaged in the archive ({_shown(str(exc))})") from None
    return digest.hexdigest()


def _check_readable(info: zipfile.ZipInfo, *, limit: int, expected_size: int | None) -> None:
    if info.compress_type not in _READABLE_METHODS:
        raise _Unreadable(
            f"compressed with method {info.compress_type}; bundles use deflate only: not read"
        )
    if expected_size is not None and info.file_size != expected_size:
        raise _Unreadable(
            f"{info.file_size} bytes in the archive, {expected_size} in the manifest: not read"
        )
    if info.file_size > limit:
        raise _Unreadable(f"{info.file_size} bytes, more than the {limit} read: not read")


def _bundle_key(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    report: VerifyReport,
    expected: Ed25519PublicKey | None,
) -> Ed25519PublicKey | None:
    inside: Ed25519PublicKey | None = None
    info = members.get(PUBLIC_KEY)
    if info is None:
        report.fail(f"{PUBLIC_KEY}: missing from the archive", member=PUBLIC_KEY)
    else:
        try:
            raw = _read_whole(archive, info, limit=MAX_SMALL_MEMBER_BYTES, expected_size=None)
            inside = load_public_key(raw)
        except _Unreadable as exc:
            report.fail(f"{PUBLIC_KEY}: {exc}", member=PUBLIC_KEY)
        except InvalidInputError as exc:
            report.fail(f"{PUBLIC_KEY}: {_shown(exc.message)}", member=PUBLIC_KEY)
    if expected is not None:
        if inside is not None and fingerprint(inside) != fingerprint(expected):
            report.fail(
                f"{PUBLIC_KEY}: not the expected key ({fingerprint(inside)}, expected "
                f"{fingerprint(expected)})",
                member=PUBLIC_KEY,
            )
        report.key_fingerprint = fingerprint(expected)
        return expected
    report.key_fingerprint = fingerprint(inside) if inside is not None else None
    return inside


def _check_archive_signature(
    data: bytes, comment: bytes, key: Ed25519PublicKey | None, report: VerifyReport
) -> None:
    if not comment.startswith(ARCHIVE_SIGNATURE_PREFIX) or not data.endswith(comment):
        report.fail("the archive carries no signature of its own (its comment was changed)")
        return
    signature = _b64(comment[len(ARCHIVE_SIGNATURE_PREFIX) :])
    if key is None:
        return  # already reported: no key to check with
    if signature is None or not signature_valid(key, data[: -len(comment)], signature):
        report.fail(
            "the archive's signature does not match its bytes (a byte of the archive changed)"
        )


def _manifest(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    key: Ed25519PublicKey | None,
    report: VerifyReport,
) -> _Manifest | None:
    info = members.get(MANIFEST)
    if info is None:
        report.fail(f"{MANIFEST}: missing from the archive", member=MANIFEST)
        return None
    try:
        raw = _read_whole(archive, info, limit=MAX_PARSED_BYTES, expected_size=None)
    except _Unreadable as exc:
        report.fail(f"{MANIFEST}: {exc}", member=MANIFEST)
        return None
    signature: bytes | None = None
    signature_info = members.get(MANIFEST_SIGNATURE)
    if signature_info is not None:
        try:
            signature = _b64(
                _read_whole(
                    archive, signature_info, limit=MAX_SMALL_MEMBER_BYTES, expected_size=None
                ).strip()
            )
        except _Unreadable as exc:
            report.fail(f"{MANIFEST_SIGNATURE}: {exc}", member=MANIFEST_SIGNATURE)
    if signature is None:
        report.fail(f"{MANIFEST_SIGNATURE}: missing or not base64", member=MANIFEST_SIGNATURE)
    elif key is not None and not signature_valid(key, raw, signature):
        report.fail(
            f"{MANIFEST}: its signature ({MANIFEST_SIGNATURE}) does not match "
            f"(one of the two changed)",
            member=MANIFEST,
        )
        report.bad_files.append(MANIFEST_SIGNATURE)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge numbers, deep nesting
        report.fail(f"{MANIFEST}: not readable JSON ({_shown(str(exc))})", member=MANIFEST)
        return None
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        report.fail(f"{MANIFEST}: not a {BUNDLE_FORMAT} manifest", member=MANIFEST)
        return None
    return _manifest_fields(document, report)


def _manifest_fields(document: dict[str, Any], report: VerifyReport) -> _Manifest | None:
    """The manifest's fields, each checked for its type: a field of another type is a named
    failure, never a crash further on."""

    def wrong(name: str, what: str) -> None:
        report.fail(f"{MANIFEST}: {name} is not {what}", member=MANIFEST)

    files = document.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX
        for digest in files.values()
    ):
        wrong("files", "an object of each file's path and SHA-256")
        return None
    sizes = document.get("file_sizes")
    if sizes is not None and not (
        isinstance(sizes, dict)
        and set(sizes) == set(files)
        and all(type(size) is int and size >= 0 for size in sizes.values())
    ):
        wrong("file_sizes", "an object of each listed file's path and size in bytes")
        sizes = None
    evidence_files = document.get("evidence_files")
    if evidence_files is None:
        evidence_files = []
    if not isinstance(evidence_files, list) or not all(isinstance(p, str) for p in evidence_files):
        wrong("evidence_files", "a list of paths")
        evidence_files = []
    digest = document.get("evidence_digest")
    if not isinstance(digest, str):
        wrong("evidence_digest", "a SHA-256")
        digest = None
    case_id = document.get("case_id")
    if case_id is None or type(case_id) is int:
        report.case_id = case_id
    else:
        wrong("case_id", "a case's id")
    exported_at = document.get("exported_at")
    if exported_at is None or isinstance(exported_at, str):
        report.exported_at = exported_at
    else:
        wrong("exported_at", "a time")
    head = document.get("audit_head")
    if head is None or (
        isinstance(head, dict)
        and set(head) == {"seq", "hash"}
        and type(head["seq"]) is int
        and isinstance(head["hash"], str)
    ):
        report.audit_head = head
    else:
        wrong("audit_head", "an audit entry's seq and hash")
    return _Manifest(
        files=files, sizes=sizes, evidence_files=evidence_files, evidence_digest=digest
    )


def _check_files(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    manifest: _Manifest,
    report: VerifyReport,
) -> bytes | None:
    """Each listed file against its digest, read within its size; case.json's bytes when it
    could be read (its captures are checked next, so that a changed one is named)."""
    case_json: bytes | None = None
    budget = MAX_CONTENT_BYTES
    for path, digest in sorted(manifest.files.items()):
        info = members.get(path)
        if info is None:
            report.fail(f"{_shown(path)}: missing from the archive", member=path)
            continue
        expected_size = None if manifest.sizes is None else manifest.sizes[path]
        try:
            _check_readable(info, limit=MAX_MEMBER_BYTES, expected_size=expected_size)
            if info.file_size > budget:
                raise _Unreadable(
                    f"with the members before it, more than the {MAX_CONTENT_BYTES} bytes "
                    "read in all: not read"
                )
            budget -= info.file_size
            if path == "case.json":
                content = _read_whole(
                    archive, info, limit=MAX_PARSED_BYTES, expected_size=expected_size
                )
                actual = sha256_hex(content)
                case_json = content
            else:
                actual = _streamed_digest(
                    archive, info, limit=MAX_MEMBER_BYTES, expected_size=expected_size
                )
        except _Unreadable as exc:
            report.fail(f"{_shown(path)}: {exc}", member=path)
            continue
        report.files_checked += 1
        if actual != digest:
            report.fail(f"{_shown(path)}: SHA-256 does not match the manifest", member=path)
    return case_json


def _check_captures(raw: bytes, report: VerifyReport) -> None:
    """Each capture in case.json against its own digest (a changed capture whose file digest
    was also forged in the manifest would already fail the signature; this names it)."""

    def malformed(what: str) -> None:
        report.fail(f"case.json: {what}", member="case.json")

    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        malformed(f"not readable JSON ({_shown(str(exc))})")
        return
    if not isinstance(document, dict):
        malformed("not a JSON object")
        return
    items = document.get("items", [])
    if not isinstance(items, list):
        malformed("items is not a list")
        return
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            malformed(f"item {number} is not an object")
            continue
        item_id = _shown(item.get("id"))
        captures = item.get("captures", [])
        if not isinstance(captures, list):
            malformed(f"the captures of item {item_id} are not a list")
            continue
        for capture in captures:
            if not (
                isinstance(capture, dict)
                and "content" in capture
                and isinstance(capture.get("sha256"), str)
            ):
                malformed(f"a capture of item {item_id} has no content or no sha256")
                continue
            report.captures_checked += 1
            try:
                digest = capture_digest(capture["content"])
            except (ValueError, RecursionError):
                digest = None
            if digest != capture["sha256"]:
                malformed(
                    f"capture {_shown(capture.get('id'))} of item {item_id} does not match its "
                    "SHA-256"
                )


def _b64(text: bytes) -> bytes | None:
    """Strict base64: only the one spelling of the bytes, so that no character of a signature
    can change (base64 ignores the spare bits of its last character) and still verify."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded) == text else None
