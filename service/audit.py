"""Checking the audit log's hash chain: is every entry as it was written, in its place?

Each entry's hash covers its own content and its predecessor's hash, so:
- an edited entry no longer matches its own hash;
- a removed entry leaves a gap in the sequence, and the next entry's `prev_hash` names a hash
  that is not the one before it;
- entries moved (their contents swapped between sequence numbers) match neither their hashes
  nor their links.
Only the last entries can be removed without a trace inside the log itself; a head recorded
elsewhere (each evidence bundle's manifest records the head at export time) covers that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from service.store.audit import GENESIS_HASH, AuditEntry

MAX_PROBLEMS_SHOWN = 100


@dataclass
class ChainReport:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    anchor_found: bool | None = None  # None: no expected head was given

    @property
    def ok(self) -> bool:
        return not self.problems and self.anchor_found is not False


def verify_chain(entries: Iterable[AuditEntry], *, expected_head: str | None = None) -> ChainReport:
    """Walk the log in sequence order and name every entry that breaks the chain.

    `expected_head` is a hash recorded earlier (a bundle's `audit_head`): the log must still
    hold an entry with it, or entries were removed from its end.
    """
    report = ChainReport()
    expected_seq = 1
    prev_hash = GENESIS_HASH
    hashes: set[str] = set()
    for entry in entries:
        report.entries += 1
        if entry.seq != expected_seq:
            report.problems.append(
                f"entry {entry.seq}: expected entry {expected_seq} here "
                f"({'removed' if entry.seq > expected_seq else 'out of order'})"
            )
        if entry.expected_hash() != entry.hash:
            report.problems.append(
                f"entry {entry.seq}: its content does not match its hash (edited or moved)"
            )
        if entry.prev_hash != prev_hash:
            report.problems.append(
                f"entry {entry.seq}: does not follow the entry before it (an entry before it "
                "was removed, edited or moved)"
            )
        hashes.add(entry.hash)
        prev_hash = entry.hash
        expected_seq = entry.seq + 1
        report.head_seq = entry.seq
        report.head_hash = entry.hash
    if expected_head is not None:
        report.anchor_found = expected_head in hashes or expected_head == GENESIS_HASH
        if not report.anchor_found:
            report.problems.append(
                f"no entry has the expected hash {expected_head}: entries were removed from "
                "the end of the log, or it is another log"
            )
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        hidden = len(report.problems) - MAX_PROBLEMS_SHOWN
        report.problems = report.problems[:MAX_PROBLEMS_SHOWN] + [f"... and {hidden} more"]
    return report
