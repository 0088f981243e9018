"""The PDF report of a case: a cover, a page per item, and an appendix on verification.

Set with fpdf2 in Noto fonts with HarfBuzz shaping, so names in any script (Latin, Cyrillic,
Greek, Arabic, Hebrew, Devanagari, Thai, CJK) and emoji render. The fonts come from Debian's
packages (fonts-noto-core, fonts-noto-cjk, fonts-noto-color-emoji), installed by the Docker
image and CI; the service never downloads one.
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image, ImageOps

from models.errors import ConfigurationError
from service.evidence.differences import FieldComparison, compare_records
from service.evidence.exports import EvidenceItem, EvidenceSet
from service.store.store import AvatarBlob

logger = logging.getLogger(__name__)

# Font files by the role they play: the body faces first, then the fallbacks that cover the
# scripts and symbols Noto Sans lacks, in the order they are tried.
REQUIRED_FONTS = {
    "sans": "NotoSans-Regular.ttf",
    "sans-bold": "NotoSans-Bold.ttf",
    "arabic": "NotoSansArabic-Regular.ttf",
    "cjk": "NotoSansCJK-Regular.ttc",
    "emoji": "NotoColorEmoji.ttf",
}
OPTIONAL_FONTS = {
    "hebrew": "NotoSansHebrew-Regular.ttf",
    "devanagari": "NotoSansDevanagari-Regular.ttf",
    "thai": "NotoSansThai-Regular.ttf",
    "armenian": "NotoSansArmenian-Regular.ttf",
    "georgian": "NotoSansGeorgian-Regular.ttf",
    "symbols": "NotoSansSymbols-Regular.ttf",
    "symbols2": "NotoSansSymbols2-Regular.ttf",
}
FALLBACK_ORDER = (
    "arabic",
    "hebrew",
    "devanagari",
    "thai",
    "armenian",
    "georgian",
    "cjk",
    "emoji",
    "symbols",
    "symbols2",
)
FONT_PACKAGES = "fonts-noto-core, fonts-noto-cjk and fonts-noto-color-emoji"

AVATAR_MM = 55.0
# A table row must fit on one page, so long values (a 10,000-character bio, long notes, many
# earlier captures) are cut in the report; case.json always holds them whole.
MAX_CELL_CHARS = 900
MAX_PAIR_CHARS = 2_000
MAX_EARLIER_SHOWN = 10
GREY = (90, 90, 90)
MARK_COLOURS = {
    "same": (40, 110, 40),
    "look-alike": (170, 0, 0),
    "differs": (170, 80, 0),
    "only victim": (90, 90, 90),
    "only clone": (90, 90, 90),
}


@dataclass(frozen=True)
class ReportFonts:
    paths: dict[str, Path]


@lru_cache(maxsize=8)
def _find_fonts(dirs: tuple[Path, ...]) -> dict[str, Path]:
    wanted = {**REQUIRED_FONTS, **OPTIONAL_FONTS}
    by_file = {file: role for role, file in wanted.items()}
    found: dict[str, Path] = {}
    for folder in dirs:
        for root, _, files in os.walk(folder):
            for file in files:
                role = by_file.get(file)
                if role is not None and role not in found:
                    found[role] = Path(root) / file
    return found


def find_fonts(dirs: list[Path]) -> ReportFonts:
    """The report's fonts, found under `dirs` (walked once per process).

    Raises ConfigurationError naming the packages to install when a required one is missing.
    """
    found = _find_fonts(tuple(dirs))
    missing = sorted(REQUIRED_FONTS[role] for role in REQUIRED_FONTS if role not in found)
    if missing:
        raise ConfigurationError(
            f"PDF reports need the Noto fonts, and {', '.join(missing)} were not found under "
            f"{', '.join(str(d) for d in dirs)}: install Debian's {FONT_PACKAGES} "
            "(or set CLONEFINDER_PDF_FONT_DIRS to the folders that hold them)"
        )
    return ReportFonts(paths=found)


@dataclass(frozen=True)
class ReportContext:
    """What the report states beside the evidence itself."""

    generated_at: str
    generated_by: str
    software: dict[str, str]
    evidence_digest: str
    file_digests: dict[str, str]
    key_fingerprint: str


class _Report(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("sans", size=7)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self._footer_text} · page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def render_report(evidence: EvidenceSet, context: ReportContext, *, fonts: ReportFonts) -> bytes:
    """The case's PDF report, as bytes."""
    case = evidence.case
    pdf = _Report(f"clonefinder evidence report · case {case.get('id') or '-'}")
    pdf.set_title(f"Evidence report: {case.get('title', '')}")
    pdf.set_creator(f"clonefinder {context.software.get('clonefinder', '')}")
    pdf.set_auto_page_break(True, margin=16)
    pdf.set_margins(15, 15, 15)
    pdf.add_font("sans", "", fonts.paths["sans"])
    pdf.add_font("sans", "B", fonts.paths["sans-bold"])
    fallbacks = []
    for role in FALLBACK_ORDER:
        path = fonts.paths.get(role)
        if path is not None:
            pdf.add_font(role, "", path)
            fallbacks.append(role)
    pdf.set_fallback_fonts(fallbacks, exact_match=False)
    pdf.set_text_shaping(True)

    _cover(pdf, evidence, context)
    for number, item in enumerate(evidence.items, start=1):
        _item_page(pdf, evidence, item, number)
    _appendix(pdf, evidence, context)
    return bytes(pdf.output())


# -- pages ----------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters in case.json)"


def _heading(pdf: FPDF, text: str, *, size: float = 16) -> None:
    pdf.set_font("sans", "B", size)
    pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(2)
    pdf.set_font("sans", size=10)


def _line(pdf: FPDF, text: str, *, size: float = 10, bold: bool = False) -> None:
    pdf.set_font("sans", "B" if bold else "", size)
    pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")


def _pairs(pdf: FPDF, rows: list[tuple[str, str]], *, widths: tuple[int, int] = (45, 135)) -> None:
    pdf.set_font("sans", size=9)
    with pdf.table(
        col_widths=widths,
        text_align="LEFT",
        line_height=4.8,
        first_row_as_headings=False,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        for key, value in rows:
            row = table.row()
            row.cell(_clip(key, MAX_CELL_CHARS), style=FontFace(emphasis="BOLD"))
            row.cell(_clip(value, MAX_PAIR_CHARS))
    pdf.ln(3)


def _victim_of(evidence: EvidenceSet) -> dict[str, Any]:
    for item in reversed(evidence.items):
        record = item.latest.content.get("victim", {}).get("record")
        if record:
            return dict(record)
    victim: dict[str, Any] = evidence.case.get("victim") or {}
    return victim


def _cover(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
    case = evidence.case
    pdf.add_page()
    _heading(pdf, "Evidence report: impersonating accounts", size=18)
    _line(pdf, str(case.get("title") or ""), size=13, bold=True)
    pdf.ln(3)
    victim = _victim_of(evidence)
    captures = [c for item in evidence.items for c in item.captures]
    times = sorted(str(c.content.get("captured_at")) for c in captures)
    labels = Counter(str(item.latest.content.get("label")) for item in evidence.items)
    statuses = Counter(item.status for item in evidence.items)
    rows = [
        ("case", f"{case.get('id') or 'not stored (a check exported)'}"),
        ("status", str(case.get("status", ""))),
        ("victim", f"{victim.get('platform', '')}/@{victim.get('handle', '')}"),
        ("victim's name", str(victim.get("display_name") or "")),
        ("opened", str(case.get("created_at") or "")),
        ("last changed", str(case.get("updated_at") or "")),
        ("captures made", f"{times[0]} to {times[-1]}" if times else "none"),
        ("report generated", f"{context.generated_at} by {context.generated_by}"),
        ("accounts", str(len(evidence.items))),
        ("captures", str(len(captures))),
        ("by label", ", ".join(f"{n} {label}" for label, n in sorted(labels.items())) or "-"),
        ("by status", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "-"),
    ]
    if case.get("notes"):
        rows.append(("notes", str(case["notes"])))
    _pairs(pdf, rows)

    _line(pdf, "Software and models", size=11, bold=True)
    versions: dict[str, set[str]] = {}
    for capture in captures:
        for name, version in (capture.content.get("versions") or {}).items():
            versions.setdefault(name, set()).add(str(version))
    rows = [(name, ", ".join(sorted(found))) for name, found in sorted(versions.items())]
    rows.append(("this report", f"clonefinder {context.software.get('clonefinder', '')}"))
    _pairs(pdf, rows)

    if evidence.items:
        _line(pdf, "Accounts", size=11, bold=True)
        pdf.set_font("sans", size=9)
        with pdf.table(
            col_widths=(10, 70, 25, 35, 40),
            text_align="LEFT",
            line_height=4.8,
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            header = table.row()
            for title in ("#", "account", "score", "label", "status"):
                header.cell(title)
            for number, item in enumerate(evidence.items, start=1):
                content = item.latest.content
                clone = content.get("clone", {}).get("record", {})
                row = table.row()
                row.cell(str(number))
                row.cell(f"{clone.get('platform', '')}/@{clone.get('handle', '')}")
                row.cell(f"{content.get('score', 0):.3f}")
                row.cell(str(content.get("label", "")))
                row.cell(item.status)


def _avatar_image(blob: AvatarBlob | None) -> Image.Image | None:
    if blob is None:
        return None
    try:
        with Image.open(io.BytesIO(blob.data)) as opened:
            image = ImageOps.exif_transpose(opened)
            return image.convert("RGB")
    except (OSError, ValueError) as exc:  # checked when captured; never fail a report on it
        logger.warning("avatar %s cannot be drawn: %s", blob.sha256, exc)
        return None


def _avatar_box(pdf: FPDF, x: float, y: float, blob: AvatarBlob | None, caption: str) -> None:
    image = _avatar_image(blob)
    if image is None:
        pdf.set_draw_color(*GREY)
        pdf.rect(x, y, AVATAR_MM, AVATAR_MM)
        pdf.set_xy(x, y + AVATAR_MM / 2 - 3)
        pdf.set_font("sans", size=9)
        pdf.cell(AVATAR_MM, 6, "no avatar", align="C")
    else:
        pdf.image(image, x=x, y=y, w=AVATAR_MM, h=AVATAR_MM, keep_aspect_ratio=True)
    pdf.set_xy(x, y + AVATAR_MM + 1)
    pdf.set_font("sans", "B", 9)
    pdf.cell(AVATAR_MM, 5, caption, align="C")


def _item_page(pdf: FPDF, evidence: EvidenceSet, item: EvidenceItem, number: int) -> None:
    content = item.latest.content
    victim = content.get("victim", {})
    clone = content.get("clone", {})
    clone_record = clone.get("record", {})
    victim_record = victim.get("record", {})
    pdf.add_page()
    _heading(
        pdf, f"Account {number}: {clone_record.get('platform', '')}/@{clone_record.get('handle')}"
    )
    _line(
        pdf,
        f"score {content.get('score', 0):.3f} · {content.get('label', '')} · the likely copy: "
        f"{content.get('likely_impersonator', '')} · status {item.status}",
        size=11,
        bold=True,
    )
    pdf.ln(2)

    top = pdf.get_y()
    left = pdf.l_margin
    right = pdf.w - pdf.r_margin - AVATAR_MM
    victim_avatar = evidence.avatars.get((victim.get("avatar") or {}).get("sha256", ""))
    clone_avatar = evidence.avatars.get((clone.get("avatar") or {}).get("sha256", ""))
    victim_name = f"victim: @{victim_record.get('handle', '')}"
    _avatar_box(pdf, left, top, victim_avatar, victim_name)
    _avatar_box(pdf, right, top, clone_avatar, f"clone: @{clone_record.get('handle', '')}")
    pdf.set_xy(left, top + AVATAR_MM + 8)

    _comparison(pdf, compare_records(victim_record, clone_record))

    _line(pdf, "Why", size=11, bold=True)
    pdf.set_font("sans", size=9)
    for reason in content.get("reasons") or ["(no reasons given)"]:
        pdf.multi_cell(0, 4.6, f"• {reason}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    signals = content.get("signals") or {}
    shown = ", ".join(
        f"{name} {'-' if value is None else f'{value:.2f}'}" for name, value in signals.items()
    )
    pdf.multi_cell(0, 4.6, f"Signals: {shown}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(2)

    _line(pdf, "Capture", size=11, bold=True)
    rows = [
        ("captured at", str(content.get("captured_at", ""))),
        ("source", str(content.get("source", ""))),
        ("source address", str(content.get("source_url") or "-")),
        ("capture SHA-256", item.latest.sha256),
        ("clone avatar SHA-256", str((clone.get("avatar") or {}).get("sha256") or "-")),
        ("victim avatar SHA-256", str((victim.get("avatar") or {}).get("sha256") or "-")),
        (
            "versions",
            ", ".join(f"{k} {v}" for k, v in sorted((content.get("versions") or {}).items())),
        ),
    ]
    if item.notes:
        rows.append(("notes", item.notes))
    earlier = item.captures[:-1]
    if earlier:
        shown = "; ".join(
            f"{c.content.get('captured_at')} SHA-256 {c.sha256}"
            for c in earlier[-MAX_EARLIER_SHOWN:]
        )
        if len(earlier) > MAX_EARLIER_SHOWN:
            shown += f"; and {len(earlier) - MAX_EARLIER_SHOWN} earlier (see the appendix)"
        rows.append(("earlier captures", shown))
    _pairs(pdf, rows)


def _comparison(pdf: FPDF, fields: list[FieldComparison]) -> None:
    _line(pdf, "Field by field", size=11, bold=True)
    pdf.set_font("sans", size=8.5)
    with pdf.table(
        col_widths=(26, 66, 66, 22),
        text_align="LEFT",
        line_height=4.4,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        header = table.row()
        for title in ("field", "victim", "clone", ""):
            header.cell(title)
        for field in fields:
            row = table.row()
            row.cell(field.label, style=FontFace(emphasis="BOLD"))
            row.cell(_clip(field.victim, MAX_CELL_CHARS))
            clone = _clip(field.clone, MAX_CELL_CHARS)
            if field.notes:
                clone += "\n" + "\n".join(f"▸ {note}" for note in field.notes)
            colour = MARK_COLOURS[field.mark] if field.mark != "same" else None
            row.cell(clone, style=FontFace(color=colour) if colour else None)
            row.cell(field.mark, style=FontFace(emphasis="BOLD", color=MARK_COLOURS[field.mark]))
    pdf.ln(3)


def _appendix(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
    pdf.add_page()
    _heading(pdf, "Appendix: digests and how to verify them")
    _line(pdf, "Manifest digest (of the evidence files below):", size=10, bold=True)
    _line(pdf, context.evidence_digest, size=10, bold=True)
    pdf.ln(2)
    pdf.set_font("sans", size=9)
    text = (
        "This report is one file of an evidence bundle (a ZIP archive) that also holds the "
        "case's data as JSON (case.json, every capture), a CSV with one row per account "
        "(items.csv), every avatar exactly as captured (avatars/, each named by its SHA-256), "
        "the service's public key (public_key.pem) and manifest.json, which lists the SHA-256 "
        "of every file and, as evidence_digest, the manifest digest above: the SHA-256 of the "
        "JSON object that maps each evidence file's path to its SHA-256 (keys sorted, no "
        "spaces, UTF-8). manifest.sig is the Ed25519 signature of manifest.json by the key "
        f"with fingerprint {context.key_fingerprint}, and the archive's comment signs the "
        "archive's bytes, so one changed byte anywhere shows."
    )
    pdf.multi_cell(0, 4.6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(2)
    steps = [
        "1. Run: clonefinder evidence verify BUNDLE.zip. It checks the signature of the "
        "archive and of manifest.json, recomputes the SHA-256 of every file and of every "
        "capture, and names each one that does not match.",
        "2. Compare the key fingerprint it prints with the one the service publishes at "
        "GET /v1/evidence/public-key (the bundle's own key proves nothing by itself).",
        "3. Without clonefinder: sha256sum each file and compare with manifest.json; then "
        "base64 -d manifest.sig > manifest.sig.bin and openssl pkeyutl -verify -pubin "
        "-inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig.bin.",
        "4. A capture's SHA-256 is that of its content (case.json, items[].captures[].content) "
        "written as JSON with sorted keys, no spaces, UTF-8.",
    ]
    for step in steps:
        pdf.multi_cell(0, 4.6, step, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(3)
    _line(pdf, "Evidence files", size=11, bold=True)
    _pairs(pdf, sorted(context.file_digests.items()), widths=(85, 95))
    _line(pdf, "Captures", size=11, bold=True)
    rows = []
    for number, item in enumerate(evidence.items, start=1):
        for capture in item.captures:
            rows.append(
                (
                    f"account {number}, {capture.content.get('captured_at')}",
                    capture.sha256,
                )
            )
    _pairs(pdf, rows or [("-", "no captures")], widths=(85, 95))
