"""Every error answer is RFC 9457 problem details (`application/problem+json`) that still
carries the contract's `{"error": {"code", "message", "details"}}`, and the OpenAPI document
says so. In-process, without the model: the failures come from routing, the middleware, the
key checks and an engine that fails on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.auth.keys import create_key
from service.core.settings import Settings
from service.matching.engine import Engine
from service.store import KeyStore, Store
from service.store.idempotency import IdempotencyStore

PROBLEM = "application/problem+json"
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "error"}
RECORD = {"platform": "twitter", "handle": "jane"}


class _BrokenEngine:
    """An engine whose store holds the keys and whose every other part fails unexpectedly."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def health(self) -> dict[str, Any]:
        raise RuntimeError("disk on fire at /var/secret")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_MEMBERS
    assert body["type"] == f"https://clonefinder.dev/problems/{code}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert body["error"]["code"] == code
    assert body["detail"] == body["error"]["message"] and body["detail"]
    assert isinstance(body["error"]["details"], list)
    return body


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _client(tmp_path: Path, store: Store, role: str = "admin", **settings: Any) -> TestClient:
    app = create_app(
        Settings(data_dir=tmp_path, **settings), engine=cast(Engine, _BrokenEngine(store))
    )
    key = create_key(KeyStore(store), name=f"{role}-{id(app)}", role=role).key
    return TestClient(
        app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}
    )


def test_routing_errors_are_problems_naming_the_request(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    missing = assert_problem(client.get("/v1/no/such%20thing"), 404, "not_found")
    assert missing["instance"] == "/v1/no/such%20thing"
    assert missing["title"] == "Not found"

    wrong_method = client.delete("/v1/health")
    assert assert_problem(wrong_method, 405, "method_not_allowed")["instance"] == "/v1/health"
    assert wrong_method.headers["allow"] == "GET"

    # No engine yet (the lifespan did not run): not ready.
    assert assert_problem(client.get("/v1/health"), 503, "unavailable")["instance"] == (
        "/v1/health"
    )


def test_the_body_size_limit_answers_a_problem(tmp_path: Path, store: Store) -> None:
    client = _client(tmp_path, store, max_body_bytes=100)
    declared = client.post("/v1/profiles", content=b"x" * 101)
    assert assert_problem(declared, 413, "payload_too_large")["instance"] == "/v1/profiles"

    chunked = client.post("/v1/profiles", content=iter([b"x" * 60, b"x" * 60]))
    assert assert_problem(chunked, 413, "payload_too_large")["instance"] == "/v1/profiles"


def test_key_failures_are_problems_with_their_headers(tmp_path: Path, store: Store) -> None:
    client = _client(tmp_path, store, role="individual", rate_limit_burst=1)
    no_key = client.post("/v1/profiles", json=RECORD, headers={"Authorization": ""})
    assert_problem(no_key, 401, "unauthorized")
    assert no_key.headers["www-authenticate"] == "Bearer"

    assert_problem(client.post("/v1/profiles", json=RECORD), 403, "forbidden")
    over = client.post("/v1/profiles", json=RECORD)
    assert_problem(over, 429, "rate_limited")
    assert int(over.headers["retry-after"]) >= 1


def test_invalid_requests_are_problems_with_the_contract_details(
    tmp_path: Path, store: Store
) -> None:
    client = _client(tmp_path, store)
    empty = assert_problem(client.post("/v1/profiles", content=b" "), 422, "invalid_input")
    assert empty["title"] == "Invalid input"

    bad_key = client.post("/v1/profiles", json=RECORD, headers={"Idempotency-Key": "two words"})
    body = assert_problem(bad_key, 422, "invalid_request")
    assert body["error"]["details"][0]["loc"] == ["header", "Idempotency-Key"]


def test_a_key_still_in_use_is_a_409_problem(tmp_path: Path, store: Store) -> None:
    client = _client(tmp_path, store)
    key_id = KeyStore(store).list()[-1].id
    assert IdempotencyStore(store).claim(key_id, "running", None) is not None

    answer = client.post("/v1/profiles", json=RECORD, headers={"Idempotency-Key": "running"})
    body = assert_problem(answer, 409, "idempotency_key_in_use")
    assert "running" in body["detail"]
    assert answer.headers["retry-after"] == "1"


def test_a_request_that_fails_gives_its_idempotency_key_back(tmp_path: Path, store: Store) -> None:
    # A burst of one: the idempotency check and the route share one key check (a second
    # would answer 429), and the route runs into the broken engine.
    client = _client(tmp_path, store, rate_limit_burst=1)
    failed = client.post("/v1/profiles", json=RECORD, headers={"Idempotency-Key": "k-1"})
    assert_problem(failed, 500, "internal")
    assert IdempotencyStore(store).count() == 0


def test_an_unexpected_failure_is_a_500_problem_without_internals(
    tmp_path: Path, store: Store
) -> None:
    response = _client(tmp_path, store).get("/v1/health")
    body = assert_problem(response, 500, "internal")
    assert body["title"] == "Internal server error"
    assert "secret" not in response.text and "RuntimeError" not in response.text


def test_the_web_page_gets_the_same_body_as_plain_json(tmp_path: Path) -> None:
    # The page's scripts read a body only when its type is application/json.
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    response = client.get("/v1/nowhere", headers={"X-Clonefinder-Page": "1"})
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == PROBLEM_MEMBERS


def test_the_document_describes_every_error_as_a_problem() -> None:
    document = create_app(Settings()).openapi()
    schema = document["components"]["schemas"]["ErrorOut"]
    assert set(schema["required"]) == PROBLEM_MEMBERS
    errors = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    errors += 1
                    assert set(response["content"]) == {PROBLEM}, (path, method, status)
                    content = response["content"][PROBLEM]
                    assert content["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert errors > 50


def test_the_document_offers_an_idempotency_key_on_every_creating_post() -> None:
    document = create_app(Settings()).openapi()
    creating = {
        "/v1/profiles",
        "/v1/scans",
        "/v1/cases",
        "/v1/cases/{case_id}/items",
        "/v1/cases/{case_id}/items/{item_id}/captures",
        "/v1/watchlist",
    }
    offered = {
        path
        for path, item in document["paths"].items()
        if any(p["name"] == "Idempotency-Key" for p in item.get("post", {}).get("parameters", []))
    }
    assert offered == creating
    for path in creating:
        responses = document["paths"][path]["post"]["responses"]
        assert "409" in responses
        successes = [r for status, r in responses.items() if status.startswith("2")]
        assert successes and all("Idempotent-Replayed" in r["headers"] for r in successes)
