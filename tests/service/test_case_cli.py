"""`clonefinder case`, `evidence` and `audit` on the command line, run in-process on a store of
their own; the audit log is then edited in the SQLite file directly, as an intruder would."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from service.cli import app
from tests.images import photo

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path, open_engine: Any) -> Path:
    folder = tmp_path / "data"
    images = tmp_path / "img"
    images.mkdir()
    photo(31, size=200).save(images / "nora.jpg", format="JPEG", quality=90)
    photo(31, size=120).save(images / "copy.jpg", format="JPEG", quality=70)
    records = [
        {
            "platform": "instagram",
            "handle": "nora.lindqvist",
            "display_name": "Nora Lindqvist",
            "bio": "Ceramicist in Malmö. Bowls, glazes and a kiln named Olga.",
            "avatar_path": "img/nora.jpg",
            "created_at": "2013-04-01T00:00:00Z",
            "followers_count": 5400,
        },
        {
            "platform": "instagram",
            "handle": "nora.lindqvist_art",
            "display_name": "Nora Lіndqvist",  # Cyrillic і
            "bio": "Ceramicist in Malmö. Bowls, glazes and a kiln named Olga. DM to buy",
            "avatar_path": "img/copy.jpg",
            "created_at": "2025-01-01T00:00:00Z",
            "followers_count": 12,
        },
    ]
    source = tmp_path / "profiles.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run(open_engine, "ingest", source, "--data-dir", folder)
    assert result.exit_code == 0, result.output
    return folder


def run(opener: Any, *args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], obj={"open_engine": opener})


def test_a_case_on_the_command_line_from_victim_to_verified_bundle(
    data_dir: Path, open_engine: Any, tmp_path: Path
) -> None:
    where = ("--data-dir", data_dir)
    created = run(
        open_engine, "case", "create", "--platform", "instagram", "--handle", "nora.lindqvist",
        "--json", *where,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    case_id = str(json.loads(created.output)["id"])

    added = run(open_engine, "case", "add", case_id, "--from-check", *where)
    assert added.exit_code == 0, added.output
    assert "added item 1: instagram/nora.lindqvist_art" in added.output
    again = run(open_engine, "case", "capture", case_id, "1", *where)
    assert again.exit_code == 0, again.output
    updated = run(
        open_engine, "case", "update", case_id, "--item", "1", "--status", "taken_down", *where
    )
    assert updated.exit_code == 0, updated.output

    shown = json.loads(run(open_engine, "case", "show", case_id, "--json", *where).output)
    (item,) = shown["items"]
    assert item["status"] == "taken_down" and len(item["captures"]) == 2

    for fmt, name in (("bundle", "case.zip"), ("pdf", "case.pdf"), ("csv", "case.csv")):
        exported = run(
            open_engine, "case", "export", case_id, "--format", fmt, "--out", tmp_path / name,
            *where,
        )  # fmt: skip
        assert exported.exit_code == 0, exported.output
    assert (tmp_path / "case.pdf").read_bytes().startswith(b"%PDF")
    assert "nora.lindqvist_art" in (tmp_path / "case.csv").read_text(encoding="utf-8-sig")
    verified = run(open_engine, "evidence", "verify", tmp_path / "case.zip")
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("OK:")

    bad = run(open_engine, "case", "export", case_id, "--format", "docx", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "--format must be one of" in bad.output
    unreadable = run(open_engine, "evidence", "verify", tmp_path / "missing.zip")
    assert unreadable.exit_code == 2


def test_audit_verify_fails_on_an_entry_edited_in_the_database(
    data_dir: Path, open_engine: Any
) -> None:
    where = ("--data-dir", data_dir)
    run(
        open_engine,
        "case",
        "create",
        "--platform",
        "instagram",
        "--handle",
        "nora.lindqvist",
        *where,
    )
    run(open_engine, "case", "update", "1", "--status", "reported", *where)
    run(open_engine, "case", "update", "1", "--notes", "sent to the platform", *where)
    ok = run(open_engine, "audit", "verify", *where)
    assert ok.exit_code == 0 and ok.output.startswith("OK: 3 entries"), ok.output
    head = ok.output.split()[-1]

    with sqlite3.connect(data_dir / "clonefinder.db") as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET details = replace(details, 'reported', 'closed')")
    broken = run(open_engine, "audit", "verify", *where)
    assert broken.exit_code == 5  # verification failed
    assert "BROKEN entry 2: its content does not match its hash" in broken.output

    with sqlite3.connect(data_dir / "clonefinder.db") as db:
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("DELETE FROM audit_log WHERE seq >= 2")
    cut = run(open_engine, "audit", "verify", "--head", head, *where)
    assert cut.exit_code == 5 and "removed from the end" in cut.output

    report = run(open_engine, "audit", "verify", "--head", head, "--json", *where)
    assert report.exit_code == 5
    document = json.loads(report.stdout)
    assert document["ok"] is False and document["expected_head_found"] is False
    assert document["entries"] == 1 and document["problems"]


def test_every_case_and_evidence_command_prints_one_json_document(
    data_dir: Path, open_engine: Any, tmp_path: Path
) -> None:
    where = ("--data-dir", data_dir)

    def document(*args: str | Path, code: int = 0) -> Any:
        result = run(open_engine, *args, "--json")
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    victim = ("--platform", "instagram", "--handle", "nora.lindqvist")
    case_id = str(document("case", "create", *victim, *where)["id"])
    (added,) = document("case", "add", case_id, "--from-check", *where)["added"]
    assert added["new_item"] is True and added["handle"] == "nora.lindqvist_art"
    assert added["capture"]["sha256"] and added["capture"]["item_id"] == added["item_id"]
    item_id = str(added["item_id"])

    again = document("case", "capture", case_id, item_id, *where)
    assert again["item_id"] == added["item_id"] and again["id"] != added["capture"]["id"]
    item = document("case", "update", case_id, "--item", item_id, "--status", "reported", *where)
    assert item["status"] == "reported" and len(item["captures"]) == 2
    case = document("case", "update", case_id, "--notes", "sent to the platform", *where)
    assert case["id"] == int(case_id) and case["notes"] == "sent to the platform"

    bundle = tmp_path / "case.zip"
    exported = document("case", "export", case_id, "--out", bundle, *where)
    assert exported["out"] == str(bundle) and exported["bytes"] == bundle.stat().st_size
    key = document("evidence", "public-key", *where)
    assert key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    verified = document("evidence", "verify", bundle)
    assert verified["ok"] is True and verified["key_fingerprint"] == key["fingerprint"]
    audit = document("audit", "verify", *where)
    assert audit["ok"] is True and audit["entries"] == 6 and audit["problems"] == []

    # A bundle changed after its export fails verification: exit 5, not 1 (rejected records).
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    assert document("evidence", "verify", bundle, code=5)["ok"] is False
    missing = run(open_engine, "case", "show", "99", "--json", *where)
    assert missing.exit_code == 4 and missing.stdout == ""
