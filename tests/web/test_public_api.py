"""The page's endpoints in a deployment (`CLONEFINDER_WEB_MODE=public`): anyone may check,
within a rate limit per address; a check returns only the matches of what was sent, never
lists or browses the index, and keeps nothing of the upload."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.images import b64
from tests.servers import ServerProcess, server_process
from tests.web.conftest import CLONE_HANDLE, corpus, load_corpus, victim_upload

pytestmark = pytest.mark.slow

BURST = 4
PAGE = {"X-Clonefinder-Page": "1"}
POSSIBLE_CLONE = 0.40  # the README's threshold of `possible_clone`


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("public-web")
    env = {
        "CLONEFINDER_WEB_MODE": "public",
        # A bucket of BURST page requests, refilled far slower than the test runs.
        "CLONEFINDER_WEB_RATE_LIMIT_PER_MINUTE": "1",
        "CLONEFINDER_WEB_RATE_LIMIT_BURST": str(BURST),
        "CLONEFINDER_WEB_MAX_MATCHES": "3",
    }
    with server_process(Path(root), env=env) as server:
        load_corpus(server)
        yield server


def test_public_page_checks_only_what_was_sent_within_a_rate_limit(
    public_server: ServerProcess,
) -> None:
    base = public_server.base_url
    client = httpx.Client(base_url=base, headers=PAGE, timeout=60)
    profiles_before = httpx.get(f"{base}/v1/health").json()["profiles"]
    upload = victim_upload()

    # 1: a check with a photo finds the clone; asking for every candidate changes nothing.
    answer = client.post(
        "/web/api/check",
        json={
            "platform": "twitter",
            "handle": "jane_rivera",
            "display_name": "Jane Rivera",
            "avatar_base64": b64(upload),
            "min_score": 0,
            "top_k": 100,
        },
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    handles = [m["profile"]["handle"] for m in result["matches"]]
    assert CLONE_HANDLE in handles
    assert "jane_rivera" not in handles  # never the person's own account
    assert len(handles) <= 3
    assert all(m["score"] >= POSSIBLE_CLONE for m in result["matches"])
    assert result["searched"] == len(corpus())

    # The upload was not kept: its bytes are nowhere to be fetched, and nothing was added.
    own_sha = hashlib.sha256(upload).hexdigest()
    assert client.get(f"/web/api/avatars/{own_sha}").status_code == 404
    clone_avatar = next(
        m["avatar"] for m in result["matches"] if m["profile"]["handle"] == CLONE_HANDLE
    )
    shown = client.get(clone_avatar)
    assert shown.status_code == 200
    assert shown.headers["content-type"] == "image/jpeg"
    assert httpx.get(f"{base}/v1/health").json()["profiles"] == profiles_before

    # 2: a handle alone does not browse what the store holds under it.
    answer = client.post("/web/api/check", json={"platform": "twitter", "handle": "jane_rivera"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"

    # 3: watching is what keeps something, because the person asked.
    answer = client.post(
        "/web/api/watch",
        json={"platform": "twitter", "handle": "jane_rivera", "display_name": "Jane Rivera"},
    )
    assert answer.status_code == 201, answer.text

    # 4: a stored handle sent with a name but no photo is not shown the photo stored under it.
    answer = client.post(
        "/web/api/check",
        json={"platform": "twitter", "handle": "jane_rivera", "display_name": "Jane Rivera"},
    )
    assert answer.status_code == 200
    assert answer.json()["query_avatar"] is None

    # Then over the limit: 429 with Retry-After, in the contract's error shape.
    answer = client.post(
        "/web/api/check",
        json={"platform": "x", "handle": "someone", "display_name": "Someone Else"},
    )
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["error"]["code"] == "rate_limited"


def test_public_mode_lists_nothing_and_the_api_still_needs_a_key(
    public_server: ServerProcess,
) -> None:
    base = public_server.base_url
    for path in ["/web/api/profiles", "/web/api/avatars", "/web/api/watch"]:
        assert httpx.get(base + path, headers=PAGE, timeout=10).status_code in (404, 405)
    assert httpx.get(f"{base}/v1/profiles/twitter/jane_rivera", timeout=10).status_code == 401
    answer = httpx.post(f"{base}/v1/checks", json={"display_name": "Jane Rivera"}, timeout=10)
    assert answer.status_code == 401
    assert httpx.get(f"{base}/web/api/avatars/{'0' * 64}", timeout=10).status_code == 404
    # The page itself is served to anyone.
    assert httpx.get(base + "/", timeout=10).status_code == 200
