"""Operating the service, against a real server process: its metrics (as an admin, and on the
metrics port without a key), request ids, JSON log lines, and the liveness and readiness
probes."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app as cli
from service.core.observability.logs import JsonFormatter, TextFormatter, formatter_for
from service.core.settings import Settings
from tests.conftest import _free_port
from tests.servers import ServerProcess, server_process
from tests.service.webhook_receiver import Receiver, wait_for
from tests.support import copy_of, person, unique_tag

pytestmark = pytest.mark.slow

STAGES = ("parse", "avatar", "embedding", "candidates", "scoring")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[ServerProcess]:
    env = {
        "CLONEFINDER_LOG_FORMAT": "json",
        "CLONEFINDER_METRICS_PORT": str(metrics_port),
        "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
        "CLONEFINDER_AVATAR_FETCH_ALLOW_PRIVATE": "1",  # the webhook receiver is on localhost
        "CLONEFINDER_WEBHOOK_RETRY_BASE_S": "0.05",
        "CLONEFINDER_WEBHOOK_POLL_INTERVAL_S": "0.1",
        "CLONEFINDER_SCAN_POLL_S": "0.1",
    }
    with server_process(tmp_path_factory.mktemp("observability"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as http:
        yield http


def parse(text: str) -> dict[str, list[Sample]]:
    """The samples of each family, by family name (the text parser raises on a bad line)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    family = next(name for name in families if sample.startswith(name))
    found = [
        s.value
        for s in families[family]
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{sample}{labels}: {found}"
    return found[0]


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's JSON log lines (its stdout shares the file, so other lines may be there)."""
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def test_metrics_count_what_a_check_an_ingest_a_scan_and_a_webhook_did(
    server: ServerProcess, client: httpx.Client, receiver: Receiver
) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9301)
    path = f"/hook-{tag}"
    answer = client.post("/v1/profiles", json=[victim, {"platform": "twitter"}])
    assert answer.json()["rejected"] == 1, answer.text
    watch = {"identity": {"platform": "twitter", "handle": victim["handle"]}}
    answer = client.post("/v1/watchlist", json={**watch, "webhook_url": receiver.url(path)})
    assert answer.status_code == 201, answer.text
    clone = copy_of(victim, seed=9301, handle=f"{tag}_official")
    assert client.post("/v1/profiles", json=[clone]).json()["created"] == 1
    check = client.post("/v1/checks", json={k: victim[k] for k in ("display_name", "bio")})
    assert check.status_code == 200 and check.json()["matches"], check.text
    job = client.post("/v1/scans", json=[clone, {"display_name": f"Nobody {tag}"}])
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    wait_for(lambda: client.get(f"/v1/scans/{job_id}").json()["state"] == "done")
    wait_for(lambda: receiver.received(path))
    (alert,) = client.get("/v1/alerts").json()["alerts"]

    def delivered() -> bool:
        deliveries = client.get(f"/v1/alerts/{alert['id']}/deliveries").json()["deliveries"]
        return bool(deliveries) and deliveries[0]["status"] == "delivered"

    wait_for(delivered)

    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families = parse(response.text)

    requests = "clonefinder_http_requests_total"
    assert value(families, requests, route="/v1/checks", method="POST", status="200") == 1
    assert value(families, requests, route="/v1/profiles", method="POST", status="200") == 2
    assert value(families, requests, route="/v1/scans", method="POST", status="202") == 1
    latency = "clonefinder_http_request_duration_seconds"
    assert value(families, f"{latency}_count", route="/v1/checks", method="POST") == 1
    assert value(families, f"{latency}_sum", route="/v1/checks", method="POST") > 0
    for stage in STAGES:
        # The check and the scan's batch went through every stage.
        stage_count = value(families, "clonefinder_check_stage_duration_seconds_count", stage=stage)
        assert stage_count >= 2, stage
    ingested = "clonefinder_profiles_ingested_total"
    assert value(families, ingested, outcome="created") == 2
    assert value(families, ingested, outcome="rejected") == 1
    assert value(families, "clonefinder_scan_jobs", state="done") == 1
    assert value(families, "clonefinder_scan_jobs", state="running") == 0
    assert value(families, "clonefinder_scan_records_processed", state="done") == 2
    deliveries = "clonefinder_alert_deliveries_total"
    assert value(families, deliveries, channel="webhook", outcome="delivered") == 1
    health = client.get("/v1/health").json()
    assert value(families, "clonefinder_profiles") == health["profiles"] == 2
    for index in ("avatar_codes", "bio_vectors", "names"):
        assert value(families, "clonefinder_index_entries", index=index) == health["indexes"][index]
    assert value(families, "clonefinder_index_entries", index="names") == 2
    assert value(families, "clonefinder_model_load_seconds") > 0
    assert value(families, "process_resident_memory_bytes") > 0


def test_metrics_need_an_admin_key_on_the_api_port_and_none_on_the_metrics_port(
    server: ServerProcess, metrics_port: int
) -> None:
    no_key = httpx.get(f"{server.base_url}/metrics")
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "unauthorized"
    made = CliRunner().invoke(
        cli,
        ["keys", "create", "--role", "platform", "--name", f"ops-{unique_tag()}"]
        + ["--data-dir", str(server.data_dir)],
    )
    assert made.exit_code == 0, made.output
    platform = {"Authorization": f"Bearer {made.output.strip().splitlines()[-1]}"}
    assert httpx.get(f"{server.base_url}/metrics", headers=platform).status_code == 403

    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200
    families = parse(scraped.text)
    assert "clonefinder_http_requests" in families
    assert value(families, "clonefinder_model_load_seconds") > 0


def test_every_answer_carries_a_request_id(server: ServerProcess, client: httpx.Client) -> None:
    sent = f"trace-{uuid.uuid4().hex[:12]}"
    assert client.get("/v1/health", headers={"X-Request-ID": sent}).headers["x-request-id"] == sent
    made = [
        client.get("/v1/health").headers["x-request-id"],
        httpx.get(f"{server.base_url}/v1/alerts").headers["x-request-id"],  # 401
        client.get("/no/such/path").headers["x-request-id"],  # 404
        client.get("/v1/health", headers={"X-Request-ID": "a b; <script>"}).headers["x-request-id"],
        client.get("/v1/health", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"],
    ]
    assert len(set(made)) == len(made)
    assert all(len(made_id) == 32 and int(made_id, 16) >= 0 for made_id in made)


def test_each_request_logs_one_json_access_line_with_its_id_and_key(
    server: ServerProcess, client: httpx.Client
) -> None:
    sent = f"trace-{uuid.uuid4().hex[:12]}"
    answer = client.post(
        "/v1/checks", json={"display_name": "Nobody"}, headers={"X-Request-ID": sent}
    )
    assert answer.status_code == 200, answer.text
    refused = httpx.get(f"{server.base_url}/v1/alerts", headers={"X-Request-ID": f"{sent}-x"})
    assert refused.status_code == 401

    def access_lines(request_id: str) -> list[dict[str, Any]]:
        return [
            entry
            for entry in log_lines(server)
            if entry.get("request_id") == request_id and entry["logger"] == "service.access"
        ]

    (line,) = wait_for(lambda: access_lines(sent))
    assert line["level"] == "INFO" and line["message"].startswith("POST /v1/checks 200")
    assert (line["method"], line["route"], line["status"]) == ("POST", "/v1/checks", 200)
    assert line["key_name"] == "admin" and line["duration_ms"] >= 0
    assert time.time() - 600 < _epoch(line["time"]) <= time.time() + 1
    (refused_line,) = wait_for(lambda: access_lines(f"{sent}-x"))
    assert refused_line["status"] == 401 and "key_name" not in refused_line
    # uvicorn's own access lines are off: one line per request.
    assert not [e for e in log_lines(server) if e["logger"] == "uvicorn.access"]


def test_the_scan_worker_logs_the_job_and_chunk_it_works_on(
    server: ServerProcess, client: httpx.Client
) -> None:
    job = client.post("/v1/scans", json=[{"display_name": f"Somebody {unique_tag()}"}])
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    wait_for(lambda: client.get(f"/v1/scans/{job_id}").json()["state"] == "done")
    lines = wait_for(
        lambda: [
            e for e in log_lines(server) if e.get("scan_job") == job_id and "done" in e["message"]
        ]
    )
    assert lines[0]["scan_chunk"] == 0 and lines[0]["logger"] == "service.scans.worker"


def test_livez_and_readyz_answer_without_a_key(server: ServerProcess) -> None:
    live = httpx.get(f"{server.base_url}/livez")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "model",
        "store",
        "indexes",
    }
    assert body["checks"]["indexes"]["behind"] == 0


def test_readyz_is_503_and_says_why_until_the_engine_is_loaded(tmp_path: Path) -> None:
    # Without its lifespan the application has no engine, as a server that is still loading.
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data")))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not_ready"
    assert answer.json()["checks"]["engine"]["ok"] is False
    assert client.get("/livez").status_code == 200
    assert len(answer.headers["x-request-id"]) == 32


def test_log_format_auto_is_text_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert isinstance(formatter_for("auto", terminal), TextFormatter)
        with (tmp_path / "log").open("w") as file:
            assert isinstance(formatter_for("auto", file), JsonFormatter)
            assert isinstance(formatter_for("text", file), TextFormatter)
    finally:
        os.close(leader)
        os.close(follower)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
