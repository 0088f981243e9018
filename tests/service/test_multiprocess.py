"""Scaled out for real: two `clonefinder serve` processes and two `clonefinder worker` processes
on one PostgreSQL database and one Milvus (a milvus-lite server of its own), each process with
its own data dir, talked to over HTTP. What one API process is told, the other answers: a
profile ingested through one is found through the other, a profile deleted through one is gone
from the other and stays gone, and a bulk scan submitted through one is shared by the two
workers (each line once) and agrees with checks through the other.

The FAISS variant runs the same ingest and delete through two API processes whose indexes are
their own, each following the store's change log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.store import JobStore, Store
from tests.conftest import REPO_ROOT, _free_port, stop_process
from tests.servers import ServerProcess
from tests.service.conftest import _postgres_database
from tests.support import (
    WorkerProcess,
    jane,
    jane_clone,
    people,
    results,
    strangers,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MILVUS_LITE = Path(sys.executable).parent / "milvus-lite"  # the milvus extra's server
SCAN_LINES = 48
# How far a similarity may move with the batch its bio was embedded in (see the scan test).
BATCH_DRIFT = 0.05
ENV = {
    "CLONEFINDER_IN_PROCESS_WORKER": "false",
    "CLONEFINDER_SCAN_CHUNK_SIZE": "4",
    "CLONEFINDER_SCAN_POLL_S": "0.05",
    "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
}


@contextmanager
def milvus_server(root: Path) -> Iterator[str]:
    """A milvus-lite server process on a free port; its URI."""
    if not MILVUS_LITE.exists():
        pytest.skip(f"no milvus-lite server at {MILVUS_LITE} (the milvus extra)")
    port = _free_port()
    log_path = root / "milvus.log"
    command = [str(MILVUS_LITE), "server", "--data-dir", str(root / "milvus.db")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "listening" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"milvus-lite server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


class Cluster:
    """Two API processes and any workers, started at once, on one store and one vector index."""

    def __init__(self, root: Path, env: dict[str, str], *, workers: int) -> None:
        self.env = {**os.environ, **ENV, **env}
        self.env.pop("CLONEFINDER_DATA_DIR", None)
        self.apis = [ServerProcess(root / f"api{i}", env=self.env) for i in range(2)]
        self.root = root
        self.worker_count = workers
        self.workers: list[WorkerProcess] = []

    def start(self, stack: ExitStack) -> None:
        for api in self.apis:
            api.data_dir.mkdir(parents=True)
            stack.callback(api.stop)
        with ThreadPoolExecutor(len(self.apis) + self.worker_count) as pool:
            starting = [pool.submit(api.start) for api in self.apis]
            joining = [pool.submit(self._worker, i) for i in range(self.worker_count)]
            for future in starting:
                future.result()
            for future in joining:
                self.workers.append(future.result())
                stack.callback(self.workers[-1].stop)

    def _worker(self, i: int) -> WorkerProcess:
        data_dir = self.root / f"worker{i}"
        return WorkerProcess(data_dir, self.root / f"worker{i}.log", self.env)

    def clients(self, stack: ExitStack) -> list[httpx.Client]:
        """One HTTP client per API process, all with the one admin key (made by whichever
        process created it first in the shared store)."""
        keys = [api.data_dir / "admin.key" for api in self.apis]
        keys = [key for key in keys if key.exists()]
        assert len(keys) == 1, "exactly one process makes the first admin key"
        headers = {"Authorization": f"Bearer {keys[0].read_text().strip()}"}
        return [
            stack.enter_context(httpx.Client(base_url=api.base_url, headers=headers, timeout=60))
            for api in self.apis
        ]

    def logs(self) -> str:
        texts = [api.log() for api in self.apis] + [w.log() for w in self.workers]
        return "\n".join(texts)


def handles(result: dict[str, Any]) -> list[str]:
    return [m["profile"]["handle"] for m in result["matches"]]


def check(client: httpx.Client, record: dict[str, Any], **params: Any) -> dict[str, Any]:
    answer = client.post("/v1/checks", json=record, params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def ingest(client: httpx.Client, records: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/profiles", json=records)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0, answer.text


def ingest_and_delete_agree(first: httpx.Client, second: httpx.Client) -> None:
    """Ingested through one, found through the other at once; deleted through the other, gone
    from the first at once and for good."""
    ingest(first, [jane(), *strangers(6)])
    found = check(second, jane_clone())
    assert handles(found)[:1] == ["janedoe"], found
    assert second.get("/v1/profiles/twitter/janedoe").status_code == 200

    assert second.delete("/v1/profiles/twitter/janedoe").status_code == 204
    assert first.get("/v1/profiles/twitter/janedoe").status_code == 404
    assert "janedoe" not in handles(check(first, jane_clone(), min_score=0))
    # More writes through both (a later change applied by every process) bring nothing back.
    ingest(first, strangers(4, offset=300))
    ingest(second, strangers(4, offset=400))
    for client in (first, second):
        assert "janedoe" not in handles(check(client, jane_clone(), min_score=0))
        later = strangers(4, offset=400)[2]
        query = {"display_name": later["display_name"], "bio": later["bio"]}
        assert "user402" in handles(check(client, query, min_score=0))
    # And the profile comes back when it is ingested again, through either.
    ingest(second, [jane()])
    assert handles(check(first, jane_clone()))[:1] == ["janedoe"]


@pytest.fixture(scope="module", autouse=True)
def _model_exported() -> None:
    """The session's model cache holds the ONNX export before processes start together, or
    each of them would export it at once (as many times the work on a small machine)."""
    cache = os.environ.get("CLONEFINDER_MODEL_CACHE_DIR")
    if cache and not any(Path(cache).glob("*.onnx")):
        export = "from pathlib import Path; from indexers.bio import BioEmbedder; "
        export += f"BioEmbedder(cache_dir=Path({cache!r}))"
        subprocess.run([sys.executable, "-c", export], cwd=REPO_ROOT, check=True, timeout=300)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, _postgres_admin: Any) -> Iterator[str]:
    yield from _postgres_database(request)


def test_two_apis_and_two_workers_on_postgresql_and_milvus_answer_alike(
    tmp_path: Path, postgres_url: str
) -> None:
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    with ExitStack() as stack:
        uri = stack.enter_context(milvus_server(tmp_path))
        env = {
            "CLONEFINDER_DATABASE_URL": postgres_url,
            "CLONEFINDER_VECTOR_BACKEND": "milvus",
            "CLONEFINDER_MILVUS_URI": uri,
        }
        cluster = Cluster(tmp_path, env, workers=2)
        cluster.start(stack)
        first, second = cluster.clients(stack)

        ingest_and_delete_agree(first, second)

        # A bulk scan through the first API, done by the two workers between them.
        lines = [jane_clone(), *people(SCAN_LINES - 1, prefix="scan")]
        job_id = submit(first, lines, min_score=0.3, top_k=3)
        job = wait_until(second, job_id)  # followed through the other API
        assert (job["state"], job["processed"]) == ("done", SCAN_LINES), job
        with Store.open(postgres_url) as store:
            done_by = JobStore(store).result_workers(job_id)
        assert [line for line, _ in done_by] == list(range(SCAN_LINES))  # each line once
        assert {worker for _, worker in done_by} == {w.id for w in cluster.workers}
        scanned = results(second, job_id)
        assert len(scanned) == SCAN_LINES
        assert handles(scanned[0])[:1] == ["janedoe"]
        for line in (0, 1, 7, SCAN_LINES - 1):
            direct = check(second, lines[line], min_score=0.3, top_k=3)
            assert scanned[line]["query"] == direct["query"]
            # The int8 embedding model quantizes a batch's activations together, so a bio's
            # vector moves a little with the batch it came in: a scan's and a check's
            # similarities agree to within that, not to the last digit, and so do their
            # verdicts (a score may still step across one step of the calibration).
            assert len(scanned[line]["matches"]) == len(direct["matches"])
            by_handle = {m["profile"]["handle"]: m for m in direct["matches"]}
            for match in scanned[line]["matches"]:
                if match["profile"]["handle"] not in by_handle:
                    continue
                same = by_handle[match["profile"]["handle"]]
                assert match["label"] == same["label"]
                for field, value in match["signals"].items():
                    if value is None:
                        assert same["signals"][field] is None
                    else:
                        assert value == pytest.approx(same["signals"][field], abs=BATCH_DRIFT)
        assert "Traceback" not in cluster.logs()


def test_two_apis_with_their_own_faiss_indexes_follow_each_others_writes(
    tmp_path: Path, postgres_url: str
) -> None:
    with ExitStack() as stack:
        env = {"CLONEFINDER_DATABASE_URL": postgres_url, "CLONEFINDER_VECTOR_BACKEND": "faiss"}
        # A slow background refresh, so that a check must catch up by itself.
        env["CLONEFINDER_SCAN_POLL_S"] = "30"
        cluster = Cluster(tmp_path, env, workers=0)
        cluster.start(stack)
        first, second = cluster.clients(stack)
        ingest_and_delete_agree(first, second)
        assert "Traceback" not in cluster.logs()
