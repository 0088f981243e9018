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
import io
import json
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


@dataclass
class VerifyReport:
    files_checked: int = 0
    captures_checked: int = 0
    key_fingerprint: str | None = None
    case_id: Any = None
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


def verify_bundle(data: bytes, *, expected_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Check every digest and both signatures of a bundle; the report names each member that
    does not match. `expected_key` pins the signer (else the bundle's own key is used, and
    its fingerprint is reported for a person to compare)."""
    report = VerifyReport()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        report.fail(f"not a readable ZIP archive: {exc}")
        return report
    with archive:
        members = {}
        for info in archive.infolist():
            try:
                members[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
                name = info.filename
                report.fail(f"{name}: damaged in the archive ({exc})", member=name)
        key = _bundle_key(members, report, expected_key)
        _check_archive_signature(data, archive.comment, key, report)
        manifest = _manifest(members, key, report)
    if manifest is None:
        return report
    report.case_id = manifest.get("case_id")
    report.exported_at = manifest.get("exported_at")
    report.audit_head = manifest.get("audit_head")
    listed: dict[str, str] = manifest.get("files") or {}
    for path, digest in sorted(listed.items()):
        content = members.get(path)
        if content is None:
            if path not in report.bad_files:
                report.fail(f"{path}: missing from the archive", member=path)
            continue
        report.files_checked += 1
        if sha256_hex(content) != digest:
            report.fail(f"{path}: SHA-256 does not match the manifest", member=path)
    for path in sorted(set(members) - set(listed) - {MANIFEST, MANIFEST_SIGNATURE}):
        report.fail(f"{path}: not listed in the manifest", member=path)
    evidence = {path: listed.get(path, "") for path in manifest.get("evidence_files") or []}
    if evidence_digest(evidence) != manifest.get("evidence_digest"):
        report.fail(f"{MANIFEST}: evidence_digest does not match its files", member=MANIFEST)
    _check_captures(members.get("case.json"), report)
    return report


def _bundle_key(
    members: dict[str, bytes], report: VerifyReport, expected: Ed25519PublicKey | None
) -> Ed25519PublicKey | None:
    inside: Ed25519PublicKey | None = None
    if PUBLIC_KEY in members:
        try:
            inside = load_public_key(members[PUBLIC_KEY])
        except InvalidInputError as exc:
            report.fail(f"{PUBLIC_KEY}: {exc.message}", member=PUBLIC_KEY)
    elif PUBLIC_KEY not in report.bad_files:
        report.fail(f"{PUBLIC_KEY}: missing from the archive", member=PUBLIC_KEY)
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
    members: dict[str, bytes], key: Ed25519PublicKey | None, report: VerifyReport
) -> dict[str, Any] | None:
    raw = members.get(MANIFEST)
    if raw is None:
        if MANIFEST not in report.bad_files:
            report.fail(f"{MANIFEST}: missing from the archive", member=MANIFEST)
        return None
    signature = _b64(members.get(MANIFEST_SIGNATURE, b"").strip())
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
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.fail(f"{MANIFEST}: not readable JSON ({exc})", member=MANIFEST)
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        report.fail(f"{MANIFEST}: not a {BUNDLE_FORMAT} manifest", member=MANIFEST)
        return None
    return manifest


def _check_captures(raw: bytes | None, report: VerifyReport) -> None:
    """Each capture in case.json against its own digest (a changed capture whose file digest
    was also forged in the manifest would already fail the signature; this names it)."""
    if raw is None:
        return
    try:
        document = json.loads(raw)
        items = document.get("items") or []
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        report.fail("case.json: not readable JSON", member="case.json")
        return
    for item in items:
        for capture in item.get("captures") or []:
            report.captures_checked += 1
            if capture_digest(capture.get("content")) != capture.get("sha256"):
                report.fail(
                    f"case.json: capture {capture.get('id')} of item {item.get('id')} does "
                    "not match its SHA-256",
                    member="case.json",
                )


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def read_bundle(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
