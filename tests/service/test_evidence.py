"""Evidence exports without a server: the PDF read as a person reads it (pdftotext, and its
first account page rendered by pdftoppm), signed bundles through `verify` (every kind of
member tampered with), the CSV's columns and the field comparison's code points."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import subprocess
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from models.errors import ConfigurationError
from service.core.settings import Settings
from service.evidence import EvidenceExporter, ExportInfo
from service.evidence.bundle import ARCHIVE_SIGNATURE_PREFIX, MANIFEST, verify_bundle
from service.evidence.differences import character_differences, compare_records
from service.evidence.exports import (
    CSV_COLUMNS,
    CaptureView,
    EvidenceItem,
    EvidenceSet,
    capture_digest,
)
from service.evidence.report import MissingFontsError
from service.evidence.signing import EvidenceSigner
from service.store.store import AvatarBlob
from tests.images import jpeg_bytes, photo

POPPLER = shutil.which("pdftotext") and shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(
    not POPPLER, reason="pdftotext/pdftoppm not installed (Debian package poppler-utils)"
)

VICTIM_AVATAR = jpeg_bytes(photo(11, size=160))
CLONE_AVATAR = jpeg_bytes(photo(12, size=160))


def _blob(data: bytes) -> AvatarBlob:
    import hashlib

    return AvatarBlob(
        sha256=hashlib.sha256(data).hexdigest(), data=data, mime="image/jpeg", width=160, height=160
    )


def _content(victim: dict[str, object], clone: dict[str, object], reasons: list[str]) -> dict:
    return {
        "captured_at": "2026-11-20T10:00:00.000000Z",
        "source": "platform and handle",
        "source_url": f"https://twitter.example/{clone['handle']}",
        "victim": {"record": victim, "avatar": {"sha256": _blob(VICTIM_AVATAR).sha256}},
        "clone": {"record": clone, "avatar": {"sha256": _blob(CLONE_AVATAR).sha256}},
        "score": 0.987,
        "label": "likely_clone",
        "signals": {"avatar": 0.9, "display_name": 1.0, "handle": 0.95, "bio": None},
        "reasons": reasons,
        "likely_impersonator": "candidate",
        "versions": {"clonefinder": "0.1.0", "scoring_model": "test-model"},
    }


VICTIM = {
    "platform": "twitter",
    "handle": "elena_petrova",
    "display_name": "Elena Petrova 🌊",
    "bio": "Морской биолог. Ελένη. محمد. 山田太郎.",
    "avatar_sha256": _blob(VICTIM_AVATAR).sha256,
}
CLONE = {
    "platform": "twitter",
    "handle": "elena_petr0va",
    "display_name": "Elenа Petrova 🌊",  # Cyrillic а
    "bio": "Морской биолог. Ελένη. محمد. 山田太郎. DM for promo",
    "avatar_sha256": _blob(CLONE_AVATAR).sha256,
}
REASONS = [
    "avatar is a near-copy: 6 of 64 bits differ",
    "display name uses a look-alike letter: 'а' (U+0430 CYRILLIC SMALL LETTER A) looks like 'a'",
]


def evidence_set(**case_overrides: object) -> EvidenceSet:
    content = _content(VICTIM, CLONE, REASONS)
    second = _content(VICTIM, {**CLONE, "handle": "=HYPERLINK(1)", "display_name": None}, [])
    return EvidenceSet(
        case={
            "id": 4,
            "title": "Elena Petrova",
            "status": "open",
            "notes": "",
            "created_at": "2026-11-20T09:00:00Z",
            "updated_at": "2026-11-20T10:00:00Z",
            "victim": {"platform": "twitter", "handle": "elena_petrova"},
            **case_overrides,
        },
        items=[
            EvidenceItem(
                id=1,
                status="reported",
                notes="",
                source="check of the victim",
                captures=[CaptureView(id=1, sha256=capture_digest(content), content=content)],
            ),
            EvidenceItem(
                id=2,
                status="open",
                notes="",
                source="platform and handle",
                captures=[CaptureView(id=2, sha256=capture_digest(second), content=second)],
            ),
        ],
        avatars={b.sha256: b for b in (_blob(VICTIM_AVATAR), _blob(CLONE_AVATAR))},
    )


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> EvidenceExporter:
    folder = tmp_path_factory.mktemp("evidence")
    settings = Settings(data_dir=folder)
    made = EvidenceExporter(
        key_file=settings.resolved_evidence_key_file, font_dirs=settings.pdf_font_dirs
    )
    try:
        made.fonts()
    except ConfigurationError as exc:
        pytest.skip(f"the report's fonts are not installed: {exc.message}")
    return made


INFO = ExportInfo(
    name="case-4",
    exported_at="2026-11-21T08:00:00.000000Z",
    exported_by="alice",
    software={"clonefinder": "0.1.0"},
    audit_head={"seq": 3, "hash": "ab" * 32},
)


@pytest.fixture(scope="module")
def bundle(exporter: EvidenceExporter) -> bytes:
    return exporter.export(evidence_set(), "bundle", info=INFO).data


# -- the comparison a person reads ----------------------------------------------------------------


def test_a_lookalike_letter_is_named_by_its_code_point() -> None:
    rows = {row.label: row for row in compare_records(VICTIM, CLONE)}
    name = rows["display name"]
    assert name.mark == "look-alike"
    assert name.notes == [
        "'а' (U+0430 CYRILLIC SMALL LETTER A) where the victim has 'a' (U+0061 LATIN SMALL "
        "LETTER A)"
    ]
    assert rows["handle"].mark == "look-alike"
    assert rows["bio"].mark == "differs"
    assert rows["platform"].mark == "same"


def test_invisible_and_added_characters_are_spelled_out() -> None:
    assert character_differences("janedoe", "jane\u200bdoe") == ["added (U+200B ZERO WIDTH SPACE)"]
    assert character_differences("jane", "jane_official") == ["added '_official'"]
    assert character_differences("jane", "jаne\u200b") == [
        "'а' (U+0430 CYRILLIC SMALL LETTER A) where the victim has 'a' (U+0061 LATIN SMALL "
        "LETTER A)",
        "added (U+200B ZERO WIDTH SPACE)",
    ]


# -- CSV ------------------------------------------------------------------------------------------


def test_the_csv_has_one_row_per_item_in_the_documented_columns(
    exporter: EvidenceExporter,
) -> None:
    data = exporter.export(evidence_set(), "csv", info=INFO).data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["clone_handle"] for r in rows] == ["elena_petr0va", "'=HYPERLINK(1)"]
    first = rows[0]
    assert first["victim_handle"] == "elena_petrova"
    assert first["clone_display_name"] == "Elenа Petrova 🌊"
    assert first["score"] == "0.9870" and first["signal_bio"] == ""
    assert first["reasons"] == " | ".join(REASONS)
    assert first["capture_sha256"] == evidence_set().items[0].latest.sha256
    assert first["clone_avatar_sha256"] == _blob(CLONE_AVATAR).sha256


# -- the PDF, as a person reads it -----------------------------------------------------------------


@needs_poppler
def test_the_report_text_holds_the_handles_reasons_and_code_points(
    exporter: EvidenceExporter, tmp_path: Path
) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(exporter.export(evidence_set(), "pdf", info=INFO).data)
    raw = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    words = " ".join(raw.split())
    for expected in (
        "elena_petrova",
        "elena_petr0va",
        *REASONS,
        "U+0430 CYRILLIC SMALL LETTER A",
        "U+0030 DIGIT ZERO",
        "Морской биолог",
        "Ελένη",
        "محمد",
        "山田太郎",
        "🌊",
        evidence_set().items[0].latest.sha256,
        "clonefinder evidence verify",
    ):
        assert expected in words, f"{expected!r} not in the report's text"


def _image_regions(png: Path) -> list[tuple[int, int]]:
    """Sizes (width, height in pixels) of the large coloured regions of a rendered page:
    pictures, not text (text is black, grey or a thin coloured line)."""
    page = np.asarray(Image.open(png).convert("HSV"), dtype=np.int32)
    coloured = (page[..., 1] > 40) & (page[..., 2] > 30)
    labels, count = ndimage.label(ndimage.binary_closing(coloured, iterations=2))
    regions = []
    for box in ndimage.find_objects(labels):
        height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
        if width > page.shape[1] * 0.2 and height > page.shape[1] * 0.2:
            regions.append((width, height))
    return regions


@needs_poppler
def test_the_first_account_page_shows_the_two_avatars_side_by_side(
    exporter: EvidenceExporter, tmp_path: Path
) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(exporter.export(evidence_set(), "pdf", info=INFO).data)
    subprocess.run(
        ["pdftoppm", "-f", "2", "-l", "2", "-r", "60", "-png", str(pdf), str(tmp_path / "page")],
        check=True,
    )
    (png,) = tmp_path.glob("page-*2.png")
    regions = _image_regions(png)
    assert len(regions) == 2, regions
    subprocess.run(
        ["pdftoppm", "-f", "1", "-l", "1", "-r", "60", "-png", str(pdf), str(tmp_path / "cov")],
        check=True,
    )
    (cover_png,) = tmp_path.glob("cov-*1.png")
    assert _image_regions(cover_png) == []  # the cover has no picture: the count means it


def test_a_case_with_long_texts_and_many_captures_still_makes_a_report(
    exporter: EvidenceExporter,
) -> None:
    long_bio = "Ceramicist in Malmö, " * 480  # near the 10,000-character limit of a bio
    content = _content({**VICTIM, "bio": long_bio}, {**CLONE, "bio": long_bio + "!"}, REASONS)
    view = CaptureView(id=1, sha256=capture_digest(content), content=content)
    evidence = evidence_set(notes="n" * 20_000)
    evidence.items[0].captures[:] = [view] * 40
    pdf = exporter.export(evidence, "pdf", info=INFO).data
    assert pdf.startswith(b"%PDF")


def test_a_missing_font_is_a_clear_configuration_error(tmp_path: Path) -> None:
    made = EvidenceExporter(key_file=tmp_path / "k", font_dirs=[tmp_path])
    with pytest.raises(ConfigurationError, match="fonts-noto-core"):
        made.fonts()


# -- bundles ---------------------------------------------------------------------------------------


def test_a_bundle_round_trips_through_verify(bundle: bytes, exporter: EvidenceExporter) -> None:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        names = set(archive.namelist())
    assert {"report.pdf", "case.json", "items.csv", "manifest.json", "manifest.sig"} <= names
    assert {f"avatars/{_blob(a).sha256}.jpg" for a in (VICTIM_AVATAR, CLONE_AVATAR)} <= names
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    assert report.files_checked == len(names) - 2
    assert report.captures_checked == 2
    assert report.key_fingerprint == exporter.signer.fingerprint
    assert report.audit_head == INFO.audit_head


def _rewritten(bundle: bytes, member: str, change: int = 0) -> bytes:
    """The bundle with one byte of `member` changed and the archive rebuilt around it, as a
    forger would (CRCs right, the archive's comment kept)."""
    source = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = bytearray(source.read(info))
            if info.filename == member:
                position = change % len(data)
                data[position] = (data[position] + 1) % 256
                if member.endswith(".pem") or member.endswith(".sig") or member.endswith(".json"):
                    # Keep text readable, so the check must come from digests, not parsing.
                    data[position] = ord("A") if data[position] != ord("A") else ord("B")
            archive.writestr(info, bytes(data))
        archive.comment = source.comment
    return out.getvalue()


@pytest.mark.parametrize(
    ("member", "where"),
    [
        ("report.pdf", 2000),
        ("case.json", 200),
        ("items.csv", 300),
        ("avatars/{victim}.jpg", 500),
        ("public_key.pem", 40),
        ("manifest.json", 300),
        ("manifest.sig", 10),
    ],
)
def test_one_changed_byte_in_any_member_fails_verify_and_names_it(
    bundle: bytes, member: str, where: int
) -> None:
    name = member.format(victim=_blob(VICTIM_AVATAR).sha256)
    report = verify_bundle(_rewritten(bundle, name, where))
    assert not report.ok
    assert name in report.bad_files, report.problems
    assert any(p.startswith(name) for p in report.problems) or name == "manifest.sig"


def test_one_flipped_byte_anywhere_in_the_archive_fails_verify(bundle: bytes) -> None:
    step = max(1, len(bundle) // 97)
    for position in range(0, len(bundle), step):
        damaged = bytearray(bundle)
        damaged[position] ^= 0x01
        assert not verify_bundle(bytes(damaged)).ok, f"byte {position} of {len(bundle)}"


def test_an_archive_without_its_signature_fails(bundle: bytes) -> None:
    signature = bundle.rindex(ARCHIVE_SIGNATURE_PREFIX)
    report = verify_bundle(bundle[:signature] + b"x" * (len(bundle) - signature))
    assert not report.ok


def test_a_bundle_signed_by_another_key_fails_when_the_key_is_pinned(
    bundle: bytes, tmp_path: Path
) -> None:
    other = EvidenceSigner(tmp_path / "other.key")
    report = verify_bundle(bundle, expected_key=other.public_key)
    assert not report.ok
    assert "public_key.pem" in report.bad_files
    assert MANIFEST in report.bad_files


def test_the_signing_key_is_created_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "evidence-signing.key"
    first = EvidenceSigner(path)
    fingerprint = first.fingerprint
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert EvidenceSigner(path).fingerprint == fingerprint  # kept, not made again


def test_signers_creating_the_key_at_once_in_one_process_agree_on_one(tmp_path: Path) -> None:
    """Replicas that all run as PID 1 share the process id, as threads of one process do: each
    must write its new key under a name of its own, and all end up with the one key linked."""
    for attempt in range(5):
        path = tmp_path / f"data{attempt}" / "evidence-signing.key"
        signers = [EvidenceSigner(path) for _ in range(12)]
        start = threading.Barrier(len(signers))
        with ThreadPoolExecutor(len(signers)) as pool:
            fingerprints = set(pool.map(_fingerprint_when_all_ready, signers, [start] * 12))
        assert fingerprints == {EvidenceSigner(path).fingerprint}
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no file left behind


def _fingerprint_when_all_ready(signer: EvidenceSigner, start: threading.Barrier) -> str:
    start.wait()
    return signer.fingerprint


# -- the report of a check, for the person checked ------------------------------------------------

# Words of our own trade that the person's pages must not use: they belong to the appendix.
INTERNAL_TERMS = (
    "victim",
    "candidate",
    "query",
    "not stored",
    "dct64",
    "lr-isotonic",
    "SHA-256",
    "cosine",
    "bits",
    "hash",
    "signals",
    "scoring_model",
)
CHECK_VERSIONS = {
    "clonefinder": "0.1.0",
    "scoring_model": "lr-isotonic-v7",
    "embedding_model": "paraphrase-multilingual-MiniLM-L12-v2",
    "avatar_hashes": "dct64 x 4 views, mirrored",
}
CHECK_REASONS = [
    "avatar is a near-copy: 6 of 64 bits differ",
    "display name uses a look-alike letter: 'а' (U+0430 CYRILLIC SMALL LETTER A) looks like 'a'",
    "bio similar in meaning (cosine similarity 0.81)",
    "the candidate account is newer (created 2026-10-01 vs 2015-03-01)",
]


def check_evidence_set() -> EvidenceSet:
    """What `export_check` makes of a person's check: a case that is not stored."""
    content = {
        **_content(VICTIM, CLONE, CHECK_REASONS),
        "source": "check",
        "versions": CHECK_VERSIONS,
    }
    return EvidenceSet(
        case={
            "id": None,
            "title": "Check of twitter/@elena_petrova",
            "status": "open",
            "notes": "",
            "created_at": "2026-11-21T08:00:00.123456Z",
            "updated_at": "2026-11-21T08:00:00.123456Z",
            "victim": {"platform": "twitter", "handle": "elena_petrova"},
        },
        items=[
            EvidenceItem(
                id=1,
                status="open",
                notes="",
                source="check",
                captures=[CaptureView(id=None, sha256=capture_digest(content), content=content)],
            )
        ],
        avatars={b.sha256: b for b in (_blob(VICTIM_AVATAR), _blob(CLONE_AVATAR))},
    )


CHECK_INFO = ExportInfo(
    name="check",
    exported_at="2026-11-21T08:05:09.654321Z",
    exported_by="web page (local)",
    software={"clonefinder": "0.1.0"},
    audit_head=None,
)


def _pages(pdf: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "check.pdf"
    path.write_bytes(pdf)
    raw = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    return [" ".join(page.split()) for page in raw.split("\f")]


@needs_poppler
def test_a_checks_report_speaks_plainly_until_its_technical_appendix(
    exporter: EvidenceExporter, tmp_path: Path
) -> None:
    pages = _pages(exporter.export(check_evidence_set(), "pdf", info=CHECK_INFO).data, tmp_path)
    appendix = next(i for i, page in enumerate(pages) if "Appendix: technical details" in page)
    before = " ".join(pages[:appendix])
    for term in INTERNAL_TERMS:
        assert term.lower() not in before.lower(), f"{term!r} before the appendix"
    first = pages[0]
    # Who was checked, when (to the minute), what was found and what to do with the report.
    assert "Who was checked Elena Petrova" in first and "(@elena_petrova on twitter)" in first
    assert "21 November 2026, 08:05 UTC" in first and "654321" not in first
    assert "1 account looks like a copy of you (1 very likely a copy)" in first
    assert "attach this PDF" in first
    assert "https://help.x.com/forms/impersonation" in first
    # One page per account, in plain words, and the technical form kept for the appendix.
    assert "Account 1: @elena_petr0va on twitter" in pages[1]
    assert "uses your photo, slightly changed" in pages[1]
    assert "a Cyrillic 'а' in place of 'a'" in pages[1]
    assert "where yours has 'a' (U+0061 LATIN SMALL LETTER A)" in pages[1]
    technical = " ".join(pages[appendix:])
    for expected in (
        *CHECK_REASONS,
        "dct64 x 4 views, mirrored",
        "lr-isotonic-v7",
        check_evidence_set().items[0].latest.sha256,
        "clonefinder evidence verify",
    ):
        assert expected in technical, f"{expected!r} not in the appendix"


@needs_poppler
def test_a_cases_report_keeps_its_form_for_lawyers(
    exporter: EvidenceExporter, tmp_path: Path
) -> None:
    pages = _pages(exporter.export(evidence_set(), "pdf", info=INFO).data, tmp_path)
    assert "Evidence report: impersonating accounts" in pages[0]
    assert "victim" in pages[0] and "Software and models" in pages[0]
    assert "avatar is a near-copy: 6 of 64 bits differ" in pages[1]
    assert "Appendix: digests and how to verify them" in " ".join(pages)


def test_fonts_installed_after_a_failed_export_are_found_by_the_next(
    exporter: EvidenceExporter, tmp_path: Path
) -> None:
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    later = EvidenceExporter(key_file=tmp_path / "k", font_dirs=[fonts])
    with pytest.raises(MissingFontsError) as missing:
        later.export(check_evidence_set(), "pdf", info=CHECK_INFO)
    # What the page shows: one sentence that says what is missing and how to install it.
    sentence = missing.value.for_people
    assert "\n" not in sentence and sentence.count(". ") == 0
    assert "fonts" in sentence and "apt-get install fonts-noto-core" in sentence

    for path in exporter.fonts().paths.values():  # installing them
        (fonts / path.name).symlink_to(path)
    assert later.export(check_evidence_set(), "pdf", info=CHECK_INFO).data.startswith(b"%PDF")
