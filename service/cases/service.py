"""Cases: a victim, the accounts that impersonate it, and immutable captures of each.

Adding an account to a case captures it: the full stored record as it is at that moment, the
avatar's exact bytes and SHA-256, the capture time, the source address, the score, signals and
reasons against the victim, and the software and model versions that produced them. A capture
never changes; capturing again adds one beside it. Exports (JSON, CSV, PDF, signed bundle) are
made from the captures, never from the live profiles, so a profile changed or erased since does
not change the evidence. Every change and every export is written to the audit log.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from indexers import avatar as avatar_hashing
from models.errors import InvalidInputError, NotFoundError
from models.profile import identity_key, parse_query
from models.result import Match, Result
from models.scoring import ScoringModel
from service.auth.roles import FULL_ACCESS, Caller, ProfileAccess
from service.evidence import EvidenceExporter, Export, ExportFormat, ExportInfo
from service.evidence.exports import CaptureView, EvidenceItem, EvidenceSet, capture_digest
from service.matching.matcher import Matcher, match_of
from service.matching.own_accounts import OwnAccount
from service.matching.profile_sides import AvatarReader, side_of_row
from service.store import ProfileRow, Store
from service.store.audit import Actor, AuditStore, canonical_json, rfc3339
from service.store.cases import (
    STATUSES,
    Captured,
    CaptureRow,
    CaseRow,
    CaseStore,
    ItemRow,
    NewCapture,
    NewCase,
)
from service.store.jobs import JobStore
from service.store.store import AvatarBlob

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 500
MAX_NOTES_CHARS = 20_000
MAX_ITEMS_PER_ADD = 100


@dataclass(frozen=True)
class Operator:
    """Who acts on cases: the name the audit log records, the key that owns what it creates,
    and the cases it may see (`scope` None: every case)."""

    actor: Actor
    owner_key_id: int | None
    scope: int | None

    @classmethod
    def of(cls, caller: Caller) -> Operator:
        # Administrators (who manage keys) see every key's cases, as with scans and alerts.
        return cls(
            actor=Actor(caller.name, caller.key_id),
            owner_key_id=caller.key_id,
            scope=None if caller.can("keys") else caller.key_id,
        )

    @classmethod
    def local(cls, name: str) -> Operator:
        """The command line on the server's machine: sees every case."""
        return cls(actor=Actor(f"cli:{name}"), owner_key_id=None, scope=None)


class CheckIdentity(Protocol):
    """A check of one identity, as `Engine.check` runs it: what "add from a check" and
    "export a check" capture."""

    def __call__(
        self,
        raw: Any,
        *,
        top_k: int = ...,
        min_score: float | None = ...,
        access: ProfileAccess = ...,
        own_accounts: Sequence[OwnAccount] = ...,
    ) -> Result: ...


@dataclass(frozen=True)
class AddItems:
    """What to add to a case: one account by platform and handle, the matches of a check of
    the victim, or the accounts of one result line of a bulk scan."""

    platform: str | None = None
    handle: str | None = None
    from_check: bool = False
    top_k: int = 10
    min_score: float | None = None
    scan_id: str | None = None
    scan_line: int | None = None


@dataclass(frozen=True)
class CaseView:
    case: CaseRow
    items: list[ItemRow]
    captures: dict[int, list[CaptureRow]] = field(default_factory=dict)  # by item id


def software_version() -> str:
    try:
        return importlib.metadata.version("clonefinder")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


def _text(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    if len(value) > limit:
        raise _invalid(name, f"must be at most {limit} characters")
    if "\x00" in value:
        raise _invalid(name, "must not contain NUL characters")
    return value


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in STATUSES:
        raise _invalid("status", f"must be one of {', '.join(STATUSES)}")
    return value


def _invalid(name: str, message: str) -> InvalidInputError:
    text = f"field '{name}': {message}"
    return InvalidInputError(text, details=[{"field": name, "message": text}])


def _avatar_meta(blob: AvatarBlob | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    return {
        "sha256": blob.sha256,
        "mime": blob.mime,
        "bytes": len(blob.data),
        "width": blob.width,
        "height": blob.height,
    }


def _record(row: ProfileRow) -> dict[str, Any]:
    """The full stored record, as the API returns it (no image bytes; the avatar's digest)."""
    return row.to_stored().model_dump(mode="json", exclude_none=True)


class Cases:
    """Open cases, add and capture accounts, note and set statuses, export evidence."""

    def __init__(
        self,
        *,
        store: Store,
        matcher: Matcher,
        scorer: ScoringModel,
        avatars: AvatarReader,
        check: CheckIdentity,
        exporter: EvidenceExporter,
        embedding_model: str,
    ) -> None:
        self._profiles = store
        self._matcher = matcher
        self._scorer = scorer
        self._avatars = avatars
        self._check = check
        self._embedding_model = embedding_model
        self.exporter = exporter
        # The key that signs bundles signs the audit log too: one key to publish and keep.
        self.store = CaseStore(store, signer=exporter.signer)
        self.audit = AuditStore(store, signer=exporter.signer)
        self._jobs = JobStore(store)

    # -- cases --------------------------------------------------------------------------------

    def create(
        self,
        operator: Operator,
        *,
        platform: str,
        handle: str,
        title: str | None = None,
        notes: str | None = None,
    ) -> CaseRow:
        """Open a case for the victim, a stored profile named by platform and handle."""
        named = parse_query({"platform": platform, "handle": handle}, where="victim")
        victim = self._profiles.get(named.platform or "", named.handle or "")
        if victim is None:
            raise NotFoundError(f"no stored profile {platform}/{handle}: ingest the victim first")
        title = _text(title, "title", MAX_TITLE_CHARS) or (
            f"Impersonation of {victim.platform}/@{victim.handle}"
        )
        return self.store.create_case(
            operator.actor,
            NewCase(
                key_id=operator.owner_key_id,
                title=title,
                victim_platform=victim.platform,
                victim_handle=victim.handle,
                victim_profile_id=victim.id,
                notes=_text(notes, "notes", MAX_NOTES_CHARS) or "",
            ),
        )

    def all(self, operator: Operator) -> list[CaseRow]:
        return self.store.cases(key_id=operator.scope)

    def case(self, operator: Operator, case_id: int) -> CaseRow:
        found = self.store.case(case_id, key_id=operator.scope)
        if found is None:
            raise NotFoundError(f"no case {case_id}")
        return found

    def view(self, operator: Operator, case_id: int) -> CaseView:
        """The case with its items and every item's captures."""
        case = self.case(operator, case_id)
        captures: dict[int, list[CaptureRow]] = {}
        for capture in self.store.captures(case_id):
            captures.setdefault(capture.item_id, []).append(capture)
        return CaseView(case=case, items=self.store.items(case_id), captures=captures)

    def update(
        self,
        operator: Operator,
        case_id: int,
        *,
        title: str | None = None,
        notes: str | None = None,
        status: str | None = None,
    ) -> CaseRow:
        return update_case(self.store, operator, case_id, title=title, notes=notes, status=status)

    # -- items --------------------------------------------------------------------------------

    def add(self, operator: Operator, case_id: int, request: AddItems) -> list[Captured]:
        """Add (and capture) accounts: one by platform and handle, the matches of a check of
        the victim, or the accounts of a scan's result line. An account already in the case
        is captured again."""
        case = self.case(operator, case_id)
        victim = self._victim(case)
        ways = sum(
            [
                bool(request.platform or request.handle),
                request.from_check,
                request.scan_id is not None,
            ]
        )
        if ways != 1:
            raise InvalidInputError(
                "add one way: 'platform' and 'handle', or 'from_check', or 'scan_id' with 'line'"
            )
        if request.from_check:
            return self._add_from_check(operator, case, victim, request)
        if request.scan_id is not None:
            rows, source = self._scan_accounts(operator, victim, request)
        else:
            if not request.platform or not request.handle:
                raise InvalidInputError(
                    "an account is named by both 'platform' and 'handle'",
                    details=[{"field": "handle", "message": "platform and handle are needed"}],
                )
            named = parse_query({"platform": request.platform, "handle": request.handle})
            row = self._profiles.get(named.platform or "", named.handle or "")
            if row is None:
                raise NotFoundError(
                    f"no stored profile {request.platform}/{request.handle}: ingest it first"
                )
            if row.id == victim.id:
                raise _invalid("handle", "that is the victim's own account")
            rows, source = [row], "platform and handle"
        return [
            self.store.add_capture(operator.actor, case.id, capture)
            for capture in self._pair_captures(victim, rows, source=source)
        ]

    def capture(self, operator: Operator, case_id: int, item_id: int) -> Captured:
        """Capture an item again, as it is now; earlier captures stay as they were."""
        case = self.case(operator, case_id)
        item = self.item(operator, case_id, item_id)
        victim = self._victim(case)
        row = self._profiles.get(item.platform, item.handle)
        if row is None:
            raise NotFoundError(
                f"the profile {item.platform}/{item.handle} is no longer stored: its earlier "
                "captures remain the evidence"
            )
        (capture,) = self._pair_captures(victim, [row], source="captured again")
        return self.store.add_capture(operator.actor, case.id, capture)

    def item(self, operator: Operator, case_id: int, item_id: int) -> ItemRow:
        self.case(operator, case_id)
        found = self.store.item(case_id, item_id)
        if found is None:
            raise NotFoundError(f"no item {item_id} in case {case_id}")
        return found

    def item_captures(self, operator: Operator, case_id: int, item_id: int) -> list[CaptureRow]:
        self.item(operator, case_id, item_id)
        return self.store.captures(case_id, item_id=item_id)

    def update_item(
        self,
        operator: Operator,
        case_id: int,
        item_id: int,
        *,
        notes: str | None = None,
        status: str | None = None,
    ) -> ItemRow:
        return update_item(self.store, operator, case_id, item_id, notes=notes, status=status)

    def _victim(self, case: CaseRow) -> ProfileRow:
        row = self._profiles.get(case.victim_platform, case.victim_handle)
        if row is None:
            raise NotFoundError(
                f"the victim's profile {case.victim_platform}/{case.victim_handle} is no longer "
                "stored: ingest it again to capture more accounts"
            )
        return row

    def _add_from_check(
        self, operator: Operator, case: CaseRow, victim: ProfileRow, request: AddItems
    ) -> list[Captured]:
        result = self._check(
            {"platform": victim.platform, "handle": victim.handle},
            top_k=request.top_k,
            min_score=request.min_score,
        )
        stored = self._profiles.get_by_identity(
            (m.profile["platform"], m.profile["handle"]) for m in result.matches
        )
        victim_record, victim_avatar = _record(victim), self._avatar(victim.avatar_sha256)
        added = []
        for match in result.matches:
            row = stored.get(identity_key(match.profile["platform"], match.profile["handle"]))
            if row is None:
                continue  # erased since the check
            capture = self._new_capture(
                victim_record, victim_avatar, row, match, source="check of the victim"
            )
            added.append(self.store.add_capture(operator.actor, case.id, capture))
        return added

    def _scan_accounts(
        self, operator: Operator, victim: ProfileRow, request: AddItems
    ) -> tuple[list[ProfileRow], str]:
        scan_id = request.scan_id or ""
        # Job ids are 32 hex digits; anything else names no job (and never reaches SQL).
        is_id = len(scan_id) == 32 and all(c in "0123456789abcdef" for c in scan_id)
        job = self._jobs.get_job(scan_id) if is_id else None
        if job is None or (operator.scope is not None and job.owner_key_id != operator.scope):
            raise NotFoundError(f"no scan job {request.scan_id}")
        line = request.scan_line
        if line is None or line < 0:
            raise _invalid("line", "the result line to add from (0 for the first) is needed")
        found = self._jobs.results(job.id, offset=line, limit=1)
        if not found or found[0].line_no != line:
            raise NotFoundError(f"scan job {job.id} has no result line {line} (yet)")
        record = json.loads(found[0].result)
        named = [m.get("profile") or {} for m in record.get("matches") or []]
        named += list(record.get("members") or [])  # clusters mode: the group's accounts
        query = record.get("query") or {}
        named.append(query)
        keys = {
            identity_key(p["platform"], p["handle"])
            for p in named
            if isinstance(p, dict) and p.get("platform") and p.get("handle")
        }
        keys.discard(identity_key(victim.platform, victim.handle))
        rows = sorted(self._profiles.get_by_identity(keys).values(), key=lambda r: r.id)
        if not rows:
            raise NotFoundError(
                f"result line {line} of scan job {job.id} names no stored account but the victim"
            )
        if len(rows) > MAX_ITEMS_PER_ADD:
            rows = rows[:MAX_ITEMS_PER_ADD]
        return rows, f"scan {job.id} line {line}"

    # -- captures -----------------------------------------------------------------------------

    def _avatar(self, sha256: str | None) -> AvatarBlob | None:
        return None if sha256 is None else self._profiles.avatar(sha256)

    def _pair_captures(
        self, victim: ProfileRow, rows: Sequence[ProfileRow], *, source: str
    ) -> list[NewCapture]:
        """Score each account against the victim as a check of the victim would (with how
        common the victim's avatar, bio and name are in the index) and capture it."""
        matcher = self._matcher
        side = side_of_row(victim)
        _, popularity = matcher.neighbourhood(side, exclude_id=victim.id)
        evidence = matcher.evidence(side, rows, popularity=popularity)
        verdicts = self._scorer.score(evidence)
        victim_record, victim_avatar = _record(victim), self._avatar(victim.avatar_sha256)
        captures = []
        for row, pair, verdict in zip(rows, evidence, verdicts, strict=True):
            match = match_of(row, pair, verdict)
            captures.append(
                self._new_capture(victim_record, victim_avatar, row, match, source=source)
            )
        return captures

    def _new_capture(
        self,
        victim_record: dict[str, Any],
        victim_avatar: AvatarBlob | None,
        row: ProfileRow,
        match: Match,
        *,
        source: str,
        access: ProfileAccess = FULL_ACCESS,
    ) -> NewCapture:
        now = datetime.now(UTC)
        clone_record = access.profile(_record(row))
        clone_avatar = self._avatar(clone_record.get("avatar_sha256"))
        content = {
            "captured_at": rfc3339(now),
            "source": source,
            "source_url": clone_record.get("profile_url") or clone_record.get("url"),
            "victim": {"record": victim_record, "avatar": _avatar_meta(victim_avatar)},
            "clone": {"record": clone_record, "avatar": _avatar_meta(clone_avatar)},
            "score": match.score,
            "label": match.label,
            "signals": match.signals,
            "reasons": match.reasons,
            "likely_impersonator": match.likely_impersonator,
            "versions": self.versions(),
        }
        return NewCapture(
            platform=row.platform,
            handle=row.handle,
            profile_id=row.id,
            source=source,
            captured_at=now,
            document=canonical_json(content),
            sha256=capture_digest(content),
            clone_avatar=clone_avatar,
            victim_avatar=victim_avatar,
        )

    def versions(self) -> dict[str, str]:
        """The software and models that produce a capture's scores, signals and reasons."""
        return {
            "clonefinder": software_version(),
            "scoring_model": self._scorer.version,
            "embedding_model": self._embedding_model,
            "avatar_hashes": f"dct64 x {avatar_hashing.VIEWS} views, mirrored",
        }

    # -- exports ------------------------------------------------------------------------------

    def export(self, operator: Operator, case_id: int, fmt: ExportFormat) -> Export:
        """The case's evidence as `fmt`, made from its captures; recorded in the audit log."""
        view = self.view(operator, case_id)
        evidence = self._evidence(view)
        export = self.exporter.export(evidence, fmt, info=self._info(operator, f"case-{case_id}"))
        self.audit.record(
            operator.actor,
            "case.export",
            f"case {case_id}",
            {
                "format": fmt,
                "file": export.filename,
                "sha256": export.sha256,
                "evidence_digest": export.evidence_digest,
            },
        )
        return export

    def export_check(
        self,
        operator: Operator,
        raw: Any,
        fmt: ExportFormat,
        *,
        top_k: int = 10,
        min_score: float | None = None,
        access: ProfileAccess = FULL_ACCESS,
        own_accounts: Sequence[OwnAccount] = (),
    ) -> Export:
        """Run a check and export its result as evidence, captured now: how an individual,
        who has no cases, gets the evidence of its own check. Nothing but the audit entry is
        stored. The check, the victim's side and each captured account hold only what `access`
        may read (see `Engine.check`); the person's `own_accounts` are never among them."""
        query = parse_query(raw)
        result = self._check(
            query, top_k=top_k, min_score=min_score, access=access, own_accounts=own_accounts
        )
        own = (
            self._profiles.get(query.platform, query.handle)
            if access.by_name and query.platform and query.handle
            else None
        )
        if own is not None:
            victim_record, victim_avatar = _record(own), self._avatar(own.avatar_sha256)
        else:
            victim_record = query.model_dump(
                mode="json", exclude_none=True, exclude={"avatar_base64", "avatar_path"}
            )
            victim_avatar = None
            if query.has_avatar:
                read = self._avatars.read(query, base_dir=None)
                victim_avatar = read.blob if read is not None else None
            if victim_avatar is not None:
                victim_record["avatar_sha256"] = victim_avatar.sha256
        stored = self._profiles.get_by_identity(
            (m.profile["platform"], m.profile["handle"]) for m in result.matches
        )
        items = []
        avatars: dict[str, AvatarBlob] = {}
        for number, match in enumerate(result.matches, start=1):
            row = stored.get(identity_key(match.profile["platform"], match.profile["handle"]))
            if row is None:
                continue
            capture = self._new_capture(
                victim_record, victim_avatar, row, match, source="check", access=access
            )
            for blob in (capture.clone_avatar, capture.victim_avatar):
                if blob is not None:
                    avatars[blob.sha256] = blob
            content = json.loads(capture.document)
            items.append(
                EvidenceItem(
                    id=number,
                    status="open",
                    notes="",
                    source="check",
                    captures=[CaptureView(id=None, sha256=capture.sha256, content=content)],
                )
            )
        who = (
            f"{query.platform}/@{query.handle}"
            if query.platform and query.handle
            else (query.display_name or "an identity")
        )
        now = rfc3339(datetime.now(UTC))
        evidence = EvidenceSet(
            case={
                "id": None,
                "title": f"Check of {who}",
                "status": "open",
                "notes": "",
                "created_at": now,
                "updated_at": now,
                "victim": {"platform": query.platform, "handle": query.handle},
            },
            items=items,
            avatars=avatars,
        )
        export = self.exporter.export(evidence, fmt, info=self._info(operator, "check"))
        self.audit.record(
            operator.actor,
            "check.export",
            f"check of {who}",
            {
                "format": fmt,
                "matches": len(items),
                "sha256": export.sha256,
                "evidence_digest": export.evidence_digest,
            },
        )
        return export

    def public_key(self) -> dict[str, str]:
        return self.exporter.public_key()

    def _info(self, operator: Operator, name: str) -> ExportInfo:
        head = self.audit.head()
        return ExportInfo(
            name=name,
            exported_at=rfc3339(datetime.now(UTC)),
            exported_by=operator.actor.name,
            software=self.versions(),
            audit_head=None if head is None else {"seq": head.seq, "hash": head.hash},
        )

    def _evidence(self, view: CaseView) -> EvidenceSet:
        case = view.case
        items = []
        shas: set[str] = set()
        for item in view.items:
            captures = view.captures.get(item.id, [])
            if not captures:  # pragma: no cover - an item is created with its first capture
                continue
            for capture in captures:
                shas.update(
                    s for s in (capture.clone_avatar_sha256, capture.victim_avatar_sha256) if s
                )
            items.append(
                EvidenceItem(
                    id=item.id,
                    status=item.status,
                    notes=item.notes,
                    source=item.source,
                    captures=[
                        CaptureView(id=c.id, sha256=c.sha256, content=c.content()) for c in captures
                    ],
                )
            )
        return EvidenceSet(
            case={
                "id": case.id,
                "title": case.title,
                "status": case.status,
                "notes": case.notes,
                "created_at": rfc3339(case.created_at),
                "updated_at": rfc3339(case.updated_at),
                "victim": {"platform": case.victim_platform, "handle": case.victim_handle},
            },
            items=items,
            avatars=self.store.avatars(sorted(shas)),
        )


def validated_changes(**given: str | None) -> dict[str, str]:
    """The fields to set, checked: title and notes are bounded text, status one of STATUSES."""
    limits = {"title": MAX_TITLE_CHARS, "notes": MAX_NOTES_CHARS}
    changes: dict[str, str] = {}
    for name, value in given.items():
        if value is None:
            continue
        checked = _status(value) if name == "status" else _text(value, name, limits[name])
        assert checked is not None
        changes[name] = checked
    if not changes:
        raise InvalidInputError("nothing to change: give a title, notes or a status")
    if "title" in changes and not changes["title"].strip():
        raise _invalid("title", "must not be empty")
    return changes


def update_case(
    store: CaseStore,
    operator: Operator,
    case_id: int,
    *,
    title: str | None = None,
    notes: str | None = None,
    status: str | None = None,
) -> CaseRow:
    """Set a case's title, notes or status (needs only the store: the command line uses it
    without loading the model)."""
    changes = validated_changes(title=title, notes=notes, status=status)
    updated = store.update_case(operator.actor, case_id, changes, key_id=operator.scope)
    if updated is None:
        raise NotFoundError(f"no case {case_id}")
    return updated


def update_item(
    store: CaseStore,
    operator: Operator,
    case_id: int,
    item_id: int,
    *,
    notes: str | None = None,
    status: str | None = None,
) -> ItemRow:
    """Set an item's notes or status (needs only the store)."""
    if store.case(case_id, key_id=operator.scope) is None:
        raise NotFoundError(f"no case {case_id}")
    changes = validated_changes(notes=notes, status=status)
    updated = store.update_item(operator.actor, case_id, item_id, changes)
    if updated is None:
        raise NotFoundError(f"no item {item_id} in case {case_id}")
    return updated


def case_document(case: CaseRow) -> dict[str, Any]:
    return {
        "id": case.id,
        "title": case.title,
        "victim": {"platform": case.victim_platform, "handle": case.victim_handle},
        "notes": case.notes,
        "status": case.status,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


def capture_document(capture: CaptureRow) -> dict[str, Any]:
    content = capture.content()
    return {
        "id": capture.id,
        "item_id": capture.item_id,
        "captured_at": content.get("captured_at"),
        "sha256": capture.sha256,
        "content": content,
    }


def item_document(item: ItemRow, captures: Sequence[CaptureRow]) -> dict[str, Any]:
    latest = captures[-1].content() if captures else {}
    return {
        "id": item.id,
        "case_id": item.case_id,
        "platform": item.platform,
        "handle": item.handle,
        "source": item.source,
        "notes": item.notes,
        "status": item.status,
        "added_at": item.added_at,
        "updated_at": item.updated_at,
        "score": latest.get("score"),
        "label": latest.get("label"),
        "captures": [capture_document(c) for c in captures],
    }
