"""Parameters are checked before an answer starts, as the OpenAPI document states them.

Out-of-range offsets and cursors, times that overflow once in UTC, numbers sent for times,
flags that are not `true` or `false`: each is a 422 with the error body, never a 500 and never
a 200 whose streamed body breaks. A 405 names every method its path serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, headers=api_server.headers, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def job_id(client: httpx.Client) -> str:
    body = json.dumps([{"platform": "twitter", "handle": "param_probe", "display_name": "P"}])
    created = client.post("/v1/scans", content=body, headers={"content-type": "application/json"})
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


def _assert_refused(response: httpx.Response, status: int = 422) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert "error" in response.json()


@pytest.mark.parametrize("offset", [str(10**20), str(2**63), "-1"])
def test_a_results_offset_out_of_range_is_refused_before_streaming(
    client: httpx.Client, job_id: str, offset: str
) -> None:
    _assert_refused(client.get(f"/v1/scans/{job_id}/results", params={"offset": offset}))


def test_the_largest_results_offset_is_an_empty_answer(client: httpx.Client, job_id: str) -> None:
    response = client.get(f"/v1/scans/{job_id}/results", params={"offset": str(2**63 - 1)})
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "query",
    [
        "cursor=%C2%B2",  # a digit to str.isdigit, not to int()
        f"cursor={10**23}",
        f"cursor={2**63}",  # 19 digits, past what the database holds
        "since=0001-01-01T00:00:00%2B01:00",  # before year 1 once in UTC
        "since=9999-12-31T23:00:00-05:00",
        "since=0.5",  # seconds since 1970 to pydantic, no ISO time
        "since=1700000000",
        "acknowledged=1",
        "acknowledged=yes",
    ],
)
def test_alert_filters_out_of_range_or_of_the_wrong_type_are_refused(
    client: httpx.Client, query: str
) -> None:
    _assert_refused(client.get(f"/v1/alerts?{query}"))


def test_alert_filters_as_documented_are_taken(client: httpx.Client) -> None:
    answer = client.get("/v1/alerts?since=2026-01-01T00:00:00Z&acknowledged=false&cursor=12")
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("verified", "yes"), ("verified", 1), ("followers_count", "12"), ("created_at", 0.5)],
)
def test_a_check_with_a_field_of_the_wrong_type_is_refused(
    client: httpx.Client, field: str, value: object
) -> None:
    response = client.post("/v1/checks", json={"display_name": "Jane Doe", field: value})
    _assert_refused(response)
    assert response.json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize("ingest", ["{}", "1", "yes"])
def test_a_form_option_of_the_wrong_type_is_refused_even_when_the_query_overrides_it(
    client: httpx.Client, ingest: str
) -> None:
    files = {"file": ("p.jsonl", b'{"platform": "twitter", "handle": "form_probe"}\n')}
    answer = client.post("/v1/scans?ingest=true", files=files, data={"ingest": ingest})
    _assert_refused(answer)


def test_a_form_option_spelled_as_json_is_taken(client: httpx.Client) -> None:
    files = {"file": ("p.jsonl", b'{"platform": "twitter", "handle": "form_probe"}\n')}
    answer = client.post("/v1/scans", files=files, data={"ingest": "true", "top_k": "3"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["options"]["ingest"] is True
    assert answer.json()["options"]["top_k"] == 3


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/scans/0123", "GET, DELETE"),
        ("PUT", "/v1/watchlist", "GET, POST"),
        ("POST", "/v1/cases/1", "GET, PATCH"),
        ("PATCH", "/v1/profiles/twitter/x", "GET, DELETE"),
    ],
)
def test_a_405_allows_every_method_of_its_path(
    client: httpx.Client, method: str, path: str, allowed: str
) -> None:
    answer = client.request(method, path)
    _assert_refused(answer, 405)
    assert answer.headers["allow"] == allowed
