"""The HTTP API against a real server process (interface.md section 4)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.errors import (
    AuthenticationError,
    AvatarFetchError,
    CloneFinderError,
    ConfigurationError,
    ImageError,
    IndexStateError,
    InvalidRecordError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
)
from service.api.app import create_app
from service.auth.keys import create_key
from service.core.settings import Settings
from service.matching.engine import Engine
from service.store import KeyStore, Store
from tests.conftest import RunningServer
from tests.images import photo

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.base_url, headers=api_server.headers, timeout=60.0
    ) as http:
        yield http


def _avatar(seed: int, *, size: int = 256) -> Image.Image:
    return photo(seed, size=size)


class _Response(Protocol):
    """What the checks read of a response (httpx, or the test client's httpx2)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def _jpeg_base64(image: Image.Image, *, quality: int = 90) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _assert_error(response: _Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    # RFC 9457 problem details, with the contract's `error` object beside them.
    assert set(body) == {"type", "title", "status", "detail", "instance", "error"}
    assert response.headers["content-type"] == "application/problem+json"
    assert body["status"] == status and body["detail"] == body["error"]["message"]
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code
    return error


def _ingest(client: httpx.Client, body: Any) -> dict[str, Any]:
    response = client.post("/v1/profiles", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@slow
def test_health_is_ready_with_a_profile_count(client: httpx.Client) -> None:
    response = client.get("/v1/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert isinstance(health["profiles"], int) and health["profiles"] >= 0


@slow
def test_list_with_a_bad_record_keeps_the_good_one(client: httpx.Client) -> None:
    report = _ingest(
        client,
        [
            {"platform": "twitter", "handle": "good_rec", "display_name": "Good Record"},
            {"platform": "twitter", "handle": "bad_rec", "followers_count": "many"},
            "not an object",
        ],
    )
    assert (report["created"], report["updated"], report["rejected"]) == (1, 0, 2)
    results = {item["index"]: item for item in report["results"]}
    assert results[0]["status"] == "created"
    assert results[0]["handle"] == "good_rec"
    assert results[1]["status"] == "rejected"
    assert results[1]["error"]["field"] == "followers_count"
    assert "index 1" in results[1]["error"]["message"]
    assert results[2]["status"] == "rejected"
    assert "index 2" in results[2]["error"]["message"]

    assert client.get("/v1/profiles/twitter/good_rec").json()["display_name"] == "Good Record"
    _assert_error(client.get("/v1/profiles/twitter/bad_rec"), 404, "not_found")


@slow
def test_a_client_cannot_make_the_server_read_its_files(client: httpx.Client) -> None:
    report = _ingest(
        client, {"platform": "twitter", "handle": "snoop", "avatar_path": "/etc/passwd"}
    )
    assert report["rejected"] == 1
    assert report["results"][0]["error"]["field"] == "avatar_path"
    check = client.post("/v1/checks", json={"avatar_path": "/etc/hostname"})
    assert _assert_error(check, 422)["details"][0]["field"] == "avatar_path"


@slow
def test_a_refused_avatar_address_rejects_only_its_record(client: httpx.Client) -> None:
    # Addresses that would reach this machine itself: refused before any connection (the
    # server allows loopback for tests, but not these disguises of it).
    report = _ingest(
        client,
        [
            {"platform": "twitter", "handle": "ssrf_ok", "display_name": "Kept Record"},
            {"platform": "twitter", "handle": "ssrf_a", "avatar_url": "http://0.0.0.0:9/a.png"},
            {
                "platform": "twitter",
                "handle": "ssrf_b",
                "avatar_url": "http://[::ffff:127.0.0.1]:9/a.png",
            },
        ],
    )
    assert (report["created"], report["rejected"]) == (1, 2), report
    for item in report["results"][1:]:
        assert item["status"] == "rejected"
        assert item["error"]["code"] == "avatar_fetch_failed"
        assert item["error"]["field"] == "avatar_url"
    assert client.get("/v1/profiles/twitter/ssrf_ok").status_code == 200
    _assert_error(client.get("/v1/profiles/twitter/ssrf_a"), 404, "not_found")


@slow
def test_same_identity_in_another_case_updates_the_one_profile(client: httpx.Client) -> None:
    first = _ingest(client, {"platform": "Twitter", "handle": "CaseUser", "bio": "first"})
    assert first["results"] == [
        {
            "index": 0,
            "status": "created",
            "platform": "twitter",
            "handle": "CaseUser",
            "error": None,
        }
    ]
    before = client.get("/v1/health").json()["profiles"]
    second = _ingest(client, {"platform": "twitter", "handle": "@caseuser", "bio": "second"})
    assert second["updated"] == 1 and second["created"] == 0
    assert client.get("/v1/health").json()["profiles"] == before

    stored = client.get("/v1/profiles/TWITTER/CASEUSER")
    assert stored.status_code == 200
    assert stored.json()["bio"] == "second"


@slow
def test_unknown_fields_are_kept_as_attributes(client: httpx.Client) -> None:
    _ingest(client, {"platform": "instagram", "handle": "attr_user", "lang": "pt"})
    stored = client.get("/v1/profiles/instagram/attr_user").json()
    assert stored["attributes"] == {"lang": "pt"}
    assert "avatar_base64" not in stored


@slow
def test_check_finds_the_clone_and_never_the_query_itself(client: httpx.Client) -> None:
    original_image = _avatar(7)
    clone_image = original_image.resize((200, 200))
    bio = "Climate scientist at the University of Lisbon. Views are my own."
    original = {
        "platform": "twitter",
        "handle": "janedoe",
        "display_name": "Jane Doe",
        "bio": bio,
        "avatar_base64": _jpeg_base64(original_image),
        "created_at": "2012-04-01T10:00:00Z",
        "followers_count": 15000,
        "verified": True,
    }
    clone = {
        "platform": "twitter",
        "handle": "jane_doe_official",
        "display_name": "J\u0430ne Doe",  # Cyrillic a
        "bio": bio,
        "avatar_base64": "data:image/jpeg;base64," + _jpeg_base64(clone_image, quality=60),
        "created_at": "2024-01-15T10:00:00Z",
        "followers_count": 12,
    }
    bystanders = [
        {"platform": "twitter", "handle": f"bystander{i}", "display_name": name, "bio": text}
        for i, (name, text) in enumerate(
            [
                ("Carlos Mendes", "Football, coffee and bad puns."),
                ("Aiko Tanaka", "Photographer. Tokyo and elsewhere."),
            ]
        )
    ]
    report = _ingest(client, [original, clone, *bystanders])
    assert report["rejected"] == 0, report

    response = client.post("/v1/checks", json=original)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["query"] == {"platform": "twitter", "handle": "janedoe"}
    matches = result["matches"]
    assert matches, "the clone was not found"
    top = matches[0]
    assert top["profile"]["handle"] == "jane_doe_official"
    assert top["label"] in {"likely_clone", "possible_clone"}
    assert 0.0 <= top["score"] <= 1.0
    assert top["reasons"] and all(isinstance(reason, str) for reason in top["reasons"])
    assert top["likely_impersonator"] == "candidate"
    assert set(top["signals"]) >= {"avatar", "display_name", "handle", "bio"}
    for value in top["signals"].values():
        assert value is None or 0.0 <= value <= 1.0
    assert "avatar_base64" not in top["profile"]
    scores = [match["score"] for match in matches]
    assert scores == sorted(scores, reverse=True)
    assert all(
        (m["profile"]["platform"], m["profile"]["handle"].lower()) != ("twitter", "janedoe")
        for m in matches
    )

    # A name alone is a valid query, and top_k caps the answer.
    by_name = client.post("/v1/checks", params={"top_k": 1}, json={"display_name": "Jane Doe"})
    assert by_name.status_code == 200, by_name.text
    assert len(by_name.json()["matches"]) <= 1


@slow
def test_deleted_profile_is_gone_from_get_and_checks(client: httpx.Client) -> None:
    record = {
        "platform": "tiktok",
        "handle": "ephemeral_person",
        "display_name": "Bartholomew Quincey-Farnsworth",
        "bio": "Collector of antique barometers and rare teapots.",
    }
    _ingest(client, record)
    query = {"display_name": record["display_name"], "bio": record["bio"]}
    before = client.post("/v1/checks", params={"min_score": 0}, json=query).json()
    assert "ephemeral_person" in [m["profile"]["handle"] for m in before["matches"]]

    assert client.delete("/v1/profiles/tiktok/Ephemeral_Person").status_code == 204
    _assert_error(client.get("/v1/profiles/tiktok/ephemeral_person"), 404, "not_found")
    after = client.post("/v1/checks", params={"min_score": 0}, json=query).json()
    assert "ephemeral_person" not in [m["profile"]["handle"] for m in after["matches"]]
    _assert_error(client.delete("/v1/profiles/tiktok/ephemeral_person"), 404, "not_found")


@slow
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/v1/profiles/twitter/nobody_here", {}, 404),
        ("GET", "/v1/no-such-endpoint", {}, 404),
        ("PUT", "/v1/health", {}, 405),
        ("POST", "/v1/profiles", {"json": "a string"}, 422),
        ("POST", "/v1/profiles", {"json": 42}, 422),
        (
            "POST",
            "/v1/profiles",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
        ),  # noqa: E501
        ("POST", "/v1/profiles", {"content": b""}, 422),
        ("POST", "/v1/checks", {"json": [{"handle": "x"}]}, 422),
        ("POST", "/v1/checks", {"json": {"display_name": "X"}, "params": {"top_k": 0}}, 422),
        ("POST", "/v1/checks", {"json": {"display_name": "X", "top_k": "ten"}}, 422),
        ("POST", "/v1/checks", {"json": {"display_name": "X", "min_score": 2}}, 422),
        ("POST", "/v1/checks", {"json": {"platform": "twitter", "followers_count": -1}}, 422),
    ],
)
def test_errors_have_the_contract_shape(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    _assert_error(client.request(method, path, **kwargs), status)


@slow
def test_invalid_check_names_the_field(client: httpx.Client) -> None:
    response = client.post("/v1/checks", json={"display_name": "X", "followers_count": "lots"})
    error = _assert_error(response, 422)
    assert "followers_count" in error["message"] or "followers_count" in json.dumps(
        error["details"]
    )


@slow
def test_oversized_body_is_413(client: httpx.Client, api_server: RunningServer) -> None:
    padding = "x" * (api_server.max_body_bytes + 1000)
    response = client.post("/v1/profiles", json={"platform": "x", "handle": "big", "bio": padding})
    _assert_error(response, 413, "payload_too_large")
    assert client.get("/v1/health").status_code == 200


@slow
def test_oversized_chunked_body_without_length_is_413(
    client: httpx.Client, api_server: RunningServer
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"platform": "x", "handle": "big2", "bio": "'
        for _ in range(api_server.max_body_bytes // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    response = client.post(
        "/v1/profiles", content=chunks(), headers={"content-type": "application/json"}
    )
    _assert_error(response, 413, "payload_too_large")
    _assert_error(client.get("/v1/profiles/x/big2"), 404)


@slow
def test_too_many_records_in_one_request_is_413(
    client: httpx.Client, api_server: RunningServer
) -> None:
    body = [{"platform": "x", "handle": f"many{i}"} for i in range(api_server.max_records + 1)]
    _assert_error(client.post("/v1/profiles", json=body), 413, "payload_too_large")
    _assert_error(client.get("/v1/profiles/x/many0"), 404)


@slow
def test_openapi_document_lists_the_endpoints(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {"get"} <= set(paths["/v1/health"])
    assert {"post"} <= set(paths["/v1/profiles"])
    assert {"get", "delete"} <= set(paths["/v1/profiles/{platform}/{handle}"])
    assert {"post"} <= set(paths["/v1/checks"])
    body_schema = paths["/v1/profiles"]["post"]["requestBody"]["content"]["application/json"]
    assert "platform" in json.dumps(body_schema)
    assert document["info"]["title"] == "clonefinder"
    assert client.get("/docs").status_code == 200


# --- in-process, without the model: readiness and the error mapping ------------------------


class _FailingEngine:
    """Stands in for the engine where only its failures matter (its store holds the keys)."""

    def __init__(self, error: Exception, store: Store) -> None:
        self.error = error
        self.store = store

    def health(self) -> dict[str, Any]:
        raise self.error

    def get_profile(self, platform: str, handle: str) -> Any:
        raise self.error


@pytest.fixture
def key_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        yield store
    finally:
        store.close()


def _app_client(tmp_path: Path, error: Exception, store: Store) -> TestClient:
    engine = _FailingEngine(error, store)
    app = create_app(Settings(data_dir=tmp_path), engine=cast(Engine, engine))
    key = create_key(KeyStore(store), name=f"admin-{id(app)}", role="admin").key
    return TestClient(
        app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}
    )


def test_health_is_503_while_no_engine_is_loaded(tmp_path: Path) -> None:
    # Outside `with TestClient(...)` the lifespan does not run, so no engine is opened.
    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    _assert_error(client.get("/v1/health"), 503, "unavailable")
    _assert_error(client.get("/v1/profiles/x/y"), 503, "unavailable")


def test_unexpected_failure_is_a_generic_500_without_internals(
    tmp_path: Path, key_store: Store
) -> None:
    client = _app_client(tmp_path, RuntimeError("secret /etc/passwd detail"), key_store)
    response = client.get("/v1/health")
    error = _assert_error(response, 500, "internal")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert error["details"] == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no profile x/y"), 404),
        (InvalidRecordError("field 'bio': too long", field="bio"), 422),
        (ImageError("not an image", field="avatar_base64"), 422),
        (AvatarFetchError("private address", field="avatar_url"), 422),
        (PayloadTooLargeError("image too large"), 413),
        (IndexStateError("indexes belong to another store"), 503),
        (ConfigurationError("install clonefinder[postgres]"), 500),
        (AuthenticationError("the API key is not valid"), 401),
        (PermissionDeniedError("the role does not allow it"), 403),
        (RateLimitedError("too many requests", retry_after=7), 429),
    ],
)
def test_domain_errors_map_to_their_status_with_code_and_message(
    tmp_path: Path, key_store: Store, error: CloneFinderError, status: int
) -> None:
    client = _app_client(tmp_path, error, key_store)
    body = _assert_error(client.get("/v1/profiles/x/y"), status, error.code)
    assert body["message"] == error.message
    if getattr(error, "field", None):
        assert body["details"][0]["field"] == error.field  # type: ignore[attr-defined]
