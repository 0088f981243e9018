"""Evidence exports: a case (or an exported check) as JSON, CSV, a PDF report or a signed
bundle of all of them, and the check that a bundle is unaltered.

`EvidenceExporter` is built once per engine: it holds the signing key (created on first use)
and the report's fonts (found on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from service.evidence.bundle import BundleFiles, build_bundle
from service.evidence.exports import (
    EvidenceSet,
    case_json,
    evidence_digest,
    evidence_files,
    items_csv,
    sha256_hex,
)
from service.evidence.report import ReportContext, ReportFonts, find_fonts, render_report
from service.evidence.signing import EvidenceSigner

ExportFormat = Literal["json", "csv", "pdf", "bundle"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("json", "csv", "pdf", "bundle")

_MEDIA_TYPES: dict[ExportFormat, tuple[str, str]] = {
    "json": ("application/json", "json"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "pdf": ("application/pdf", "pdf"),
    "bundle": ("application/zip", "zip"),
}


@dataclass(frozen=True)
class Export:
    """One exported file: its bytes, its name and type, and the digest the audit log records."""

    filename: str
    media_type: str
    data: bytes
    sha256: str
    evidence_digest: str


@dataclass(frozen=True)
class ExportInfo:
    """Who exports, when, with what software, and the audit log's head just before."""

    name: str  # the file's name without extension
    exported_at: str
    exported_by: str
    software: dict[str, str]
    audit_head: dict[str, Any] | None


class EvidenceExporter:
    def __init__(self, *, key_file: Path, font_dirs: list[Path]) -> None:
        self.signer = EvidenceSigner(key_file)
        self._font_dirs = list(font_dirs)
        self._fonts: ReportFonts | None = None

    def fonts(self) -> ReportFonts:
        if self._fonts is None:
            self._fonts = find_fonts(self._font_dirs)
        return self._fonts

    def public_key(self) -> dict[str, str]:
        return {
            "algorithm": "Ed25519",
            "public_key_pem": self.signer.public_key_pem,
            "fingerprint": self.signer.fingerprint,
        }

    def export(self, evidence: EvidenceSet, fmt: ExportFormat, *, info: ExportInfo) -> Export:
        """The evidence as `fmt`: json (every capture), csv (one row per item), pdf (the
        report) or bundle (all of those, the avatars and a signed manifest, as a ZIP)."""
        files = evidence_files(evidence)
        digests = {path: sha256_hex(data) for path, data in files.items()}
        digest = evidence_digest(digests)
        if fmt == "json":
            data = case_json(evidence)
        elif fmt == "csv":
            data = items_csv(evidence)
        else:
            report = render_report(
                evidence,
                ReportContext(
                    generated_at=info.exported_at,
                    generated_by=info.exported_by,
                    software=info.software,
                    evidence_digest=digest,
                    file_digests=digests,
                    key_fingerprint=self.signer.fingerprint,
                ),
                fonts=self.fonts(),
            )
            if fmt == "pdf":
                data = report
            else:
                data = build_bundle(
                    BundleFiles(
                        report=report,
                        evidence=files,
                        manifest_fields={
                            "case_id": evidence.case.get("id"),
                            "exported_at": info.exported_at,
                            "exported_by": info.exported_by,
                            "software": info.software,
                            "audit_head": info.audit_head,
                        },
                    ),
                    signer=self.signer,
                )
        media_type, extension = _MEDIA_TYPES[fmt]
        suffix = "-evidence" if fmt == "bundle" else ""
        return Export(
            filename=f"{info.name}{suffix}.{extension}",
            media_type=media_type,
            data=data,
            sha256=sha256_hex(data),
            evidence_digest=digest,
        )
