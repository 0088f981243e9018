"""Bulk scans end to end: a real `clonefinder serve` (its own worker off), real `clonefinder
worker` processes that are started, killed (SIGKILL) and restarted, and a real HTTP client.

Chunks are 4 records and leases 3 s, so a kill lands mid-job and its chunk comes back soon.
The tests of one module share the server; those that need no worker come first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.store import JobStore, Store
from tests.conftest import REPO_ROOT
from tests.servers import ServerProcess, server_process
from tests.support import (
    JOB_TIMEOUT_S,
    SCAN_ENV,
    WorkerProcess,
    jane,
    jane_clone,
    jsonl,
    people,
    results,
    status,
    strangers,
    submit,
    wait_until,
)

pytestmark = pytest.mark.slow

BIG_JOB = 800  # records: long enough (200 chunks) for a kill to land before the end


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
