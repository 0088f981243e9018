"""Cases, captures and the audit log in the store, on SQLite and PostgreSQL.

The audit tests edit the database directly, as someone with access to it would: they first
drop the triggers that keep the log append-only, then edit, remove or swap entries, and
`verify_chain` must name what changed. (Rewrites that recompute the hashes, which only the
entries' signatures catch, are in tests/service/cases/test_audit.py.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.cases.audit import ChainReport, verify_chain
from service.evidence.signing import EvidenceSigner
from service.store import Store
from service.store.audit import Actor, AuditStore
from service.store.cases import CaseStore, NewCapture, NewCase
from service.store.store import AvatarBlob

ALICE = Actor("alice", key_id=7)


@pytest.fixture
def cases(store: Store, signer: EvidenceSigner) -> CaseStore:
    return CaseStore(store, signer=signer)


@pytest.fixture
def audit(store: Store, signer: EvidenceSigner) -> AuditStore:
    return AuditStore(store, signer=signer)


Check = Callable[..., ChainReport]


@pytest.fixture
def check(signer: EvidenceSigner) -> Check:
    """`verify_chain` with the key the entries are signed with."""
    return partial(verify_chain, public_keys=[signer.public_key])


def new_case(cases: CaseStore, *, key_id: int | None = 7) -> int:
    return cases.create_case(
        ALICE,
        NewCase(
            key_id=key_id,
            title="Jane Doe",
            victim_platform="twitter",
            victim_handle="janedoe",
            victim_profile_id=1,
            notes="",
        ),
    ).id


def blob(tag: bytes) -> AvatarBlob:
    import hashlib

    return AvatarBlob(
        sha256=hashlib.sha256(tag).hexdigest(), data=tag, mime="image/jpeg", width=8, height=8
    )


def capture(handle: str = "jane_d0e", *, document: str = '{"score":0.9}') -> NewCapture:
    return NewCapture(
        platform="twitter",
        handle=handle,
        profile_id=2,
        source="platform and handle",
        captured_at=datetime.now(UTC),
        document=document,
        sha256="ab" * 32,
        clone_avatar=blob(b"clone avatar bytes"),
        victim_avatar=blob(b"victim avatar bytes"),
    )


def test_capturing_an_account_again_adds_a_capture_beside_the_first(cases: CaseStore) -> None:
    case_id = new_case(cases)
    first = cases.add_capture(ALICE, case_id, capture(document='{"n":1}'))
    again = cases.add_capture(ALICE, case_id, capture("JANE_D0E", document='{"n":2}'))

    assert first.new_item and not again.new_item
    assert again.item.id == first.item.id  # the identity is case-insensitive
    stored = cases.captures(case_id)
    assert [c.document for c in stored] == ['{"n":1}', '{"n":2}']
    assert len(cases.items(case_id)) == 1
    avatars = cases.avatars([first.capture.clone_avatar_sha256 or ""])
    assert avatars[first.capture.clone_avatar_sha256 or ""].data == b"clone avatar bytes"


@pytest.mark.parametrize(
    "statement", ["UPDATE {table} SET {column} = {value}", "DELETE FROM {table}"]
)
@pytest.mark.parametrize(
    ("table", "column", "value"),
    [("case_captures", "document", "'{}'"), ("capture_avatars", "mime", "'x'")],
)
def test_captures_and_their_avatars_cannot_be_changed_or_deleted(
    store: Store, cases: CaseStore, statement: str, table: str, column: str, value: str
) -> None:
    cases.add_capture(ALICE, new_case(cases), capture())
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement.format(table=table, column=column, value=value)))
    assert cases.captures(1)[0].document == '{"score":0.9}'


def test_each_change_is_audited_with_the_key_that_made_it(
    cases: CaseStore, audit: AuditStore, check: Check
) -> None:
    case_id = new_case(cases)
    added = cases.add_capture(ALICE, case_id, capture())
    cases.update_case(ALICE, case_id, {"status": "reported"}, key_id=7)
    cases.update_item(Actor("bob", 8), case_id, added.item.id, {"notes": "sent to platform"})
    cases.update_case(ALICE, case_id, {"status": "reported"}, key_id=7)  # no change: no entry

    entries = list(audit.entries())
    assert [(e.actor, e.action) for e in entries] == [
        ("alice", "case.create"),
        ("alice", "item.add"),
        ("alice", "case.update"),
        ("bob", "item.update"),
    ]
    assert all(e.target == f"case {case_id}" for e in entries)
    assert entries[2].document()["details"] == {"status": {"from": "open", "to": "reported"}}
    assert check(entries).ok


def test_another_keys_case_is_not_found_or_changed(cases: CaseStore) -> None:
    case_id = new_case(cases, key_id=7)
    assert cases.case(case_id, key_id=8) is None
    assert cases.update_case(ALICE, case_id, {"notes": "x"}, key_id=8) is None
    assert cases.case(case_id, key_id=None) is not None  # an administrator's view
    assert cases.case(case_id, key_id=7).notes == ""  # type: ignore[union-attr]


def test_concurrent_appends_keep_one_chain(audit: AuditStore, check: Check) -> None:
    def append(worker: int) -> None:
        for n in range(8):
            audit.record(Actor(f"worker{worker}"), "case.export", f"case {n}", {"n": n})

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = check(audit.entries())
    assert report.ok, report.problems
    assert report.entries == report.signed == 32


# -- tampering, straight in the database -------------------------------------------------------


def _allow_tampering(store: Store) -> None:
    """What someone with full access to the database can do: drop the append-only guard."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def _five_entries(audit: AuditStore) -> None:
    for n in range(1, 6):
        audit.record(
            ALICE, "case.update", f"case {n}", {"status": {"from": "open", "to": "closed"}}
        )


def test_the_log_cannot_be_edited_while_its_guard_is_in_place(
    store: Store, audit: AuditStore
) -> None:
    _five_entries(audit)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))


def test_audit_verify_names_an_edited_entry(store: Store, audit: AuditStore, check: Check) -> None:
    _five_entries(audit)
    _allow_tampering(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    report = check(audit.entries())
    assert not report.ok
    assert report.problems == ["entry 3: its content does not match its hash (edited or moved)"]


def test_audit_verify_names_a_removed_entry(store: Store, audit: AuditStore, check: Check) -> None:
    _five_entries(audit)
    _allow_tampering(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    report = check(audit.entries())
    assert not report.ok
    assert any(p.startswith("entry 3: expected entry 2 here (removed)") for p in report.problems)
    assert any(p.startswith("entry 3: does not follow") for p in report.problems)


def test_audit_verify_names_reordered_entries(
    store: Store, audit: AuditStore, check: Check
) -> None:
    _five_entries(audit)
    _allow_tampering(store)
    # Swap entries 2 and 4 whole (content, links and hashes), as a reordering would.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET seq = 100 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_log SET seq = 4 WHERE seq = 100"))
    report = check(audit.entries())
    assert not report.ok
    named = {p.split(":")[0] for p in report.problems}
    assert {"entry 2", "entry 4"} <= named


def test_entries_cut_from_the_end_show_against_a_recorded_head(
    store: Store, audit: AuditStore, check: Check
) -> None:
    _five_entries(audit)
    recorded = audit.head()
    assert recorded is not None and check(audit.entries(), expected_head=recorded.hash).ok
    _allow_tampering(store)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    assert check(audit.entries()).ok  # the log alone cannot tell
    report = check(audit.entries(), expected_head=recorded.hash)
    assert not report.ok
    assert "entries were removed from the end" in report.problems[0]
