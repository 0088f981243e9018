"""Shared test factories: profiles (a victim, her clone, strangers, people of a test's own)
and the API helpers several test modules use (ingest, keys, scan jobs and workers).

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ImageOps
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import REPO_ROOT, RunningServer, stop_process
from tests.images import b64, jpeg_bytes, photo


def jane(**overrides: Any) -> dict[str, Any]:
    record = {
        "platform": "twitter",
        "handle": "janedoe",
        "display_name": "Jane Doe",
        "bio": "Marine biologist in Lisbon. Writing about octopus intelligence and coral reefs.",
        "avatar_base64": b64(jpeg_bytes(photo(1))),
        "created_at": "2011-03-02T10:00:00Z",
        "followers_count": 5400,
        "verified": True,
    }
    return {**record, **overrides}


def jane_clone(**overrides: Any) -> dict[str, Any]:
    copied = photo(1).resize((64, 64)).transpose(0)  # downscaled and mirrored
    record = {
        "platform": "twitter",
        "handle": "jane_doe_official",
        "display_name": "Jаne Doe ✔",  # Cyrillic а
        "bio": "Marine biologist in Lisbon. Writing about octopus intelligence and coral reefs. "
        "DM for promo",
        "avatar_base64": b64(jpeg_bytes(copied, quality=50)),
        "created_at": "2019-08-01T10:00:00Z",
        "followers_count": 12,
    }
    return {**record, **overrides}


def strangers(count: int, *, offset: int = 100) -> list[dict[str, Any]]:
    names = ["Mark Smith", "Luca Rossi", "Aiko Tanaka", "Omar Haddad", "Eva Novak", "Ben Carter"]
    return [
        {
            "platform": "twitter",
            "handle": f"user{offset + i}",
            "display_name": f"{names[i % len(names)]} {i}",
            "bio": f"Profile number {i}: football, cooking and {['jazz', 'chess', 'maths'][i % 3]}",
            "avatar_base64": b64(jpeg_bytes(photo(offset + i, size=96))),
        }
        for i in range(count)
    ]


def items(records: list[Any]) -> list[tuple[str, Any]]:
    return [(f"index {i}", r) for i, r in enumerate(records)]


def unique_tag() -> str:
    # Letters only: digits at the end of a name or handle are folded away as decorations.
    return "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:8])


def person(tag: str, seed: int) -> dict[str, Any]:
    """A profile no other test ingests: its own name, handle, bio and photo."""
    return {
        "platform": "twitter",
        "handle": f"vic{tag}",
        "display_name": f"Quillon {tag.capitalize()}",
        "bio": f"Glassblower in Tromsø, {tag}: lamps, vases and the occasional chandelier.",
        "avatar_base64": b64(jpeg_bytes(photo(seed))),
        "created_at": "2012-05-01T09:00:00Z",
        "followers_count": 3200,
        "verified": True,
    }


def copy_of(victim: dict[str, Any], seed: int, *, handle: str) -> dict[str, Any]:
    return {
        "platform": "twitter",
        "handle": handle,
        "display_name": victim["display_name"].replace("o", "о"),  # Cyrillic о
        "bio": victim["bio"] + " DM for collabs",
        "avatar_base64": b64(jpeg_bytes(ImageOps.mirror(photo(seed).resize((96, 96))))),
        "created_at": "2024-01-10T09:00:00Z",
        "followers_count": 3,
    }


def ingest(client: httpx.Client, *records: dict[str, Any]) -> None:
    response = client.post("/v1/profiles", json=list(records))
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.text


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    # RFC 9457 problem details around the contract's `error` object.
    assert set(body) == {"type", "title", "status", "detail", "instance", "error"}
    assert body["error"]["message"] and body["status"] == status
    return str(body["error"]["code"])


def create_key(server: RunningServer, *, role: str) -> dict[str, str]:
    """A new key made with the command line, as an operator would; its request headers."""
    name = f"{role}-{unique_tag()}"
    result = CliRunner().invoke(
        app, ["keys", "create", "--role", role, "--name", name, "--data-dir", str(server.data_dir)]
    )
    assert result.exit_code == 0, result.output
    return {"Authorization": f"Bearer {result.output.strip().splitlines()[-1]}"}


SCAN_ENV = {
    "CLONEFINDER_IN_PROCESS_WORKER": "0",
    "CLONEFINDER_SCAN_CHUNK_SIZE": "4",
    "CLONEFINDER_SCAN_LEASE_S": "3",
    "CLONEFINDER_SCAN_POLL_S": "0.1",
    "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
}

READY_TIMEOUT_S = 120.0

JOB_TIMEOUT_S = 300.0


class WorkerProcess:
    """`clonefinder worker` on a server's data dir; `id` is the worker id it logs at start."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "service.cli", "worker", "--data-dir", str(data_dir)]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.id = self._wait_started()

    def _wait_started(self) -> str:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = re.search(r"scan worker (\S+) started", self.log())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.2)
        pytest.fail(f"worker not started after {READY_TIMEOUT_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash or an OOM kill."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


def people(count: int, *, prefix: str) -> list[dict[str, Any]]:
    names = ["Mark Smith", "Luca Rossi", "Aiko Tanaka", "Omar Haddad", "Eva Novak"]
    return [
        {
            "platform": "twitter",
            "handle": f"{prefix}{i}",
            "display_name": f"{names[i % len(names)]} {i % 7}",
            "bio": f"Scan record {i}: football and {['jazz', 'chess', 'maths'][i % 3]}",
        }
        for i in range(count)
    ]


def jsonl(records: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def submit(client: httpx.Client, records: list[Any], **params: Any) -> str:
    answer = client.post(
        "/v1/scans",
        content=jsonl(records),
        params=params,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/scans/{job_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_until(
    client: httpx.Client, job_id: str, *, processed: int | None = None
) -> dict[str, Any]:
    """Poll until the job is finished, or has processed at least `processed` records."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = status(client, job_id)
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        if processed is not None and job["processed"] >= processed:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished: {status(client, job_id)}")


def results(client: httpx.Client, job_id: str, *, offset: int = 0) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/scans/{job_id}/results", params={"offset": offset})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in answer.text.splitlines()]
