"""Bulk scans end to end: a real `clonefinder serve` (its own worker off), real `clonefinder
worker` processes that are started, killed (SIGKILL) and restarted, and a real HTTP client.

Chunks are 4 records and leases 3 s, so a kill lands mid-job and its chunk comes back soon.
The tests of one module share the server; those that need no worker come first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.store import JobStore, Store
from tests.conftest import REPO_ROOT, stop_process
from tests.servers import ServerProcess, server_process
from tests.service.matching.test_engine import jane, jane_clone, strangers

pytestmark = pytest.mark.slow

SCAN_ENV = {
    "CLONEFINDER_IN_PROCESS_WORKER": "0",
    "CLONEFINDER_SCAN_CHUNK_SIZE": "4",
    "CLONEFINDER_SCAN_LEASE_S": "3",
    "CLONEFINDER_SCAN_POLL_S": "0.1",
    "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
}
READY_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 300.0
BIG_JOB = 800  # records: long enough (200 chunks) for a kill to land before the end


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


class Pool:
    """The module's worker processes: started on demand, all stopped at the end."""

    def __init__(self, server: ServerProcess, root: Path) -> None:
        self.server = server
        self.root = root
        self.started: list[WorkerProcess] = []

    def start(self) -> WorkerProcess:
        env = {**os.environ, **SCAN_ENV}
        env.pop("CLONEFINDER_DATA_DIR", None)
        log = self.root / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(self.server.data_dir, log, env)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("scans-api")
    with server_process(root, env=SCAN_ENV) as running:
        corpus = [jane(), jane_clone(), *strangers(20)]
        answer = httpx.post(
            f"{running.base_url}/v1/profiles", json=corpus, headers=running.headers, timeout=60
        )
        assert answer.status_code == 200, answer.text
        yield running


@pytest.fixture(scope="module")
def pool(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    workers = Pool(server, tmp_path_factory.mktemp("workers"))
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as http:
        yield http


def make_key(server: ServerProcess, name: str, role: str = "platform") -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "create", "--role", role, "--name", name,
         "--data-dir", str(server.data_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {"Authorization": f"Bearer {done.stdout.strip().splitlines()[-1]}"}


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


def who_did(server: ServerProcess, job_id: str) -> list[tuple[int, str]]:
    """(line, worker id) of every result row of the job, straight from the store."""
    with Store.open(f"sqlite:///{server.data_dir / 'clonefinder.db'}") as store:
        return JobStore(store).result_workers(job_id)


# -- without workers ---------------------------------------------------------------------------


def test_the_openapi_document_describes_the_scan_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    create = paths["/v1/scans"]["post"]
    assert "Location" in create["responses"]["202"]["headers"]
    assert set(create["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "multipart/form-data",
    }
    assert (
        "application/x-ndjson"
        in paths["/v1/scans/{job_id}/results"]["get"]["responses"]["200"]["content"]
    )
    assert {"get", "delete"} <= set(paths["/v1/scans/{job_id}"])


def test_a_queued_job_is_cancelled_and_never_worked_on(client: httpx.Client) -> None:
    job_id = submit(client, people(6, prefix="cancel"))
    assert status(client, job_id)["state"] == "queued"
    cancelled = client.delete(f"/v1/scans/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    job = status(client, job_id)
    assert (job["state"], job["processed"], job["total"]) == ("cancelled", 0, 6)
    assert results(client, job_id) == []


def test_a_job_belongs_to_the_key_that_created_it(
    server: ServerProcess, client: httpx.Client
) -> None:
    owner, other = make_key(server, "scan-owner"), make_key(server, "scan-other")
    answer = client.post("/v1/scans", json=people(2, prefix="own"), headers=owner)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert answer.headers["location"] == f"/v1/scans/{job_id}"
    assert client.get(f"/v1/scans/{job_id}", headers=owner).status_code == 200
    for method, path in (
        ("GET", f"/v1/scans/{job_id}"),
        ("GET", f"/v1/scans/{job_id}/results"),
        ("DELETE", f"/v1/scans/{job_id}"),
    ):
        refused = client.request(method, path, headers=other)
        assert refused.status_code == 404, (method, path)
        assert refused.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/scans/{job_id}").status_code == 200  # the admin sees every job
    individual = make_key(server, "scan-individual", role="individual")
    assert client.post("/v1/scans", json=[], headers=individual).status_code == 403


def test_requests_that_cannot_become_a_job_are_refused(client: httpx.Client) -> None:
    wrong_type = client.post("/v1/scans", content=b"a,b", headers={"Content-Type": "text/csv"})
    assert wrong_type.status_code == 415
    assert client.post("/v1/scans", content=b"[{}, {").status_code == 422
    bad_option = client.post("/v1/scans", json={"profiles": [], "mode": "everything"})
    assert bad_option.status_code == 422
    assert "mode" in bad_option.json()["error"]["message"]
    assert client.post("/v1/scans?top_k=0", json=[]).status_code == 422
    assert client.get("/v1/scans/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/v1/scans/not-a-job/results").status_code == 404


# -- with workers ------------------------------------------------------------------------------


def test_a_killed_worker_leaves_each_line_done_exactly_once(
    server: ServerProcess, client: httpx.Client, pool: Pool
) -> None:
    first = pool.start()
    records = people(BIG_JOB, prefix="kill")
    job_id = submit(client, records)
    mid = wait_until(client, job_id, processed=12)
    first.kill()
    assert mid["state"] == "running" and mid["processed"] < BIG_JOB, "the kill came too late"
    second = pool.start()  # stays running for the next tests
    job = wait_until(client, job_id)
    assert (job["state"], job["processed"], job["total"]) == ("done", BIG_JOB, BIG_JOB)
    lines = results(client, job_id)
    assert [r["query"]["handle"] for r in lines] == [f"kill{i}" for i in range(BIG_JOB)]
    rows = who_did(server, job_id)
    assert [line for line, _ in rows] == list(range(BIG_JOB))
    by = {worker for _, worker in rows}
    assert by == {first.id, second.id}


def test_two_workers_share_a_job_and_never_do_a_line_twice(
    server: ServerProcess, client: httpx.Client, pool: Pool
) -> None:
    assert any(w.process.poll() is None for w in pool.started)
    pool.start()  # a second live worker, ready before the job is queued
    live = {w.id for w in pool.started if w.process.poll() is None}
    assert len(live) == 2
    job_id = submit(client, people(BIG_JOB, prefix="pair"))
    job = wait_until(client, job_id)
    assert (job["state"], job["processed"]) == ("done", BIG_JOB)
    rows = who_did(server, job_id)
    assert [line for line, _ in rows] == list(range(BIG_JOB))
    assert {worker for _, worker in rows} == live  # both did some of it
    assert job["rate"] > 0 and job["eta_s"] == 0
    for worker in pool.started:
        assert "Traceback" not in worker.log()


def test_json_list_jsonl_and_form_uploads_give_one_result_per_record_in_order(
    client: httpx.Client, pool: Pool
) -> None:
    assert any(w.process.poll() is None for w in pool.started)
    good = [jane_clone(handle=f"copy{i}") for i in range(3)] + people(5, prefix="list")
    bad = [{"platform": "twitter"}, {"platform": "twitter", "handle": "n", "followers_count": -1}]
    as_list = client.post("/v1/scans?min_score=0.3", json=[good[0], *bad, *good[1:]])
    as_object = client.post("/v1/scans", json={"profiles": good, "top_k": 1, "min_score": 0})
    body = jsonl([good[0], "{not json", *good[1:]])
    lines_with_blank = body.replace(b"\n", b"\n\n", 1)
    as_form = client.post(
        "/v1/scans",
        files={"file": ("p.jsonl", lines_with_blank, "application/x-ndjson")},
        data={"top_k": "2"},
    )
    for answer in (as_list, as_object, as_form):
        assert answer.status_code == 202, answer.text

    listed = results(client, wait_until(client, as_list.json()["id"])["id"])
    assert len(listed) == len(good) + 2
    assert listed[0]["matches"][0]["profile"]["handle"] == "janedoe"
    assert listed[1]["error"]["where"] == "index 1"  # a platform alone: nothing to look for
    assert "needs a display name" in listed[1]["error"]["message"]
    assert listed[2]["error"]["where"] == "index 2"
    assert listed[2]["error"]["field"] == "followers_count"
    assert [r["query"]["handle"] for r in listed[3:]] == [g["handle"] for g in good[1:]]

    job = wait_until(client, as_object.json()["id"])
    assert job["options"] == {
        "mode": "against_index",
        "top_k": 1,
        "min_score": 0.0,
        "ingest": False,
    }
    objects = results(client, job["id"])
    assert [r["query"]["handle"] for r in objects] == [g["handle"] for g in good]
    assert all(len(r["matches"]) == 1 for r in objects)
    assert [r["query"]["handle"] for r in results(client, job["id"], offset=6)] == [
        g["handle"] for g in good[6:]
    ]

    form_job = wait_until(client, as_form.json()["id"])
    assert (form_job["total"], form_job["errors"]) == (len(good) + 1, 1)
    formed = results(client, form_job["id"])
    assert formed[1]["error"]["where"] == "line 3"  # line 2 is the blank one
    assert "not valid JSON" in formed[1]["error"]["message"]
    assert [r["query"]["handle"] for r in formed[2:]] == [g["handle"] for g in good[1:]]


def test_a_clusters_job_groups_the_copies(client: httpx.Client, pool: Pool) -> None:
    upload = [
        jane_clone(handle="cluster_copy_1"),
        *people(4, prefix="alone"),
        jane_clone(handle="cluster_copy_2"),
    ]
    job_id = submit(client, upload, mode="clusters")
    job = wait_until(client, job_id)
    assert (job["state"], job["processed"]) == ("done", 6)
    groups = results(client, job_id)
    assert job["result_lines"] == len(groups) >= 1
    copies = next(g for g in groups if "cluster_copy_1" in {m["handle"] for m in g["members"]})
    handles = {m["handle"] for m in copies["members"]}
    assert {"cluster_copy_1", "cluster_copy_2", "janedoe"} <= handles
    assert copies["likely_original"]["handle"] == "janedoe"
    assert all(e["score"] >= 0.4 for e in copies["edges"])


def test_the_scan_command_runs_through_the_server(
    server: ServerProcess, pool: Pool, tmp_path: Path
) -> None:
    source = tmp_path / "suspects.jsonl"
    records = [jane_clone(handle="cli_copy"), *people(9, prefix="cli")]
    source.write_bytes(jsonl([records[0], "{broken", *records[1:]]))
    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "scan", str(source), "--out", str(out),
         "--server", server.base_url, "--key", server.admin_key, "--min-score", "0.5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one record was rejected
    assert "scanned 11 profiles" in done.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["matches"][0]["profile"]["handle"] == "janedoe"
    assert lines[1]["error"]["where"] == "line 2"
    assert [r["query"]["handle"] for r in lines[2:]] == [r["handle"] for r in records[1:]]


# -- a server's own worker ---------------------------------------------------------------------


def test_a_restarted_server_resumes_its_job(tmp_path: Path) -> None:
    env = {**SCAN_ENV, "CLONEFINDER_IN_PROCESS_WORKER": "1"}
    server = ServerProcess(tmp_path, env=env)
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as http:
            http.post("/v1/profiles", json=[jane(), jane_clone()]).raise_for_status()
            job_id = submit(http, people(BIG_JOB, prefix="resume"))
            mid = wait_until(http, job_id, processed=12)
            assert mid["processed"] < BIG_JOB, "the kill came too late"
        assert server._process is not None
        server._process.kill()  # SIGKILL: the in-process worker dies mid-chunk
        server._process.wait()
        server._process = None
        server.start()
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as http:
            job = wait_until(http, job_id)
            assert (job["state"], job["processed"]) == ("done", BIG_JOB)
            handles = [r["query"]["handle"] for r in results(http, job_id)]
        assert handles == [f"resume{i}" for i in range(BIG_JOB)]
        rows = who_did(server, job_id)
        assert [line for line, _ in rows] == list(range(BIG_JOB))
        assert len({worker for _, worker in rows}) == 2  # one worker per server process
    finally:
        server.stop()
