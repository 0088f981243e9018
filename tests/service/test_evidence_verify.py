"""`evidence verify` on hostile bundles: every malformed archive, manifest or capture is a named
failure (exit 5), never a traceback, and no member is inflated past its size in the manifest.

The bundles are made here, most of them signed with the test's own key exactly as the service
signs (both signatures valid), so that what fails is the structure itself, not a signature.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.evidence.bundle import (
    ARCHIVE_SIGNATURE_PREFIX,
    BUNDLE_FORMAT,
    MANIFEST,
    MANIFEST_SIGNATURE,
    MAX_MEMBER_BYTES,
    PUBLIC_KEY,
    BundleFiles,
    build_bundle,
    verify_bundle,
)
from service.evidence.exports import (
    CaptureView,
    EvidenceItem,
    EvidenceSet,
    capture_digest,
    case_json,
    evidence_digest,
    items_csv,
    sha256_hex,
)
from service.evidence.signing import EvidenceSigner

GIB = 1 << 30
# The safety net's words: a case of the corpus must be named by its own check, not by it.
UNEXPECTED = "could not be checked"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> EvidenceSigner:
    return EvidenceSigner(tmp_path_factory.mktemp("key") / "evidence-signing.key")


def _evidence() -> EvidenceSet:
    content = {"captured_at": "2026-11-20T10:00:00.000000Z", "score": 0.97, "label": "clone"}
    item = EvidenceItem(
        id=1,
        status="open",
        notes="",
        source="platform and handle",
        captures=[CaptureView(id=1, sha256=capture_digest(content), content=content)],
    )
    case = {"id": 4, "title": "Jane Doe", "status": "open", "notes": "", "victim": {}}
    return EvidenceSet(case=case, items=[item], avatars={})


def _members() -> dict[str, bytes]:
    evidence = _evidence()
    return {"case.json": case_json(evidence), "items.csv": items_csv(evidence)}


@pytest.fixture(scope="module")
def good(signer: EvidenceSigner) -> bytes:
    return build_bundle(
        BundleFiles(
            report=b"%PDF-1.7 a report",
            evidence=_members(),
            manifest_fields={
                "case_id": 4,
                "exported_at": "2026-11-21T08:00:00.000000Z",
                "exported_by": "alice",
                "software": {"clonefinder": "0.1.0"},
                "audit_head": {"seq": 3, "hash": "ab" * 32},
            },
        ),
        signer=signer,
    )


Entry = tuple[zipfile.ZipInfo | str, bytes]


def _signed_archive(
    signer: EvidenceSigner,
    entries: list[Entry],
    *,
    patch: Callable[[bytes], bytes] | None = None,
    raw: tuple[str, Deflated] | None = None,
) -> bytes:
    """The entries (and `raw`, a member given as its deflate stream) as a ZIP whose comment
    signs every byte before it, as the service does."""
    buffer = io.BytesIO()
    with (
        warnings.catch_warnings(),  # a name twice is one of the cases made on purpose
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        warnings.simplefilter("ignore", UserWarning)
        for name, data in entries:
            archive.writestr(name, data)
        if raw is not None:
            _append_deflated(archive, *raw)
    unsigned = buffer.getvalue()
    if patch is not None:
        unsigned = patch(unsigned)
    # Replace the empty comment's length by the signature's: the comment signs what precedes.
    comment_length = len(ARCHIVE_SIGNATURE_PREFIX) + 88
    signed_part = unsigned[:-2] + struct.pack("<H", comment_length)
    return signed_part + ARCHIVE_SIGNATURE_PREFIX + signer.signature_b64(signed_part).encode()


def _append_deflated(archive: zipfile.ZipFile, name: str, member: Deflated) -> None:
    """Write a member from its deflate stream: the zipfile module only writes what it
    compresses itself, and compressing the bomb for each bundle would take seconds."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.CRC, info.compress_size, info.file_size = member.crc, len(member.raw), member.size
    stream = archive.fp
    assert stream is not None
    info.header_offset = stream.tell()
    stream.write(info.FileHeader(False))
    stream.write(member.raw)
    archive.start_dir = stream.tell()
    archive.filelist.append(info)
    archive.NameToInfo[name] = info


def _manifest(members: dict[str, bytes], **changes: Any) -> dict[str, Any]:
    evidence = {p: sha256_hex(d) for p, d in members.items() if p != PUBLIC_KEY}
    manifest: dict[str, Any] = {
        "case_id": 4,
        "exported_at": "2026-11-21T08:00:00.000000Z",
        "audit_head": None,
        "format": BUNDLE_FORMAT,
        "hash_algorithm": "SHA-256",
        "files": {p: sha256_hex(d) for p, d in sorted(members.items())},
        "file_sizes": {p: len(d) for p, d in sorted(members.items())},
        "evidence_files": sorted(evidence),
        "evidence_digest": evidence_digest(evidence),
    }
    manifest.update(changes)
    return manifest


def _bundle(
    signer: EvidenceSigner,
    members: dict[str, bytes] | None = None,
    *,
    manifest: Any = None,
    manifest_bytes: bytes | None = None,
    listed: dict[str, bytes] | None = None,
    omit: tuple[str, ...] = (),
    extra: tuple[Entry, ...] = (),
    patch: Callable[[bytes], bytes] | None = None,
    methods: dict[str, int] | None = None,
    **manifest_changes: Any,
) -> bytes:
    """A signed bundle of `members` (default: a good case), with its manifest made from
    `listed` (default: the members themselves) and then changed; both signatures valid.
    `methods`: the compression of some members (default: deflate)."""
    members = {**(_members() if members is None else members)}
    members.setdefault(PUBLIC_KEY, signer.public_key_pem.encode("ascii"))
    if manifest is None:
        manifest = _manifest(members if listed is None else listed, **manifest_changes)
    if manifest_bytes is None:
        manifest_bytes = json.dumps(manifest, indent=2).encode("utf-8")
    entries: list[Entry] = [
        (MANIFEST, manifest_bytes),
        (MANIFEST_SIGNATURE, signer.signature_b64(manifest_bytes).encode() + b"\n"),
        *sorted(members.items()),
        *extra,
    ]
    kept = [
        (_with_method(name, (methods or {}).get(name)), data)
        for name, data in entries
        if name not in omit
    ]
    return _signed_archive(signer, kept, patch=patch)


def _flag_encrypted(name: str) -> Callable[[bytes], bytes]:
    """Set the 'encrypted' bit of `name` in its local and central headers."""
    encoded = name.encode()

    def patch(data: bytes) -> bytes:
        out = bytearray(data)
        for signature, flag_offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
            start = 0
            while (at := data.find(signature, start)) >= 0:
                if data[at + name_offset : at + name_offset + len(encoded)] == encoded:
                    out[at + flag_offset] |= 0x01
                start = at + 1
        return bytes(out)

    return patch


def _with_method(name: zipfile.ZipInfo | str, method: int | None) -> zipfile.ZipInfo | str:
    if method is None or isinstance(name, zipfile.ZipInfo):
        return name
    info = zipfile.ZipInfo(name)
    info.compress_type = method
    return info


def _respelled(character: bytes) -> bytes:
    """Another base64 character that decodes to the same bytes in a signature's last place
    before `==`, where only the top 2 of its 6 bits are used."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return bytes([alphabet[alphabet.index(character) ^ 1]])


def _corpus(signer: EvidenceSigner, good: bytes) -> dict[str, tuple[bytes, str]]:
    """Each malformed bundle, by what is wrong with it, and the words its failure must hold."""
    members = _members()
    key = signer.public_key_pem.encode("ascii")
    case = members["case.json"]
    manifest_bytes = json.dumps(_manifest({**members, PUBLIC_KEY: key})).encode()
    signature = signer.signature_b64(manifest_bytes).encode()

    def with_case(document: Any) -> bytes:
        raw = document if isinstance(document, bytes) else json.dumps(document).encode()
        return _bundle(signer, {**members, "case.json": raw})

    return {
        # the archive itself
        "empty file": (b"", "not a readable ZIP archive"),
        "not a zip": (b"%PDF-1.7 this is a report, not a bundle", "not a readable ZIP archive"),
        "truncated": (good[: len(good) // 2], "not a readable ZIP archive"),
        "no comment": (
            good[: good.rindex(ARCHIVE_SIGNATURE_PREFIX)],
            "the archive carries no signature of its own",
        ),
        "member twice": (
            _bundle(signer, extra=(("case.json", case),)),
            "case.json: more than once in the archive",
        ),
        "bzip2 member": (
            _bundle(signer, methods={"items.csv": zipfile.ZIP_BZIP2}),
            "compressed with method 12",
        ),
        "encrypted member": (
            _bundle(signer, patch=_flag_encrypted("items.csv")),
            "items.csv: damaged in the archive",
        ),
        "bad CRC": (
            _bundle(
                signer,
                methods={"items.csv": zipfile.ZIP_STORED},
                patch=lambda data: data.replace(b"case_id,", b"case_iX,", 1),
            ),
            "items.csv: damaged in the archive",
        ),
        "control characters in a name": (
            _bundle(signer, extra=(("\x1b[2Jevil", b"x"),)),
            "\\x1b[2Jevil: not listed in the manifest",
        ),
        "archive signature respelled": (
            good[:-3] + _respelled(good[-3:-2]) + good[-2:],
            "the archive's signature does not match its bytes",
        ),
        # missing members
        "no manifest": (_bundle(signer, omit=(MANIFEST,)), "manifest.json: missing"),
        "no manifest signature": (
            _bundle(signer, omit=(MANIFEST_SIGNATURE,)),
            "manifest.sig: missing or not base64",
        ),
        "no public key": (_bundle(signer, omit=(PUBLIC_KEY,)), "public_key.pem: missing"),
        "listed member missing": (
            _bundle(signer, omit=("items.csv",)),
            "items.csv: missing from the archive",
        ),
        "member not listed": (
            _bundle(signer, extra=(("notes.txt", b"hello"),)),
            "notes.txt: not listed in the manifest",
        ),
        # the key and the signature
        "public key not PEM": (
            _bundle(signer, {**members, PUBLIC_KEY: b"\xff\xfe not a key"}),
            "public_key.pem: not a readable public key",
        ),
        "public key huge": (
            _bundle(signer, {**members, PUBLIC_KEY: key + b"#" * (1 << 20)}),
            f"public_key.pem: {len(key) + (1 << 20)} bytes, more than the 65536 read",
        ),
        "signature not base64": (
            _signed_archive(
                signer,
                [
                    (MANIFEST, manifest_bytes),
                    (MANIFEST_SIGNATURE, b"\xff\x00 not base64"),
                    *sorted({**members, PUBLIC_KEY: key}.items()),
                ],
            ),
            "manifest.sig: missing or not base64",
        ),
        "manifest signature respelled": (
            _signed_archive(
                signer,
                [
                    (MANIFEST, manifest_bytes),
                    (MANIFEST_SIGNATURE, signature[:-3] + _respelled(signature[-3:-2]) + b"=="),
                    *sorted({**members, PUBLIC_KEY: key}.items()),
                ],
            ),
            "manifest.sig: missing or not base64",
        ),
        # the manifest
        "manifest not JSON": (_bundle(signer, manifest_bytes=b"{files: "), "not readable JSON"),
        "manifest not UTF-8": (
            _bundle(signer, manifest_bytes=b'{"format": "\xff\xfe"}'),
            "manifest.json: not readable JSON",
        ),
        "manifest nested deep": (
            _bundle(signer, manifest_bytes=b"[" * 100_000 + b"]" * 100_000),
            "manifest.json: not readable JSON",
        ),
        "manifest number too long": (
            _bundle(signer, manifest_bytes=b'{"case_id": ' + b"7" * 5000 + b"}"),
            "manifest.json: not readable JSON",
        ),
        "manifest a list": (_bundle(signer, manifest=[1, 2]), f"not a {BUNDLE_FORMAT} manifest"),
        "manifest of another format": (
            _bundle(signer, format="zip/2"),
            f"not a {BUNDLE_FORMAT} manifest",
        ),
        "files a list": (_bundle(signer, files=["case.json"]), "files is not an object"),
        "files digests not text": (
            _bundle(signer, files={"case.json": 1}),
            "files is not an object",
        ),
        "file sizes a list": (_bundle(signer, file_sizes=[1]), "file_sizes is not"),
        "file size negative": (
            _bundle(signer, file_sizes={p: -1 for p in [*members, PUBLIC_KEY]}),
            "file_sizes is not",
        ),
        "file size a boolean": (
            _bundle(signer, file_sizes={p: True for p in [*members, PUBLIC_KEY]}),
            "file_sizes is not",
        ),
        "evidence files not a list": (
            _bundle(signer, evidence_files="case.json"),
            "evidence_files is not a list",
        ),
        "evidence digest a number": (
            _bundle(signer, evidence_digest=5),
            "evidence_digest is not a SHA-256",
        ),
        "case id an object": (_bundle(signer, case_id={"a": 1}), "case_id is not a case's id"),
        "export time a number": (_bundle(signer, exported_at=12), "exported_at is not a time"),
        "audit head text": (_bundle(signer, audit_head="abc"), "audit_head is not"),
        "size differs from the manifest": (
            _bundle(signer, listed={**members, "items.csv": b"short", PUBLIC_KEY: key}),
            "in the archive, 5 in the manifest: not read",
        ),
        # the captures
        "items of numbers": (with_case({"items": [1]}), "case.json: item 1 is not an object"),
        "items an object": (with_case({"items": {}}), "case.json: items is not a list"),
        "case a list": (with_case([1]), "case.json: not a JSON object"),
        "captures a number": (
            with_case({"items": [{"id": 1, "captures": 5}]}),
            "case.json: the captures of item 1 are not a list",
        ),
        "capture without content": (
            with_case({"items": [{"id": 1, "captures": [{"id": 1, "sha256": "ab"}]}]}),
            "case.json: a capture of item 1 has no content or no sha256",
        ),
        "capture digest a number": (
            with_case({"items": [{"id": 1, "captures": [{"content": {}, "sha256": 1}]}]}),
            "case.json: a capture of item 1 has no content or no sha256",
        ),
        "capture changed": (
            with_case(
                {"items": [{"id": 1, "captures": [{"id": 9, "content": {}, "sha256": "0"}]}]}
            ),
            "case.json: capture 9 of item 1 does not match its SHA-256",
        ),
        "case not UTF-8": (with_case(b'{"items": "\xff"}'), "case.json: not readable JSON"),
        "case nested deep": (
            with_case(b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            "case.json: not readable JSON",
        ),
    }


CASES = [
    "empty file",
    "not a zip",
    "truncated",
    "no comment",
    "archive signature respelled",
    "member twice",
    "bzip2 member",
    "encrypted member",
    "bad CRC",
    "control characters in a name",
    "no manifest",
    "no manifest signature",
    "no public key",
    "listed member missing",
    "member not listed",
    "public key not PEM",
    "public key huge",
    "signature not base64",
    "manifest signature respelled",
    "manifest not JSON",
    "manifest not UTF-8",
    "manifest nested deep",
    "manifest number too long",
    "manifest a list",
    "manifest of another format",
    "files a list",
    "files digests not text",
    "file sizes a list",
    "file size negative",
    "file size a boolean",
    "evidence files not a list",
    "evidence digest a number",
    "case id an object",
    "export time a number",
    "audit head text",
    "size differs from the manifest",
    "items of numbers",
    "items an object",
    "case a list",
    "captures a number",
    "capture without content",
    "capture digest a number",
    "capture changed",
    "case not UTF-8",
    "case nested deep",
]


@pytest.fixture(scope="module")
def corpus(signer: EvidenceSigner, good: bytes) -> dict[str, tuple[bytes, str]]:
    made = _corpus(signer, good)
    assert sorted(made) == sorted(CASES)
    return made


def _verify_on_the_command_line(path: Path) -> Any:
    return CliRunner().invoke(app, ["evidence", "verify", str(path), "--json"])


def test_a_good_bundle_verifies(good: bytes, tmp_path: Path) -> None:
    report = verify_bundle(good)
    assert report.ok, report.problems
    assert report.files_checked == 4 and report.captures_checked == 1
    path = tmp_path / "good.zip"
    path.write_bytes(good)
    result = _verify_on_the_command_line(path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_the_test_bundles_are_signed_like_the_services(signer: EvidenceSigner) -> None:
    """The corpus' helper makes bundles that verify when nothing is wrong with them, so each
    failure below comes from what was changed."""
    report = verify_bundle(_bundle(signer))
    assert report.ok, report.problems


@pytest.mark.parametrize("name", CASES)
def test_each_malformed_bundle_is_a_named_failure(
    corpus: dict[str, tuple[bytes, str]], name: str, tmp_path: Path
) -> None:
    data, words = corpus[name]
    report = verify_bundle(data)
    assert not report.ok
    assert any(words in problem for problem in report.problems), report.problems
    assert not any(UNEXPECTED in problem for problem in report.problems), report.problems
    assert all(problem.isprintable() for problem in report.problems), report.problems

    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    result = _verify_on_the_command_line(path)
    assert result.exit_code == 5, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    printed = json.loads(result.output)
    assert printed["ok"] is False and printed["problems"] == report.problems


def test_the_text_output_names_the_failure_without_a_traceback(
    corpus: dict[str, tuple[bytes, str]], tmp_path: Path
) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(corpus["items of numbers"][0])
    result = CliRunner().invoke(app, ["evidence", "verify", str(path)])
    assert result.exit_code == 5
    assert "MISMATCH case.json: item 1 is not an object" in result.output
    assert "Traceback" not in result.output


# -- members that inflate past their size ---------------------------------------------------------


@dataclass(frozen=True)
class Deflated:
    """A member's deflate stream made without holding the member: a zip bomb's payload."""

    raw: bytes
    crc: int
    size: int


class _Bits:
    """Deflate's bit order: each byte fills from its lowest bit, and a code goes in from its
    highest bit."""

    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def put(self, code: int, length: int) -> _Bits:
        for shift in range(length - 1, -1, -1):
            self.value |= ((code >> shift) & 1) << self.count
            self.count += 1
        return self

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.count + 7) // 8, "little")


# Codes of deflate's fixed Huffman block (RFC 1951, 3.2.6) and their lengths in bits.
_LAST_FIXED_BLOCK = (0b110, 3)
_LITERAL_ZERO = (0b00110000, 8)
_COPY_258 = (0b11000101, 8)
_DISTANCE_1 = (0b00000, 5)
_END_OF_BLOCK = (0b0000000, 7)


def _zeros(size: int) -> Deflated:
    """`size` zero bytes as one zero and copies of the byte before it, 258 at a time: written
    directly (a copy is 13 bits, so 8 copies are the same 13 bytes), in milliseconds even for
    a gigabyte, where a compressor would take seconds."""
    copies, literals = divmod(size - 1, 258)
    assert copies >= 1
    head = _Bits().put(*_LAST_FIXED_BLOCK).put(*_LITERAL_ZERO).put(*_COPY_258).put(*_DISTANCE_1)
    eight = _Bits()
    for _ in range(8):
        eight.put(*_COPY_258).put(*_DISTANCE_1)
    groups, left = divmod(copies - 1, 8)
    tail = _Bits()
    for _ in range(left):
        tail.put(*_COPY_258).put(*_DISTANCE_1)
    for _ in range(literals):
        tail.put(*_LITERAL_ZERO)
    tail.put(*_END_OF_BLOCK)
    chunk, crc = bytes(1 << 20), 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(bytes(size % len(chunk)), crc)
    return Deflated(raw=head.bytes() + eight.bytes() * groups + tail.bytes(), crc=crc, size=size)


def test_the_deflated_zeros_inflate_to_their_size() -> None:
    for size in (259, 1000, 3 << 20):
        member = _zeros(size)
        assert zlib.decompress(member.raw, -15) == bytes(size)
        assert zlib.crc32(bytes(size)) == member.crc


@pytest.fixture(scope="module")
def bomb() -> Deflated:
    """1 GiB of zeros in under 7 MB, like the 1.2 MB bundle that once took 2.2 GB to check."""
    return _zeros(GIB)


def _bundle_with(
    signer: EvidenceSigner, name: str, member: Deflated, *, sizes: bool, listed_size: int
) -> bytes:
    """A signed bundle whose `name` is `member`'s deflate stream, copied as is, and whose
    manifest lists `name` with `listed_size` bytes (`sizes=False`: a manifest without sizes,
    as bundles had before they recorded them)."""
    members = {**_members(), PUBLIC_KEY: signer.public_key_pem.encode("ascii")}
    del members[name]
    manifest = _manifest(members)
    manifest["files"][name] = sha256_hex(bytes(member.size)) if member.size < GIB else "0" * 64
    manifest["file_sizes"][name] = listed_size
    if not sizes:
        del manifest["file_sizes"]
    manifest_bytes = json.dumps(manifest).encode()
    entries: list[Entry] = [
        (MANIFEST, manifest_bytes),
        (MANIFEST_SIGNATURE, signer.signature_b64(manifest_bytes).encode()),
        *sorted(members.items()),
    ]
    return _signed_archive(signer, entries, raw=(name, member))


def _peak_memory(check: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = check()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_member_larger_than_the_manifest_says_is_refused_before_it_is_inflated(
    signer: EvidenceSigner, bomb: Deflated, tmp_path: Path
) -> None:
    listed = len(_members()["items.csv"])
    data = _bundle_with(signer, "items.csv", bomb, sizes=True, listed_size=listed)
    assert len(data) < 8 << 20

    report, peak = _peak_memory(lambda: verify_bundle(data))
    assert f"items.csv: {GIB} bytes in the archive, {listed} in the manifest: not read" in (
        report.problems
    )
    assert peak < len(data) + (16 << 20)
    path = tmp_path / "bomb.zip"
    path.write_bytes(data)
    assert _verify_on_the_command_line(path).exit_code == 5


def test_without_sizes_in_the_manifest_a_member_over_the_cap_is_not_read(
    signer: EvidenceSigner, bomb: Deflated
) -> None:
    data = _bundle_with(signer, "items.csv", bomb, sizes=False, listed_size=0)
    report, peak = _peak_memory(lambda: verify_bundle(data))
    assert f"items.csv: {GIB} bytes, more than the {MAX_MEMBER_BYTES} read: not read" in (
        report.problems
    )
    assert peak < len(data) + (16 << 20)


def test_a_large_member_is_checked_a_chunk_at_a_time(signer: EvidenceSigner) -> None:
    large = _zeros(64 << 20)
    data = _bundle_with(signer, "items.csv", large, sizes=True, listed_size=large.size)
    report, peak = _peak_memory(lambda: verify_bundle(data))
    assert report.ok, report.problems
    assert peak < len(data) + (16 << 20)  # never the member's 64 MiB at once
