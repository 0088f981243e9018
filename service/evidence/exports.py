"""The evidence of a case as files: JSON (every capture), CSV (one row per item) and digests.

An `EvidenceSet` is what every export is made from: the case, its items with their captures
(oldest first; the last is the one a report shows) and the captured avatars' bytes. A check
exported by an individual becomes an evidence set too, of a case that is not stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from service.store.audit import canonical_json
from service.store.store import AvatarBlob

CASE_FORMAT = "clonefinder-case/1"

# The CSV's columns, in order (the README documents each).
CSV_COLUMNS = (
    "case_id",
    "item_id",
    "item_status",
    "victim_platform",
    "victim_handle",
    "victim_display_name",
    "clone_platform",
    "clone_handle",
    "clone_display_name",
    "score",
    "label",
    "likely_impersonator",
    "signal_avatar",
    "signal_display_name",
    "signal_handle",
    "signal_bio",
    "reasons",
    "captured_at",
    "capture_sha256",
    "clone_avatar_sha256",
    "victim_avatar_sha256",
    "source",
    "source_url",
    "item_notes",
)
SIGNALS = ("avatar", "display_name", "handle", "bio")
REASON_SEPARATOR = " | "
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): a
# handle or name chosen by an impersonator must never do that on a lawyer's machine.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}


@dataclass(frozen=True)
class CaptureView:
    id: int | None
    sha256: str
    content: dict[str, Any]  # the capture document (its canonical JSON is what sha256 covers)


@dataclass(frozen=True)
class EvidenceItem:
    id: int | None
    status: str
    notes: str
    source: str
    captures: list[CaptureView]  # oldest first

    @property
    def latest(self) -> CaptureView:
        return self.captures[-1]


@dataclass(frozen=True)
class EvidenceSet:
    case: dict[str, Any]  # id, title, status, notes, created_at, updated_at, victim
    items: list[EvidenceItem]
    avatars: dict[str, AvatarBlob]  # every avatar a capture names, by SHA-256

    @property
    def is_check(self) -> bool:
        """Whether this is a check exported by the person checked: a case that is not stored,
        whose report speaks to that person rather than to a lawyer."""
        return self.case.get("id") is None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def capture_digest(content: dict[str, Any]) -> str:
    """The SHA-256 of a capture: of its content as canonical JSON, UTF-8."""
    return sha256_hex(canonical_json(content).encode("utf-8"))


def avatar_path(blob: AvatarBlob) -> str:
    """Where an avatar lies in a bundle: named by its own digest."""
    return f"avatars/{blob.sha256}.{_EXTENSIONS.get(blob.mime, 'bin')}"


def case_json(evidence: EvidenceSet) -> bytes:
    """Every capture of every item, as stored (the document of each capture is exactly the
    content its digest covers)."""
    document = {
        "format": CASE_FORMAT,
        "case": evidence.case,
        "items": [
            {
                "id": item.id,
                "status": item.status,
                "notes": item.notes,
                "source": item.source,
                "captures": [
                    {"id": c.id, "sha256": c.sha256, "content": c.content} for c in item.captures
                ],
            }
            for item in evidence.items
        ],
        "avatars": {
            sha: {"path": avatar_path(blob), "mime": blob.mime, "bytes": len(blob.data)}
            for sha, blob in sorted(evidence.avatars.items())
        },
    }
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode(
        "utf-8"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_row(case_id: Any, item: EvidenceItem) -> dict[str, str]:
    content = item.latest.content
    victim = content.get("victim", {}).get("record", {})
    clone = content.get("clone", {}).get("record", {})
    signals = content.get("signals") or {}
    row: dict[str, Any] = {
        "case_id": case_id,
        "item_id": item.id,
        "item_status": item.status,
        "victim_platform": victim.get("platform"),
        "victim_handle": victim.get("handle"),
        "victim_display_name": victim.get("display_name"),
        "clone_platform": clone.get("platform"),
        "clone_handle": clone.get("handle"),
        "clone_display_name": clone.get("display_name"),
        "score": content.get("score"),
        "label": content.get("label"),
        "likely_impersonator": content.get("likely_impersonator"),
        "reasons": REASON_SEPARATOR.join(content.get("reasons") or []),
        "captured_at": content.get("captured_at"),
        "capture_sha256": item.latest.sha256,
        "clone_avatar_sha256": (content.get("clone", {}).get("avatar") or {}).get("sha256"),
        "victim_avatar_sha256": (content.get("victim", {}).get("avatar") or {}).get("sha256"),
        "source": content.get("source"),
        "source_url": content.get("source_url"),
        "item_notes": item.notes,
    }
    for name in SIGNALS:
        row[f"signal_{name}"] = signals.get(name)
    return {column: _cell(row[column]) for column in CSV_COLUMNS}


def items_csv(evidence: EvidenceSet) -> bytes:
    """One row per item, from its latest capture (UTF-8 with a BOM, so spreadsheets read
    names in any script correctly)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for item in evidence.items:
        writer.writerow(csv_row(evidence.case.get("id"), item))
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def evidence_files(evidence: EvidenceSet) -> dict[str, bytes]:
    """The data files of an export, by their path in a bundle: the JSON, the CSV and every
    avatar. The report is made from these, and names their digest."""
    files = {"case.json": case_json(evidence), "items.csv": items_csv(evidence)}
    for _, blob in sorted(evidence.avatars.items()):
        files[avatar_path(blob)] = blob.data
    return files


def evidence_digest(digests: dict[str, str]) -> str:
    """The digest of the evidence files: SHA-256 of the canonical JSON object that maps each
    file's path to its SHA-256. The report shows it; the bundle's manifest records it."""
    return sha256_hex(canonical_json(digests).encode("utf-8"))
