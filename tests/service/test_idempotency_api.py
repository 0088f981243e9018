"""`Idempotency-Key` over HTTP, against real server processes on each store backend (SQLite,
and PostgreSQL where it runs): every POST that creates something, retried, creates once and
answers the first answer again; the key with another request, a key of another API key, a
failed first try and concurrent duplicates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.keys import create_key
from service.core.settings import Settings
from service.store import KeyStore, Store
from tests.servers import server_process
from tests.support import copy_of, person, unique_tag

from .conftest import _postgres_database

pytestmark = pytest.mark.slow

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


@dataclass(frozen=True)
class Served:
    client: httpx.Client
    database_url: str

    def new_client(self, role: str) -> httpx.Client:
        """A client with a new key of `role`, made in the server's store."""
        with Store.open(self.database_url) as store:
            key = create_key(KeyStore(store), name=f"{role}-{unique_tag()}", role=role).key
        return httpx.Client(
            base_url=self.client.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp(f"idempotency-{request.param}")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([Settings(data_dir=root / "data").resolved_database_url])
    else:
        urls = _postgres_database(request)
    for url in urls:
        with (
            server_process(root, env={"CLONEFINDER_DATABASE_URL": url}) as server,
            httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as client,
        ):
            yield Served(client, url)


def post(
    client: httpx.Client, path: str, key: str | None, body: Any = None, **kwargs: Any
) -> httpx.Response:
    headers = {KEY: key} if key else {}
    return client.post(path, json=body, headers=headers, **kwargs)


def retried(client: httpx.Client, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    """POST twice with one new key; the retry must be the first answer, replayed."""
    key = str(uuid.uuid4())
    first = post(client, path, key, body, **kwargs)
    assert 200 <= first.status_code < 300, first.text
    assert REPLAYED not in first.headers
    again = post(client, path, key, body, **kwargs)
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers[REPLAYED] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers.get("location") == first.headers.get("location")
    return first


def victim_and_clone(client: httpx.Client, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    tag = unique_tag()
    return person(tag, seed=seed), copy_of(person(tag, seed=seed), seed, handle=f"c{tag}")


def test_every_creating_post_retried_creates_once(served: Served) -> None:
    client = served.client
    victim, clone = victim_and_clone(client, seed=7101)

    ingested = retried(client, "/v1/profiles", [victim, clone]).json()
    assert ingested["created"] == 2  # run again, it would have said "updated"

    case = retried(
        client, "/v1/cases", {"victim": {"platform": "twitter", "handle": victim["handle"]}}
    )
    case_id = case.json()["id"]
    mine = [
        c
        for c in client.get("/v1/cases").json()["cases"]
        if c["victim"]["handle"] == victim["handle"]
    ]
    assert len(mine) == 1

    added = retried(
        client, f"/v1/cases/{case_id}/items", {"platform": "twitter", "handle": clone["handle"]}
    )
    (item,) = added.json()["added"]
    captured = retried(client, f"/v1/cases/{case_id}/items/{item['item_id']}/captures")
    assert captured.status_code == 201
    item_now = client.get(f"/v1/cases/{case_id}/items/{item['item_id']}").json()
    assert len(item_now["captures"]) == 2  # the one of the add, and one more

    watch = retried(client, "/v1/watchlist", {"identity": victim, "threshold": 0.5})
    assert watch.status_code == 201  # run again, the same watch would answer 200 `existing`

    scan = retried(client, "/v1/scans", [clone], params={"mode": "against_index"})
    assert scan.status_code == 202
    assert scan.headers["location"] == f"/v1/scans/{scan.json()['id']}"
    assert client.get(scan.headers["location"]).status_code == 200


def test_the_key_with_another_request_is_refused(served: Served) -> None:
    client = served.client
    victim, _ = victim_and_clone(client, seed=7102)
    key = str(uuid.uuid4())
    assert post(client, "/v1/profiles", key, victim).status_code == 200

    for other in (
        post(client, "/v1/profiles", key, {**victim, "bio": "another bio"}),
        post(client, "/v1/watchlist", key, victim),  # another path
        post(client, "/v1/profiles", key, victim, params={"x": "1"}),  # another query
    ):
        assert other.status_code == 422, other.text
        assert other.headers["content-type"] == "application/problem+json"
        problem = other.json()
        assert problem["error"]["code"] == "idempotency_key_reused"
        assert problem["type"].endswith("/idempotency_key_reused")
        assert key in problem["detail"]


def test_a_streamed_scan_upload_with_another_body_is_refused(served: Served) -> None:
    client = served.client
    victim, clone = victim_and_clone(client, seed=7103)
    key = str(uuid.uuid4())
    ndjson = {"content-type": "application/x-ndjson"}
    lines = [f'{{"platform": "twitter", "handle": "{victim["handle"]}-{i}"}}\n' for i in range(3)]
    upload = "".join(lines).encode()

    first = client.post("/v1/scans", content=upload, headers={**ndjson, KEY: key})
    assert first.status_code == 202, first.text
    # Sent in pieces, as a large upload streams: the same bytes are the same request.
    again = client.post(
        "/v1/scans", content=iter([upload[:10], upload[10:]]), headers={**ndjson, KEY: key}
    )
    assert (again.status_code, again.content, again.headers[REPLAYED]) == (
        202,
        first.content,
        "true",
    )

    other = client.post("/v1/scans", content=upload + upload, headers={**ndjson, KEY: key})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_keys_belong_to_the_api_key_that_sent_them(served: Served) -> None:
    victim, _ = victim_and_clone(served.client, seed=7104)
    key = str(uuid.uuid4())
    assert post(served.client, "/v1/profiles", key, victim).json()["created"] == 1
    with served.new_client("platform") as other_key:
        answer = post(other_key, "/v1/profiles", key, victim)
    assert answer.status_code == 200 and REPLAYED not in answer.headers
    assert answer.json()["updated"] == 1  # it ran


def test_a_failed_request_keeps_no_answer_and_its_retry_runs(served: Served) -> None:
    client = served.client
    victim, _ = victim_and_clone(client, seed=7105)
    body = {"victim": {"platform": "twitter", "handle": victim["handle"]}}
    key = str(uuid.uuid4())
    assert post(client, "/v1/cases", key, body).status_code == 404  # not stored yet
    assert post(client, "/v1/profiles", None, victim).status_code == 200
    retry = post(client, "/v1/cases", key, body)
    assert retry.status_code == 201 and REPLAYED not in retry.headers


def test_concurrent_duplicates_create_once(served: Served) -> None:
    client = served.client
    victim, _ = victim_and_clone(client, seed=7106)
    assert post(client, "/v1/profiles", None, victim).status_code == 200
    body = {"victim": {"platform": "twitter", "handle": victim["handle"]}, "notes": "at once"}
    key = str(uuid.uuid4())

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post(client, "/v1/cases", key, body), range(8)))

    created = [a for a in answers if a.status_code == 201]
    in_use = [a for a in answers if a.status_code == 409]
    assert len(created) + len(in_use) == len(answers), [a.text for a in answers]
    assert {a.json()["id"] for a in created} and len({a.json()["id"] for a in created}) == 1
    assert sum(REPLAYED not in a.headers for a in created) == 1
    assert all(a.json()["error"]["code"] == "idempotency_key_in_use" for a in in_use)
    cases = client.get("/v1/cases").json()["cases"]
    assert sum(c["victim"]["handle"] == victim["handle"] for c in cases) == 1


def test_a_post_without_a_key_runs_each_time(served: Served, tmp_path: Path) -> None:
    client = served.client
    victim, _ = victim_and_clone(client, seed=7107)
    assert post(client, "/v1/profiles", None, victim).json()["created"] == 1
    again = post(client, "/v1/profiles", None, victim)
    assert again.json()["updated"] == 1 and REPLAYED not in again.headers
