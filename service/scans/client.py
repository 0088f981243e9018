"""A bulk scan through a running server's API: what `clonefinder scan FILE --server URL` does.

The file is uploaded as a stream of JSON Lines (a CSV or JSON file is converted on the way,
and a relative `avatar_path`, which a server never reads, is sent inline as `avatar_base64`);
then the job is followed until it finishes, its result lines downloaded in input order as they
become ready (each request resumes at the line the previous one reached).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from models.errors import CloneFinderError, NotFoundError
from service.records import JSONL_SUFFIXES, read_records

logger = logging.getLogger(__name__)

UPLOAD_PIECE = 256 * 1024  # bytes sent per piece of the streamed upload
FINISHED = ("done", "failed", "cancelled")
_RETRIES = 5


class RemoteScanError(CloneFinderError):
    """The server refused the scan, failed it, or could not be reached."""

    code = "remote_scan_failed"


@dataclass
class RemoteScanSummary:
    job_id: str
    state: str
    lines: int = 0
    flagged: int = 0
    errors: int = 0


def remote_scan(
    file: Path,
    out: IO[str],
    *,
    server: str,
    key: str | None,
    options: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float = 60.0,
) -> RemoteScanSummary:
    """Upload `file`, wait for the job, write its result lines to `out` in input order.

    `progress(processed, total)` is called at each poll. Raises RemoteScanError when the
    server refuses the upload or the job fails or is cancelled (the lines written so far stay).
    """
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    params = {name: _param(value) for name, value in options.items() if value is not None}
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout_s) as client:
        try:
            response = client.post(
                "/v1/scans",
                params=params,
                content=_upload_body(file),
                headers={"Content-Type": "application/x-ndjson"},
            )
        except httpx.HTTPError as exc:
            raise RemoteScanError(f"cannot reach {server}: {exc}") from None
        job = _answer(response, "upload")
        summary = RemoteScanSummary(job_id=job["id"], state=job["state"])
        logger.info("scan job %s created on %s", summary.job_id, server)
        while True:
            job = _answer(_get(client, f"/v1/scans/{summary.job_id}"), "status")
            if progress is not None:
                progress(int(job["processed"]), int(job["total"]))
            _download(client, summary, out)
            if job["state"] in FINISHED and summary.lines >= int(job["result_lines"]):
                break
            time.sleep(poll_s)
        summary.state = job["state"]
        if job["state"] != "done":
            reason = f": {job['error']}" if job.get("error") else ""
            raise RemoteScanError(f"scan job {summary.job_id} {job['state']}{reason}")
        return summary


def _download(client: httpx.Client, summary: RemoteScanSummary, out: IO[str]) -> None:
    """Append the result lines ready after the ones already written."""
    for attempt in range(_RETRIES):
        try:
            with client.stream(
                "GET",
                f"/v1/scans/{summary.job_id}/results",
                params={"offset": summary.lines},
            ) as response:
                if response.status_code == 429:
                    raise _RetryLater(float(response.headers.get("Retry-After", "1")))
                if response.status_code != 200:
                    response.read()
                    _answer(response, "results")
                for line in response.iter_lines():
                    if not line:
                        continue
                    out.write(line + "\n")
                    summary.lines += 1
                    record = json.loads(line)
                    if record.get("error"):
                        summary.errors += 1
                    elif record.get("matches") or record.get("members"):
                        summary.flagged += 1
            return
        except (httpx.TransportError, _RetryLater) as exc:
            # Resumes where it stopped: the offset is the number of lines already written.
            wait = exc.seconds if isinstance(exc, _RetryLater) else 2.0**attempt
            logger.warning("results download interrupted (%s); resuming", exc)
            time.sleep(wait)
    raise RemoteScanError(f"cannot download the results of scan job {summary.job_id}")


class _RetryLater(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds:g} s")
        self.seconds = seconds


def _get(client: httpx.Client, path: str) -> httpx.Response:
    for attempt in range(_RETRIES):
        try:
            response = client.get(path)
        except httpx.TransportError as exc:
            logger.warning("%s: %s; retrying", path, exc)
            time.sleep(2.0**attempt)
            continue
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return response
    raise RemoteScanError(f"the server did not answer GET {path}")


def _answer(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        error = NotFoundError if response.status_code == 404 else RemoteScanError
        raise error(f"{what}: the server answered {response.status_code}: {message}")
    data: dict[str, Any] = response.json() if what != "results" else {}
    return data


def _param(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _upload_body(file: Path) -> Iterator[bytes]:
    """The file as JSON Lines, in pieces; avatar files it names are sent inline."""
    buffer: list[bytes] = []
    size = 0
    for line in _lines(file):
        data = (line + "\n").encode("utf-8")
        buffer.append(data)
        size += len(data)
        if size >= UPLOAD_PIECE:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def _lines(file: Path) -> Iterator[str]:
    base_dir = file.parent.resolve()
    if file.suffix.lower() in JSONL_SUFFIXES:
        # Line for line (blank ones too), so the server's "line N" is the file's line N.
        records = read_records(file)  # checks the file is readable and UTF-8
        del records
        with file.open(encoding="utf-8-sig", newline="") as handle:
            for line in handle:
                yield _with_inline_avatar(line.rstrip("\r\n"), base_dir)
        return
    for _, raw in read_records(file):
        try:
            text = None if isinstance(raw, BaseException) else json.dumps(raw, ensure_ascii=False)
        except (TypeError, ValueError):  # a number the reader left unconverted
            text = None
        if text is None:
            # Unreadable where it stands: sent as a record the server rejects, in its place.
            yield json.dumps(str(raw))
        else:
            yield _with_inline_avatar(text, base_dir)


def _with_inline_avatar(line: str, base_dir: Path) -> str:
    """A record naming a local avatar file carries its bytes instead: servers read no files."""
    if "avatar_path" not in line:
        return line
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or beyond what it decodes: sent as is
        return line
    if not isinstance(record, dict) or not isinstance(record.get("avatar_path"), str):
        return line
    path = Path(record["avatar_path"])
    path = path if path.is_absolute() else base_dir / path
    try:
        data = path.read_bytes()
    except OSError:
        return line  # the server says, on this record's result line, that it has no avatar
    del record["avatar_path"]
    record.setdefault("avatar_base64", base64.b64encode(data).decode("ascii"))
    return json.dumps(record, ensure_ascii=False)
