"""The PDF report of a case: a cover, a page per item, and an appendix on verification.

Set with fpdf2 in Noto fonts with HarfBuzz shaping, so names in any script (Latin, Cyrillic,
Greek, Arabic, Hebrew, Devanagari, Thai, CJK) and emoji render. The fonts come from Debian's
packages (fonts-noto-core, fonts-noto-cjk, fonts-noto-color-emoji), installed by the Docker
image and CI; the service never downloads one.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image, ImageOps

from models.errors import ConfigurationError
from models.reasons import explanations_of
from service.evidence.differences import COMPARED_FIELDS, FieldComparison, compare_records
from service.evidence.exports import EvidenceItem, EvidenceSet
from service.evidence.plain_words import (
    COPY_LABELS,
    SCORE_MEANING,
    impersonation_form,
    label_words,
    likely_copy_words,
)
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
FONT_PACKAGE_NAMES = ("fonts-noto-core", "fonts-noto-cjk", "fonts-noto-color-emoji")
FONT_PACKAGES = f"{', '.join(FONT_PACKAGE_NAMES[:-1])} and {FONT_PACKAGE_NAMES[-1]}"

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


class MissingFontsError(ConfigurationError):
    """A font the report needs is not installed. `message` names the files and the folders
    searched, for whoever runs the service; `for_people` says it in one plain sentence."""

    def __init__(self, missing: list[str], dirs: list[Path]) -> None:
        super().__init__(
            f"PDF reports need the Noto fonts, and {', '.join(missing)} were not found under "
            f"{', '.join(str(d) for d in dirs)}: install Debian's {FONT_PACKAGES} "
            "(or set CLONEFINDER_PDF_FONT_DIRS to the folders that hold them)"
        )
        self.missing = missing

    @property
    def for_people(self) -> str:
        return (
            "The PDF cannot be made because the fonts it is printed in are not installed on "
            "the computer that runs clonefinder: install them with "
            f"'sudo apt-get install {' '.join(FONT_PACKAGE_NAMES)}', then try again."
        )


# Complete sets of fonts, by the folders they were found under. A search that missed a
# required font is not kept: the next export searches again, so fonts installed while the
# service runs are found without a restart.
_FOUND_FONTS: dict[tuple[Path, ...], ReportFonts] = {}


def _search_fonts(dirs: tuple[Path, ...]) -> dict[str, Path]:
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
    """The report's fonts, found under `dirs` (walked until every required font is found,
    then kept for the process).

    Raises MissingFontsError naming the packages to install when a required one is missing.
    """
    key = tuple(dirs)
    fonts = _FOUND_FONTS.get(key)
    if fonts is None:
        found = _search_fonts(key)
        missing = sorted(REQUIRED_FONTS[role] for role in REQUIRED_FONTS if role not in found)
        if missing:
            raise MissingFontsError(missing, dirs)
        fonts = _FOUND_FONTS.setdefault(key, ReportFonts(paths=found))
    return fonts


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
    """The case's PDF report, as bytes.

    A case's report is a lawyer's: a cover with the case's facts, a page per account, an
    appendix on verification. A check's report is for the person checked, in plain words:
    a first page that says who was checked, when, what was found and what to do with the
    report, a page per account, and every technical detail in a final appendix.
    """
    case = evidence.case
    if evidence.is_check:
        footer = f"clonefinder report on {_who(_victim_of(evidence))}"
    else:
        footer = f"clonefinder evidence report · case {case.get('id') or '-'}"
    pdf = _Report(footer)
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

    if evidence.is_check:
        _first_page(pdf, evidence, context)
        for number, item in enumerate(evidence.items, start=1):
            _account_page(pdf, evidence, item, number)
        _technical_appendix(pdf, evidence, context)
    else:
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

    _avatars_side_by_side(
        pdf,
        evidence,
        content,
        (
            f"victim: @{victim_record.get('handle', '')}",
            f"clone: @{clone_record.get('handle', '')}",
        ),
    )
    _comparison(pdf, compare_records(victim_record, clone_record))

    _line(pdf, "Why", size=11, bold=True)
    _technical_reasons(pdf, content)
    pdf.ln(2)

    _line(pdf, "Capture", size=11, bold=True)
    _pairs(pdf, _capture_rows(item))


def _avatars_side_by_side(
    pdf: FPDF, evidence: EvidenceSet, content: dict[str, Any], captions: tuple[str, str]
) -> None:
    """The victim's avatar at the left, the clone's at the right, each with its caption."""
    top = pdf.get_y()
    left = pdf.l_margin
    right = pdf.w - pdf.r_margin - AVATAR_MM
    for side, x, caption in (("victim", left, captions[0]), ("clone", right, captions[1])):
        sha256 = (content.get(side, {}).get("avatar") or {}).get("sha256", "")
        _avatar_box(pdf, x, top, evidence.avatars.get(sha256), caption)
    pdf.set_xy(left, top + AVATAR_MM + 8)


def _technical_reasons(pdf: FPDF, content: dict[str, Any]) -> None:
    """A capture's reasons as the scorer states them, and its signals."""
    pdf.set_font("sans", size=9)
    for reason in content.get("reasons") or ["(no reasons given)"]:
        pdf.multi_cell(0, 4.6, f"• {reason}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    signals = content.get("signals") or {}
    shown = ", ".join(
        f"{name} {'-' if value is None else f'{value:.2f}'}" for name, value in signals.items()
    )
    pdf.multi_cell(0, 4.6, f"Signals: {shown}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")


def _capture_rows(item: EvidenceItem) -> list[tuple[str, str]]:
    """Where, when and from what an item's latest capture was made, with its digests."""
    content = item.latest.content
    clone = content.get("clone", {})
    victim = content.get("victim", {})
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
    return rows


def _comparison(
    pdf: FPDF,
    fields: list[FieldComparison],
    *,
    sides: tuple[str, str] = ("victim", "clone"),
    mark_names: dict[str, str] | None = None,
) -> None:
    _line(pdf, "Field by field", size=11, bold=True)
    pdf.set_font("sans", size=8.5)
    with pdf.table(
        col_widths=(26, 66, 66, 22),
        text_align="LEFT",
        line_height=4.4,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        header = table.row()
        for title in ("field", *sides, ""):
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
            shown = (mark_names or {}).get(field.mark, field.mark)
            row.cell(shown, style=FontFace(emphasis="BOLD", color=MARK_COLOURS[field.mark]))
    pdf.ln(3)


def _appendix(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
    pdf.add_page()
    _heading(pdf, "Appendix: digests and how to verify them")
    _verification(pdf, evidence, context)


def _verification(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
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


# -- the report of a check, for the person checked ----------------------------------------------

# What the account pages show of the two records: the avatars' digests are in the appendix.
PERSON_FIELDS = tuple((name, label) for name, label in COMPARED_FIELDS if name != "avatar_sha256")
PERSON_SIDES = ("yours", "this account")
PERSON_MARK_NAMES = {"only victim": "only yours", "only clone": "only theirs"}
APPENDIX_TITLE = "Appendix: technical details"


def _who(record: dict[str, Any]) -> str:
    """The checked identity as a person names it: "Jane Rivera (@jane_rivera on twitter)"."""
    handle = f"@{record.get('handle')}" if record.get("handle") else ""
    account = f"{handle} on {record['platform']}" if handle and record.get("platform") else handle
    name = str(record.get("display_name") or "").strip()
    if name and account:
        return f"{name} ({account})"
    return name or account or "an identity"


def _to_the_minute(moment: Any) -> str:
    """An RFC 3339 time as a person reads it: "21 November 2026, 08:00 UTC"."""
    try:
        parsed = datetime.fromisoformat(str(moment))
    except ValueError:
        return str(moment or "")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return f"{parsed.day} {parsed:%B %Y, %H:%M} UTC"


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _found(evidence: EvidenceSet) -> str:
    """What the check found, in one sentence."""
    labels = Counter(str(item.latest.content.get("label")) for item in evidence.items)
    copies = sum(labels[label] for label in COPY_LABELS)
    others = len(evidence.items) - copies
    if copies:
        kinds = ", ".join(
            f"{labels[label]} {label_words(label)}" for label in COPY_LABELS if labels[label]
        )
        found = (
            f"{_plural(copies, 'account looks', 'accounts look')} like "
            f"{'a copy' if copies == 1 else 'copies'} of you ({kinds})."
        )
    else:
        found = "No account looks like a copy of you."
    if others:
        found += f" {_plural(others, 'other account was', 'other accounts were')} compared too: "
        found += "probably not copies."
    return found


def _first_page(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
    """Who was checked, when, what was found and what to do with this report."""
    pdf.add_page()
    who = _who(_victim_of(evidence))
    _heading(pdf, "Accounts that copy you: a clonefinder report", size=18)
    _pairs(
        pdf,
        [
            ("Who was checked", who),
            ("When", _to_the_minute(context.generated_at)),
            ("What was found", _found(evidence)),
        ],
    )
    _line(pdf, "What to do with this report", size=11, bold=True)
    pdf.set_font("sans", size=10)
    if evidence.items:
        advice = (
            "Report each account to its platform as an account that pretends to be you, "
            "through the platform's impersonation form, and attach this PDF to the form. "
            "The next pages show each account beside yours: what it copies and why it looks "
            "like a copy. The appendix at the end holds the technical details that let the "
            "platform, or a lawyer, check this report."
        )
    else:
        advice = (
            "Keep it: it records that no account copying you was found on this date. Check "
            "again from time to time, or ask clonefinder to watch your identity."
        )
    pdf.multi_cell(0, 5, advice, new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(2)
    platforms = sorted(
        {str(_clone_record(item).get("platform") or "") for item in evidence.items} - {""}
    )
    if platforms:
        _line(pdf, "Where to report", size=11, bold=True)
        _pairs(
            pdf,
            [
                (
                    platform,
                    impersonation_form(platform)
                    or 'use "Report" on the account\'s own page and choose impersonation',
                )
                for platform in platforms
            ],
        )
    if evidence.items:
        _line(pdf, "The accounts, one page each", size=11, bold=True)
        pdf.set_font("sans", size=9)
        with pdf.table(
            col_widths=(10, 95, 75),
            text_align="LEFT",
            line_height=4.8,
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            header = table.row()
            for title in ("#", "account", SCORE_MEANING):
                header.cell(title)
            for number, item in enumerate(evidence.items, start=1):
                content = item.latest.content
                row = table.row()
                row.cell(str(number))
                row.cell(_account_name(_clone_record(item)))
                row.cell(_how_sure(content))


def _clone_record(item: EvidenceItem) -> dict[str, Any]:
    record: dict[str, Any] = item.latest.content.get("clone", {}).get("record", {})
    return record


def _account_name(record: dict[str, Any]) -> str:
    return f"@{record.get('handle', '')} on {record.get('platform', '')}"


def _how_sure(content: dict[str, Any]) -> str:
    # Cut, not rounded: a score of 0.999 is not a certainty, and "1.00" would say it is.
    score = math.floor(float(content.get("score") or 0) * 100) / 100
    return f"{label_words(content.get('label'))} ({score:.2f} of 1)"


def _account_page(pdf: FPDF, evidence: EvidenceSet, item: EvidenceItem, number: int) -> None:
    """One account beside the person's own: photos, fields, why it looks like a copy."""
    content = item.latest.content
    clone_record = _clone_record(item)
    victim_record = content.get("victim", {}).get("record", {})
    pdf.add_page()
    _heading(pdf, f"Account {number}: {_account_name(clone_record)}")
    _line(pdf, f"{SCORE_MEANING.capitalize()}: {_how_sure(content)}", size=11, bold=True)
    _line(pdf, likely_copy_words(content.get("likely_impersonator")), size=10)
    pdf.ln(2)
    _avatars_side_by_side(
        pdf,
        evidence,
        content,
        (
            f"you: @{victim_record.get('handle', '')}",
            f"this account: @{clone_record.get('handle', '')}",
        ),
    )
    _comparison(
        pdf,
        compare_records(victim_record, clone_record, original="yours", fields=PERSON_FIELDS),
        sides=PERSON_SIDES,
        mark_names=PERSON_MARK_NAMES,
    )
    _line(pdf, "Why it looks like a copy", size=11, bold=True)
    pdf.set_font("sans", size=10)
    for reason in explanations_of(content.get("reasons") or []):
        pdf.multi_cell(0, 5, f"• {reason.text}", new_x=XPos.LMARGIN, new_y=YPos.NEXT, align="L")
    pdf.ln(2)
    seen = f"Seen on {_to_the_minute(content.get('captured_at'))}"
    if content.get("source_url"):
        seen += f" at {content['source_url']}"
    _line(pdf, seen + ".", size=10)
    if item.notes:
        _line(pdf, f"Notes: {_clip(item.notes, MAX_PAIR_CHARS)}", size=10)
    pdf.set_text_color(*GREY)
    _line(pdf, f"The technical details of account {number} are in the appendix.", size=9)
    pdf.set_text_color(0, 0, 0)


def _technical_appendix(pdf: FPDF, evidence: EvidenceSet, context: ReportContext) -> None:
    """Everything technical: the software, each account's reasons as the scorer states
    them, its signals and digests, and how to verify the report."""
    pdf.add_page()
    _heading(pdf, APPENDIX_TITLE)
    pdf.set_font("sans", size=9)
    pdf.multi_cell(
        0,
        4.6,
        "For the platform, a lawyer or anyone who checks this report: how each account was "
        "scored, by what software, and the digests that prove the report unchanged.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
        align="L",
    )
    pdf.ln(2)
    _line(pdf, "This report", size=11, bold=True)
    versions: dict[str, set[str]] = {}
    for item in evidence.items:
        for capture in item.captures:
            for name, version in (capture.content.get("versions") or {}).items():
                versions.setdefault(name, set()).add(str(version))
    _pairs(
        pdf,
        [
            ("report generated", f"{context.generated_at} by {context.generated_by}"),
            *((name, ", ".join(sorted(found))) for name, found in sorted(versions.items())),
            ("this report", f"clonefinder {context.software.get('clonefinder', '')}"),
        ],
    )
    for number, item in enumerate(evidence.items, start=1):
        content = item.latest.content
        _line(pdf, f"Account {number}: {_account_name(_clone_record(item))}", size=11, bold=True)
        _line(
            pdf,
            f"score {float(content.get('score') or 0):.3f} · {content.get('label', '')} · the "
            f"likely copy: {content.get('likely_impersonator', '')}",
            size=9,
        )
        _technical_reasons(pdf, content)
        pdf.ln(1)
        _pairs(pdf, _capture_rows(item))
    _line(pdf, "Digests and how to verify them", size=11, bold=True)
    _verification(pdf, evidence, context)
