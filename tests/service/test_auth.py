"""API keys, roles and limits against real `clonefinder serve` processes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import REPO_ROOT, SERVER_MAX_IMAGES, RunningServer
from tests.servers import ServerProcess, server_process

pytestmark = pytest.mark.slow


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    # RFC 9457 problem details, with the contract's `error` object beside them.
    assert set(body) == {"type", "title", "status", "detail", "instance", "error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    error: dict[str, Any] = body["error"]
    return error


def _create_key(data_dir: Path, *, role: str, name: str) -> str:
    """A new key made with the command line, as an operator would (in this process)."""
    result = CliRunner().invoke(
        app, ["keys", "create", "--role", role, "--name", name, "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=60.0) as http:
        yield http


def _operations(client: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


# --- who may call ------------------------------------------------------------------------------


def test_health_needs_no_key(client: httpx.Client) -> None:
    assert client.get("/v1/health").status_code == 200


def test_every_other_v1_operation_declares_a_key_and_refuses_without_one(
    client: httpx.Client,
) -> None:
    operations = _operations(client)
    open_ones = {(m, p) for m, p, op in operations if not op.get("security")}
    assert open_ones == {("GET", "/v1/health")}
    for method, path, operation in operations:
        if not operation.get("security"):
            continue
        assert {"HTTPBearer", "APIKeyHeader"} <= {k for s in operation["security"] for k in s}
        assert {"401", "403", "429"} <= set(operation["responses"])
        url = path.replace("{", "").replace("}", "")  # any value will do: the key comes first
        response = client.request(method, url)
        error = _assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key" in error["message"]


def test_openapi_declares_both_ways_to_send_a_key(client: httpx.Client) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer cf_not-a-real-key"},
        {"X-API-Key": "cf_not-a-real-key"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer"},
    ],
)
def test_a_bad_key_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post("/v1/checks", json={"display_name": "Jane Doe"}, headers=headers)
    _assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_works_in_either_header(client: httpx.Client, api_server: RunningServer) -> None:
    key = api_server.admin_key
    for headers in (_bearer(key), {"X-API-Key": key}):
        response = client.post("/v1/checks", json={"display_name": "Jane Doe"}, headers=headers)
        assert response.status_code == 200, response.text


def test_admin_key_file_is_private_and_names_the_admin_key(api_server: RunningServer) -> None:
    path = api_server.data_dir / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert api_server.admin_key.startswith("cf_")
    listed = CliRunner().invoke(
        app, ["keys", "list", "--json", "--data-dir", str(api_server.data_dir)]
    )
    assert '"name": "admin", "role": "admin"' in listed.stdout
    assert api_server.admin_key not in listed.stdout


def test_a_revoked_key_is_refused_from_the_next_request(
    client: httpx.Client, api_server: RunningServer
) -> None:
    key = _create_key(api_server.data_dir, role="platform", name="soon-revoked")
    assert client.get("/v1/profiles/x/nobody", headers=_bearer(key)).status_code == 404
    # Another process revokes it while the server runs.
    revoke = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "revoke", "soon-revoked"]
        + ["--data-dir", str(api_server.data_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoke.returncode == 0, revoke.stderr
    response = client.get("/v1/profiles/x/nobody", headers=_bearer(key))
    error = _assert_error(response, 401, "unauthorized")
    assert "revoked" in error["message"]
    assert client.get("/v1/profiles/x/nobody", headers=api_server.headers).status_code == 404


def test_a_used_key_shows_its_last_use(client: httpx.Client, api_server: RunningServer) -> None:
    key = _create_key(api_server.data_dir, role="investigator", name="last-use")
    _create_key(api_server.data_dir, role="investigator", name="never-used")
    assert client.get("/v1/profiles/x/nobody", headers=_bearer(key)).status_code == 404
    listed = CliRunner().invoke(
        app, ["keys", "list", "--json", "--data-dir", str(api_server.data_dir)]
    )
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["last-use"]["last_used_at"] is not None
    assert rows["never-used"]["last_used_at"] is None


def test_a_role_without_the_permission_is_403(
    client: httpx.Client, api_server: RunningServer
) -> None:
    individual = _bearer(_create_key(api_server.data_dir, role="individual", name="jane"))
    investigator = _bearer(_create_key(api_server.data_dir, role="investigator", name="lawyer"))
    record = {"platform": "twitter", "handle": "role_test", "display_name": "Role Test"}

    error = _assert_error(
        client.post("/v1/profiles", json=record, headers=individual), 403, "forbidden"
    )
    assert "profiles.write" in error["message"]
    _assert_error(
        client.get("/v1/profiles/twitter/role_test", headers=individual), 403, "forbidden"
    )
    assert client.post("/v1/checks", json=record, headers=individual).status_code == 200

    _assert_error(client.post("/v1/profiles", json=record, headers=investigator), 403, "forbidden")
    assert client.get("/v1/profiles/twitter/x", headers=investigator).status_code == 404
    _assert_error(client.delete("/v1/profiles/twitter/x", headers=investigator), 403, "forbidden")
    # Nothing was written by the refused requests.
    response = client.get("/v1/profiles/twitter/role_test", headers=api_server.headers)
    _assert_error(response, 404, "not_found")


def test_a_refused_request_is_refused_before_its_body_is_read(client: httpx.Client) -> None:
    response = client.post(
        "/v1/profiles", content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_error(response, 401, "unauthorized")


# --- limits ------------------------------------------------------------------------------------


def test_too_many_images_in_one_request_is_413(
    client: httpx.Client, api_server: RunningServer
) -> None:
    # Addresses that are never fetched: the count is refused before any record is looked at.
    body = [
        {"platform": "x", "handle": f"img{i}", "avatar_url": f"http://0.0.0.0:9/{i}.png"}
        for i in range(SERVER_MAX_IMAGES + 1)
    ]
    body.append({"platform": "x", "handle": "no_image"})
    error = _assert_error(
        client.post("/v1/profiles", json=body, headers=api_server.headers),
        413,
        "payload_too_large",
    )
    assert f"limit is {SERVER_MAX_IMAGES}" in error["message"]
    _assert_error(
        client.get("/v1/profiles/x/no_image", headers=api_server.headers), 404, "not_found"
    )


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own with a tiny rate limit: 2 requests at once, then 1 a minute."""
    env = {"CLONEFINDER_RATE_LIMIT_PER_MINUTE": "1", "CLONEFINDER_RATE_LIMIT_BURST": "2"}
    with server_process(tmp_path_factory.mktemp("limited-server"), env=env) as server:
        yield server


def test_over_the_rate_limit_is_429_with_retry_after(limited: ServerProcess) -> None:
    admin = _bearer(limited.admin_key)
    other = _bearer(_create_key(limited.data_dir, role="platform", name="other"))
    with httpx.Client(base_url=limited.base_url, timeout=60.0) as http:
        # The burst of 2 is admitted...
        for _ in range(2):
            assert http.get("/v1/profiles/x/y", headers=admin).status_code == 404
        # ...then one a minute: the next is refused, with when to come back.
        response = http.get("/v1/profiles/x/y", headers=admin)
        error = _assert_error(response, 429, "rate_limited")
        retry_after = response.headers["retry-after"]
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
        assert "admin" in error["message"]
        # The limit is per key, and health takes no key.
        assert http.get("/v1/profiles/x/y", headers=other).status_code == 404
        assert http.get("/v1/health").status_code == 200


def test_the_admin_key_is_made_on_the_first_start_only(limited: ServerProcess) -> None:
    path = limited.data_dir / "admin.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = limited.admin_key
    before = path.stat()
    limited.restart()
    after = path.stat()
    assert limited.admin_key == key
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    with httpx.Client(base_url=limited.base_url, timeout=60.0) as http:
        assert http.get("/v1/profiles/x/y", headers=_bearer(key)).status_code == 404
    listed = CliRunner().invoke(
        app, ["keys", "list", "--json", "--data-dir", str(limited.data_dir)]
    )
    assert listed.stdout.count('"role": "admin"') == 1
    assert limited.starts == 2
