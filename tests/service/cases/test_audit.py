"""The audit log's signatures, on SQLite and PostgreSQL: what someone who can write the
database can and cannot do to the history, with and without the signing key.

Each test edits the database directly, as such a person would: the append-only triggers
dropped, entries rewritten and every hash after them recomputed, so that the hash chain holds
and only the signatures can tell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from typer.testing import CliRunner, Result

from service.cases.audit import verify_chain
from service.cli import app
from service.core.settings import Settings
from service.evidence.signing import EvidenceSigner
from service.store import Store
from service.store.audit import GENESIS_HASH, Actor, AuditStore, entry_hash, signed_message
from service.store.store import MIGRATIONS_DIR

ALICE = Actor("alice", key_id=7)
MALLORY = "mallory"


@pytest.fixture
def audit(store: Store, signer: EvidenceSigner) -> AuditStore:
    return AuditStore(store, signer=signer)


def _entries(audit: AuditStore, count: int = 5) -> None:
    for n in range(1, count + 1):
        audit.record(
            ALICE, "case.update", f"case {n}", {"status": {"from": "open", "to": "closed"}}
        )


def _allow_tampering(store: Store) -> None:
    """What someone with full access to the database can do: drop the append-only guard."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def _rewrite(
    store: Store,
    *,
    seq: int,
    actor: str = MALLORY,
    resign_with: EvidenceSigner | None = None,
    strip_signatures: bool = False,
) -> None:
    """Change entry `seq`'s actor and recompute its hash and every later one (links too), so
    that the hash chain holds again; re-sign each rewritten entry with `resign_with` (someone
    who holds a key) or remove every signature (`strip_signatures`)."""
    with store.engine.begin() as conn:
        rows = conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings().all()
        prev_hash = GENESIS_HASH
        for row in rows:
            values = dict(row)
            if values["seq"] == seq:
                values["actor"] = actor
            values["prev_hash"] = prev_hash
            covered = {k: values[k] for k in ("seq", "at", "actor", "key_id", "action", "target")}
            values["hash"] = entry_hash(
                **covered, details=values["details"], prev_hash=values["prev_hash"]
            )
            if values["seq"] >= seq and resign_with is not None:
                values["signature"] = resign_with.signature_b64(
                    signed_message(values["seq"], values["hash"])
                )
                values["key_fingerprint"] = resign_with.fingerprint
            if strip_signatures:
                values["signature"] = values["key_fingerprint"] = None
            conn.execute(
                text(
                    "UPDATE audit_log SET actor = :actor, prev_hash = :prev_hash, hash = :hash, "
                    "signature = :signature, key_fingerprint = :key_fingerprint WHERE seq = :seq"
                ),
                values,
            )
            prev_hash = values["hash"]


def _strip_signature(store: Store, seq: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET signature = NULL, key_fingerprint = NULL WHERE seq = :s"),
            {"s": seq},
        )


def test_every_entry_is_signed_by_the_service_key(
    audit: AuditStore, signer: EvidenceSigner
) -> None:
    _entries(audit)
    entries = list(audit.entries())
    assert all(e.key_fingerprint == signer.fingerprint for e in entries)
    report = verify_chain(entries, public_keys=[signer.public_key])
    assert report.ok, report.problems
    assert report.signed == 5 and report.unsigned is None


def test_a_chain_rewritten_with_recomputed_hashes_fails_at_its_first_rewritten_entry(
    store: Store, audit: AuditStore, signer: EvidenceSigner
) -> None:
    _entries(audit)
    _allow_tampering(store)
    _rewrite(store, seq=2)
    entries = list(audit.entries())
    assert entries[1].actor == MALLORY

    report = verify_chain(entries, public_keys=[signer.public_key])  # no --head needed
    assert not report.ok
    assert report.first_failure == 2
    assert report.problems[0].startswith("entry 2: its signature does not match")
    # The chain itself holds: its hashes are what the rewrite recomputed.
    assert not any("hash" in p or "follow" in p for p in report.problems), report.problems
    assert [p.split(":")[0] for p in report.problems] == [f"entry {n}" for n in range(2, 6)]


def test_removing_one_signature_fails(
    store: Store, audit: AuditStore, signer: EvidenceSigner
) -> None:
    _entries(audit)
    _allow_tampering(store)
    _strip_signature(store, 4)
    report = verify_chain(audit.entries(), public_keys=[signer.public_key])
    assert report.first_failure == 4
    assert report.problems == [
        "entry 4: unsigned, though entries before it are signed (signature removed)"
    ]


def test_a_log_stripped_of_every_signature_fails_from_where_signing_began(
    store: Store, audit: AuditStore, signer: EvidenceSigner
) -> None:
    """Without the key, removing every signature makes a rewritten log look written before
    signing; the place signing began, noted from an earlier check, shows it. The service's
    next entry, signed over the rewritten history, does not hide it either."""
    _entries(audit)
    _allow_tampering(store)
    _rewrite(store, seq=2, strip_signatures=True)
    keys = [signer.public_key]
    looks_old = verify_chain(audit.entries(), public_keys=keys)
    assert looks_old.unsigned == (1, 5) and looks_old.signed == 0

    # Where signing began is recorded beside the key, out of the database's reach.
    assert signer.signing_began() == 1
    report = verify_chain(audit.entries(), public_keys=keys, signed_from=signer.signing_began())
    assert not report.ok and report.first_failure == 1

    audit.record(ALICE, "case.export", "case 1", {"format": "bundle"})
    report = verify_chain(audit.entries(), public_keys=keys, signed_from=1)
    assert not report.ok and report.first_failure == 1


def test_audit_verify_catches_a_log_stripped_of_every_signature_by_default(
    data_dir: Path,
) -> None:
    store, audit = _cli_store(data_dir)
    try:
        _entries(audit)
        _allow_tampering(store)
        _rewrite(store, seq=2, strip_signatures=True)
    finally:
        store.close()
    stripped = _verify(data_dir)
    assert stripped.exit_code == 5, stripped.output
    assert "unsigned, though the log is signed from entry 1 on" in stripped.output


def test_entries_signed_by_a_key_not_given_fail_and_an_earlier_key_can_be_given(
    store: Store, tmp_path: Path, signer: EvidenceSigner
) -> None:
    earlier = EvidenceSigner(tmp_path / "earlier.key")
    _entries(AuditStore(store, signer=earlier), count=2)
    _entries(AuditStore(store, signer=signer), count=2)
    audit = AuditStore(store, signer=signer)

    report = verify_chain(audit.entries(), public_keys=[signer.public_key])
    assert report.first_failure == 1
    assert report.problems[0].startswith(f"entry 1: signed by {earlier.fingerprint}, not by")
    both = verify_chain(audit.entries(), public_keys=[signer.public_key, earlier.public_key])
    assert both.ok and both.signed == 4


def test_with_the_key_a_rewrite_passes_but_not_against_a_head_recorded_before_it(
    store: Store, audit: AuditStore, signer: EvidenceSigner
) -> None:
    """Whoever holds the key can rewrite the log and sign it anew; a head recorded outside
    the database before the rewrite (a bundle's manifest) still shows it."""
    _entries(audit)
    recorded = audit.head()
    assert recorded is not None
    _allow_tampering(store)
    _rewrite(store, seq=2, resign_with=signer)
    keys = [signer.public_key]
    assert verify_chain(audit.entries(), public_keys=keys).ok
    report = verify_chain(audit.entries(), public_keys=keys, expected_head=recorded.hash)
    assert not report.ok
    assert "entries were removed from the end" in report.problems[-1]


# -- stores whose log was written before it was signed --------------------------------------------


def _alembic(conn: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _legacy_entries(store: Store, count: int) -> None:
    """Take the store back to before signing and write entries as that version did."""
    with store.engine.begin() as conn:
        command.downgrade(_alembic(conn), "0005")
        assert "signature" not in {c["name"] for c in inspect(conn).get_columns("audit_log")}
        prev_hash = GENESIS_HASH
        for seq in range(1, count + 1):
            values: dict[str, Any] = {
                "seq": seq,
                "at": f"2026-11-0{seq}T10:00:00.000000Z",
                "actor": "alice",
                "key_id": 7,
                "action": "case.update",
                "target": f"case {seq}",
                "details": "{}",
                "prev_hash": prev_hash,
            }
            values["hash"] = prev_hash = entry_hash(**values)
            conn.execute(
                text(
                    "INSERT INTO audit_log (seq, at, actor, key_id, action, target, details, "
                    "prev_hash, hash) VALUES (:seq, :at, :actor, :key_id, :action, :target, "
                    ":details, :prev_hash, :hash)"
                ),
                values,
            )
        command.upgrade(_alembic(conn), "head")


def test_entries_written_before_signing_are_reported_unsigned_not_tampered(
    store: Store, audit: AuditStore, signer: EvidenceSigner
) -> None:
    _legacy_entries(store, 3)
    keys = [signer.public_key]
    before = verify_chain(audit.entries(), public_keys=keys)
    assert before.ok and before.unsigned == (1, 3) and before.signed == 0

    _entries(audit, count=2)
    after = verify_chain(audit.entries(), public_keys=keys)
    assert after.ok, after.problems
    assert after.unsigned == (1, 3) and after.signed == 2
    # The first signed entry covers the unsigned ones through its hash.
    _allow_tampering(store)
    _rewrite(store, seq=2)
    assert verify_chain(audit.entries(), public_keys=keys).first_failure == 4


# -- on the command line ---------------------------------------------------------------------------


def _verify(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(data_dir), *args])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _cli_store(data_dir: Path) -> tuple[Store, AuditStore]:
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.resolved_database_url)
    return store, AuditStore(store, signer=EvidenceSigner(settings.resolved_evidence_key_file))


def test_audit_verify_names_the_first_rewritten_entry_without_a_head(data_dir: Path) -> None:
    store, audit = _cli_store(data_dir)
    try:
        _entries(audit)
        ok = _verify(data_dir)
        assert ok.exit_code == 0, ok.output
        assert ok.output.startswith("OK: 5 entries, signed from entry 1; head 5 ")
        _allow_tampering(store)
        _rewrite(store, seq=2)
    finally:
        store.close()
    broken = _verify(data_dir)
    assert broken.exit_code == 5, broken.output
    assert "BROKEN entry 2: its signature does not match" in broken.output
    assert "FAILED: 5 entries, signed from entry 1, the first that fails is entry 2" in (
        broken.output
    )


def test_audit_verify_says_which_entries_predate_signing(data_dir: Path, tmp_path: Path) -> None:
    store, audit = _cli_store(data_dir)
    try:
        _legacy_entries(store, 3)
        unsigned = _verify(data_dir)
        assert unsigned.exit_code == 0, unsigned.output
        assert "UNSIGNED entries 1-3: written before the log was signed" in unsigned.output
        _entries(audit, count=1)
    finally:
        store.close()
    signed = _verify(data_dir)
    assert signed.exit_code == 0, signed.output
    assert "the signed entry after them covers them" in signed.output
    assert "OK: 4 entries, signed from entry 4;" in signed.output
    key_file = Settings(data_dir=data_dir).resolved_evidence_key_file
    assert EvidenceSigner(key_file).signing_began() == 4
    assert _verify(data_dir, "--signed-from", "4").exit_code == 0
    assert _verify(data_dir, "--signed-from", "3").exit_code == 5

    other = EvidenceSigner(tmp_path / "other.key")
    pem = tmp_path / "other.pem"
    pem.write_text(other.public_key_pem)
    wrong_key = _verify(data_dir, "--public-key", str(pem))
    assert wrong_key.exit_code == 5
    assert "BROKEN entry 4: signed by SHA256:" in wrong_key.output


def test_the_migration_goes_down_and_up_again(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(_alembic(conn), "0005")
        assert "signature" not in {c["name"] for c in inspect(conn).get_columns("audit_log")}
        command.upgrade(_alembic(conn), "head")
        columns = {c["name"] for c in inspect(conn).get_columns("audit_log")}
    assert {"signature", "key_fingerprint"} <= columns
