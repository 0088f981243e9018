"""The scan worker: claims chunks of scan jobs from the store, does them, writes the results.

Any number of workers, in any number of processes, work on one store (`clonefinder worker`
runs one; `serve` runs one in a thread unless told not to). A chunk is held under a lease
that a background thread renews; its results and its "done" mark are written in one
transaction that first checks the lease is still held, so a killed worker's chunk is redone
by another once its lease expires, and each input record gets exactly one result.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from models.errors import CloneFinderError, InvalidRecordError
from service.core.bounded_json import load_record, record_error
from service.core.observability import log_context
from service.core.settings import Settings
from service.matching.engine import Engine, RecordOutcome, scan_error_record
from service.scans.clusters import find_clusters
from service.store import ChunkClaim, InputLine, JobStore, ResultLine

logger = logging.getLogger(__name__)

PIPELINE_PIECE = 64  # records per stage of the pipeline a chunk goes through


class LeaseLostError(Exception):
    """The chunk's lease was lost (it expired and another worker took it) or its job was
    cancelled: stop working on it, its results would be refused anyway."""


def new_worker_id() -> str:
    """A name unique to this worker, that says where it runs (host and process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ScanWorker:
    """Does scan jobs' chunks until stopped."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        worker_id: str | None = None,
        take_jobs: bool = True,
    ) -> None:
        """`take_jobs=False` only keeps the engine's indexes in step with what other
        processes write (a server whose scans are left to separate workers)."""
        self.engine = engine
        self.settings = settings
        self.take_jobs = take_jobs
        self.worker_id = worker_id or new_worker_id()
        self.jobs = JobStore(engine.store, max_attempts=settings.scan_max_attempts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Work until `stop()`: claim a chunk, do it, repeat; sleep a little when idle."""
        if self.take_jobs:
            logger.info("scan worker %s started", self.worker_id)
        while not self._stop.is_set():
            try:
                # Profiles other processes ingested since (a server, workers with ingest=true).
                self.engine.refresh()
                claim = (
                    self.jobs.claim(self.worker_id, lease_s=self.settings.scan_lease_s)
                    if self.take_jobs
                    else None
                )
            except Exception:
                logger.exception("scan worker %s could not claim work", self.worker_id)
                self._stop.wait(self.settings.scan_poll_s)
                continue
            if claim is None:
                self._stop.wait(self.settings.scan_poll_s)
                continue
            # Every line logged while the chunk is done, here or in the engine, names it.
            with log_context(scan_job=claim.job_id, scan_chunk=claim.chunk_no):
                try:
                    self.process(claim)
                except LeaseLostError:
                    logger.info(
                        "scan job %s chunk %d: lease lost or job stopped; left to others",
                        claim.job_id,
                        claim.chunk_no,
                    )
                except Exception:
                    # The lease runs out and the chunk is tried again (a limited number of times).
                    logger.exception(
                        "scan job %s chunk %d failed in worker %s",
                        claim.job_id,
                        claim.chunk_no,
                        self.worker_id,
                    )
                    self._stop.wait(self.settings.scan_poll_s)
        if self.take_jobs:
            logger.info("scan worker %s stopped", self.worker_id)

    def start(self) -> None:
        """Run in a background thread (the server's in-process worker)."""
        self._thread = threading.Thread(target=self.run, name="scan-worker", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float | None = None) -> None:
        """Ask the loop to stop after the chunk in hand, and wait for it when it runs in a
        thread of ours. A chunk cut short is left to its lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- one chunk ------------------------------------------------------------------------

    def process(self, claim: ChunkClaim) -> bool:
        """Do one claimed chunk and write its results; False when they were refused."""
        logger.info(
            "scan job %s chunk %d: lines %d to %d",
            claim.job_id,
            claim.chunk_no,
            claim.first_line,
            claim.end_line - 1,
        )
        with _Heartbeat(self.jobs, claim, lease_s=self.settings.scan_lease_s) as beat:
            lines = self.jobs.inputs(claim.job_id, first=claim.first_line, end=claim.end_line)
            if claim.mode == "clusters":
                records = self._clusters(claim, lines, beat.check)
                results = [ResultLine(n, _dumps(r)) for n, r in enumerate(records)]
                errors = sum(1 for r in records if "error" in r)
                processed, is_total = len(lines), True
            else:
                records = self._against_index(claim, lines)
                results = [
                    ResultLine(line.line_no, _dumps(r))
                    for line, r in zip(lines, records, strict=True)
                ]
                errors = sum(1 for r in records if "error" in r)
                processed, is_total = len(lines), False
            beat.check()
            written = self.jobs.complete(
                claim, results, processed=processed, errors=errors, processed_is_total=is_total
            )
        if written:
            logger.info(
                "scan job %s chunk %d: %d records done", claim.job_id, claim.chunk_no, processed
            )
        return written

    def _against_index(self, claim: ChunkClaim, lines: list[InputLine]) -> list[dict[str, Any]]:
        options = claim.options
        items = [(line.label, _raw_record(line)) for line in lines]
        # Pieces of a chunk go through the engine's two-stage pipeline: the next piece is
        # embedded and searched while this one is compared.
        pieces = [items[i : i + PIPELINE_PIECE] for i in range(0, len(items), PIPELINE_PIECE)]
        try:
            records = [
                record
                for piece in self.engine.scan_batches(
                    pieces, top_k=int(options.get("top_k", 10)), min_score=options.get("min_score")
                )
                for record in piece
            ]
        except Exception:
            # One record broke the batch in a way no check should (a bug): do them one by one,
            # so only that record carries an error and the job goes on.
            logger.exception("scan job %s chunk %d: batch failed", claim.job_id, claim.chunk_no)
            records = [self._one(item, options) for item in items]
        if options.get("ingest"):
            self._ingest(items, records)
        return records

    def _one(self, item: tuple[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.engine.scan_batch(
                [item], top_k=int(options.get("top_k", 10)), min_score=options.get("min_score")
            )[0]
        except Exception:
            logger.exception("scan record %s failed", item[0])
            where, raw = item
            error = CloneFinderError("this record could not be processed")
            error.code = "internal"
            return scan_error_record(where, raw, error)

    def _ingest(self, items: list[tuple[str, Any]], records: list[dict[str, Any]]) -> None:
        """Also store the chunk's readable records; each result says what became of it."""
        wanted = [(i, item) for i, item in enumerate(items) if isinstance(item[1], dict)]
        if not wanted:
            return
        try:
            outcomes = self.engine.ingest([item for _, item in wanted]).outcomes
        except Exception:
            # As for checks: a record that breaks the batch in a way no rejection should (a
            # bug) must not fail the job, so the batch is redone record by record.
            logger.exception("scan ingest failed for a batch; ingesting its records one by one")
            outcomes = [self._ingest_one(item) for _, item in wanted]
        for (i, _), outcome in zip(wanted, outcomes, strict=True):
            entry: dict[str, Any] = {"status": outcome.status}
            if outcome.error:
                entry["error"] = outcome.error
            records[i]["ingest"] = entry

    def _ingest_one(self, item: tuple[str, Any]) -> RecordOutcome:
        try:
            return self.engine.ingest([item]).outcomes[0]
        except Exception:
            logger.exception("scan record %s could not be ingested", item[0])
            message = f"{item[0]}: this record could not be stored"
            error = {"code": "internal", "message": message, "field": None}
            return RecordOutcome(item[0], "rejected", None, None, error)

    def _clusters(
        self, claim: ChunkClaim, lines: list[InputLine], check: Callable[[], None]
    ) -> list[dict[str, Any]]:
        options = claim.options

        def progress(done: int) -> None:
            check()
            self.jobs.report_progress(claim, processed=done)

        return find_clusters(
            self.engine,
            [(line.label, _raw_record(line)) for line in lines],
            min_score=options.get("min_score"),
            progress=progress,
        )


class _Heartbeat:
    """Renews a claim's lease every third of it, in a thread, while the chunk is worked on;
    `check()` raises LeaseLostError once a renewal found the lease lost or the job stopped."""

    def __init__(self, jobs: JobStore, claim: ChunkClaim, *, lease_s: float) -> None:
        self._jobs = jobs
        self._claim = claim
        self._lease_s = lease_s
        self._done = threading.Event()
        self._lost = False
        self._thread = threading.Thread(target=self._beat, name="scan-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._lease_s / 3):
            try:
                if not self._jobs.renew(self._claim, lease_s=self._lease_s):
                    self._lost = True
                    return
            except Exception:  # a database hiccup: try again at the next beat
                logger.warning("could not renew the lease of %s", self._claim, exc_info=True)

    def check(self) -> None:
        if self._lost:
            raise LeaseLostError


def _raw_record(line: InputLine) -> Any:
    """The record of an input line, or the error that says why it cannot be read (not JSON,
    nested too deep: read within the same limits as the upload was)."""
    if line.problem is not None or line.raw is None:
        return record_error(line.label, line.problem or "empty")
    try:
        return load_record(line.raw, where=line.label)
    except InvalidRecordError as exc:
        return exc


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
