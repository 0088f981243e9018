"""Bulk scans as durable jobs: create one from a streamed upload, follow it, read its results.

The work itself is done by workers (`service.scans.worker`); this is what the API calls. A job
belongs to the key that created it: another key sees it only with the "keys" permission
(an administrator), and gets 404 otherwise, as if it did not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
)
from models.profile import JSON_INTEGER
from service.auth.roles import Caller
from service.core.settings import Settings
from service.scans.upload import (
    JSON_MEDIA_TYPES,
    JSONL_MEDIA_TYPES,
    MULTIPART_MEDIA_TYPE,
    ScanBody,
    ScanRecord,
    multipart_boundary,
    read_json,
    read_jsonl,
    read_multipart,
)
from service.store import InputLine, JobRow, JobStore, ResultLine, Store

logger = logging.getLogger(__name__)

# Input and result line numbers are stored as 64-bit signed integers.
MAX_LINE_NO = 2**63 - 1
INPUT_BATCH = 2_000  # input records stored per transaction while an upload streams in
RESULTS_PAGE = 1_000  # result lines read per query while results stream out
ABANDONED_UPLOAD_AGE = timedelta(hours=6)

ScanMode = Literal["against_index", "clusters"]
PublicState = Literal["queued", "running", "done", "failed", "cancelled"]


class ScanOptions(BaseModel):
    """A scan's options (interface.md section 2 for `top_k` and `min_score`)."""

    # Strict: the options' JSON types only (a form's text fields are typed by their reader).
    model_config = ConfigDict(extra="forbid", strict=True)

    mode: ScanMode = "against_index"
    top_k: Annotated[int, Field(ge=1, le=100), JSON_INTEGER] = 10
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    ingest: bool = False


@dataclass(frozen=True)
class ScanUpload:
    """A scan request as the API received it: its media type, the options given as query
    parameters, and the body as a (blocking) iterator of byte chunks."""

    content_type: str
    options: dict[str, Any]
    chunks: Iterable[bytes]


@dataclass(frozen=True)
class ScanStatus:
    id: str
    state: PublicState
    mode: str
    options: dict[str, Any]
    total: int
    processed: int
    errors: int
    result_lines: int
    rate: float | None  # records per second since the job started
    eta_s: float | None  # seconds left at that rate
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ScanService:
    """Creates, reads and cancels scan jobs on the store the engine uses."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.jobs = JobStore(store, max_attempts=settings.scan_max_attempts)
        self._settings = settings

    def drop_abandoned_uploads(self) -> int:
        """Erase uploads whose sender vanished long ago (the server died while receiving)."""
        return self.jobs.drop_abandoned_uploads(older_than=ABANDONED_UPLOAD_AGE)

    # -- create ---------------------------------------------------------------------------

    def create(self, upload: ScanUpload, *, caller: Caller) -> ScanStatus:
        """Store the upload record by record (never whole in memory), then queue the job.

        Options come from the query parameters, and for JSON and form bodies also from the
        body (query parameters win). A record that cannot be read becomes an error line of
        the results; a body that cannot be followed at all is refused and nothing is kept.
        """
        body = ScanBody()
        records = self._reader(upload, body)
        preliminary = _options({}, upload.options)
        job_id = self.jobs.create_job(
            owner_key_id=caller.key_id,
            mode=preliminary.mode,
            options=preliminary.model_dump(),
        )
        try:
            total = 0
            numbered = enumerate(records)
            while batch := list(islice(numbered, INPUT_BATCH)):
                self.jobs.add_inputs(
                    job_id,
                    [InputLine(n, record.label, record.raw, record.problem) for n, record in batch],
                )
                total += len(batch)
            options = _options(body.options, upload.options)
            if options.ingest and not caller.can("profiles.write"):
                raise PermissionDeniedError(
                    "ingest=true also needs the 'profiles.write' permission, "
                    f"which role '{caller.role}' does not have"
                )
            job = self.jobs.seal_job(
                job_id,
                total=total,
                chunk_size=self._settings.scan_chunk_size,
                mode=options.mode,
                options=options.model_dump(),
            )
        except BaseException:
            self.jobs.discard_job(job_id)
            raise
        logger.info("scan job %s queued: %d records, mode %s", job_id, total, job.mode)
        return _status(job)

    def _reader(self, upload: ScanUpload, body: ScanBody) -> Iterator[ScanRecord]:
        media_type = upload.content_type.split(";", 1)[0].strip().lower()
        limit = self._settings.max_record_bytes
        if media_type in JSON_MEDIA_TYPES or not media_type:
            return read_json(upload.chunks, body, max_record_bytes=limit)
        if media_type in JSONL_MEDIA_TYPES:
            return read_jsonl(upload.chunks, body, max_line_bytes=limit)
        if media_type == MULTIPART_MEDIA_TYPE:
            boundary = multipart_boundary(upload.content_type)
            return read_multipart(upload.chunks, body, boundary=boundary, max_line_bytes=limit)
        raise UnsupportedMediaTypeError(
            f"a scan takes application/json, application/x-ndjson or multipart/form-data, "
            f"not {media_type}"
        )

    # -- read -----------------------------------------------------------------------------

    def status(self, job_id: str, *, caller: Caller) -> ScanStatus:
        return _status(self._visible(job_id, caller))

    def results(self, job_id: str, *, caller: Caller, offset: int = 0) -> Iterator[bytes]:
        """The job's result lines from `offset` on, in order, as JSON Lines: every line done
        so far that follows on without a gap (a running job's later lines come in a later
        request, from the offset the client got to)."""
        self._visible(job_id, caller)  # before streaming starts, so a 404 is a real answer
        if not 0 <= offset <= MAX_LINE_NO:
            raise InvalidInputError(f"offset must be between 0 and {MAX_LINE_NO}")
        # The first page too is read before the answer starts: once the status is sent, a
        # failure could only break the body.
        first = self.jobs.results(job_id, offset=offset, limit=RESULTS_PAGE)
        return self._result_lines(job_id, offset, first)

    def _result_lines(self, job_id: str, offset: int, first: list[ResultLine]) -> Iterator[bytes]:
        expected = offset
        page = first
        while True:
            lines = []
            for line in page:
                if line.line_no != expected:
                    break
                lines.append(line.result)
                expected += 1
            if lines:
                yield ("\n".join(lines) + "\n").encode("utf-8")
            if len(lines) < RESULTS_PAGE:
                return
            page = self.jobs.results(job_id, offset=expected, limit=RESULTS_PAGE)

    def cancel(self, job_id: str, *, caller: Caller) -> ScanStatus:
        """Cancel a queued or running job: workers take no more of its chunks (results done
        so far stay readable). A finished job is left as it is."""
        self._visible(job_id, caller)
        job = self.jobs.cancel(job_id)
        if job is None:  # pragma: no cover - it existed a moment ago
            raise NotFoundError(f"no scan job {job_id}")
        return _status(job)

    def _visible(self, job_id: str, caller: Caller) -> JobRow:
        job = self.jobs.get_job(job_id) if _looks_like_id(job_id) else None
        if (
            job is None
            or job.state == "receiving"
            or (job.owner_key_id != caller.key_id and not caller.can("keys"))
        ):
            raise NotFoundError(f"no scan job {job_id}")
        return job


def _looks_like_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def _options(from_body: dict[str, Any], from_query: dict[str, Any]) -> ScanOptions:
    # An option given as null (JSON null, a form's "null") is an option not given.
    from_body = {k: v for k, v in from_body.items() if v is not None}
    merged = {**from_body, **{k: v for k, v in from_query.items() if v is not None}}
    try:
        # The body's options must hold on their own: a bad one is refused, not hidden by
        # the query parameter that wins over it.
        ScanOptions.model_validate(from_body)
        return ScanOptions.model_validate(merged)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in err["loc"]) or None,
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        first = details[0]
        raise InvalidInputError(
            f"option '{first['field']}': {first['message']}", details=details
        ) from None


def _status(job: JobRow) -> ScanStatus:
    total = job.total or 0
    rate = eta = None
    if job.started_at is not None:
        until = job.finished_at or datetime.now(UTC)
        elapsed = (until - job.started_at).total_seconds()
        if elapsed > 0 and job.processed:
            rate = round(job.processed / elapsed, 1)
            if job.state in ("queued", "running"):
                eta = round((total - job.processed) / rate, 1)
    if job.state in ("done", "failed", "cancelled"):
        eta = 0.0 if job.state == "done" else None
    state: PublicState = "queued" if job.state == "receiving" else job.state
    return ScanStatus(
        id=job.id,
        state=state,
        mode=job.mode,
        options=dict(job.options),
        total=total,
        processed=job.processed,
        errors=job.errors,
        result_lines=job.result_lines,
        rate=rate,
        eta_s=eta,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
