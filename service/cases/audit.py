"""Checking the audit log: is every entry as it was written, in its place, and signed?

Each entry's hash covers its own content and its predecessor's hash, so:
- an edited entry no longer matches its own hash;
- a removed entry leaves a gap in the sequence, and the next entry's `prev_hash` names a hash
  that is not the one before it;
- entries moved (their contents swapped between sequence numbers) match neither their hashes
  nor their links.
Hashes can be recomputed by anyone, so each entry's hash is also signed with the service's
Ed25519 key: a chain rewritten with fresh hashes fails at its first rewritten entry unless the
rewriter also held the key. Entries written before the log was signed carry no signature;
they are reported as unsigned, and the first signed entry after them covers them through its
hash. Only the last entries can be removed without a trace inside the log itself; a head
recorded elsewhere (each evidence bundle's manifest records the head at export time) covers
that.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.evidence.signing import fingerprint, signature_valid
from service.store.audit import GENESIS_HASH, AuditEntry, signed_message

MAX_PROBLEMS_SHOWN = 100
_SHOWN_CHARS = 80


@dataclass
class ChainReport:
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    anchor_found: bool | None = None  # None: no expected head was given
    first_failure: int | None = None  # the sequence number of the first entry that fails
    signed: int = 0  # entries whose signature was checked and holds
    # Entries before the first signed one (written before the log was signed): (first, last).
    unsigned: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.anchor_found is not False

    def fail(self, seq: int, problem: str) -> None:
        if self.first_failure is None:
            self.first_failure = seq
        self.problems.append(f"entry {seq}: {problem}")


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    public_keys: Sequence[Ed25519PublicKey],
    expected_head: str | None = None,
    signed_from: int | None = None,
) -> ChainReport:
    """Walk the log in sequence order and name every entry that breaks the chain or whose
    signature does not hold with one of `public_keys`.

    An unsigned entry fails once an entry before it is signed (its signature was removed), or
    from `signed_from` on: the place signing began, noted from an earlier check, so that a log
    stripped of every signature cannot pass for one written before signing. `expected_head` is
    a hash recorded earlier (a bundle's `audit_head`): the log must still hold an entry with
    it, or entries were removed from its end.
    """
    keys = {fingerprint(key): key for key in public_keys}
    report = ChainReport()
    signed_before = False
    expected_seq = 1
    prev_hash = GENESIS_HASH
    hashes: set[str] = set()
    for entry in entries:
        report.entries += 1
        if entry.seq != expected_seq:
            report.fail(
                entry.seq,
                f"expected entry {expected_seq} here "
                f"({'removed' if entry.seq > expected_seq else 'out of order'})",
            )
        if entry.expected_hash() != entry.hash:
            report.fail(entry.seq, "its content does not match its hash (edited or moved)")
        if entry.prev_hash != prev_hash:
            report.fail(
                entry.seq,
                "does not follow the entry before it (an entry before it was removed, edited "
                "or moved)",
            )
        _check_signature(entry, keys, report, must_be_signed=signed_before, signed_from=signed_from)
        signed_before = signed_before or entry.signature is not None
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


def _check_signature(
    entry: AuditEntry,
    keys: dict[str, Ed25519PublicKey],
    report: ChainReport,
    *,
    must_be_signed: bool,
    signed_from: int | None,
) -> None:
    if entry.signature is None:
        if must_be_signed:
            report.fail(
                entry.seq, "unsigned, though entries before it are signed (signature removed)"
            )
        elif signed_from is not None and entry.seq >= signed_from:
            report.fail(
                entry.seq,
                f"unsigned, though the log is signed from entry {signed_from} on (signature "
                "removed)",
            )
        else:
            first = entry.seq if report.unsigned is None else report.unsigned[0]
            report.unsigned = (first, entry.seq)
        return
    key = keys.get(entry.key_fingerprint or "")
    if key is None:
        named = entry.key_fingerprint or "an unnamed key"
        if not named.isprintable() or len(named) > _SHOWN_CHARS:
            named = ascii(named)[:_SHOWN_CHARS]
        report.fail(
            entry.seq,
            f"signed by {named}, not by a key given: its signature cannot be checked (give "
            "that key, if it was the service's before)",
        )
        return
    try:
        signature = base64.b64decode(entry.signature, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if base64.b64encode(signature).decode("ascii") != entry.signature:
        signature = b""  # another spelling of it: base64 ignores its last character's spare bits
    if not signature_valid(key, signed_message(entry.seq, entry.hash), signature):
        report.fail(
            entry.seq,
            "its signature does not match (it, or an entry before it, was rewritten by "
            "someone without the signing key)",
        )
        return
    report.signed += 1
