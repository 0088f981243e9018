"""Watchlists, alerts and signed webhooks over HTTP, against a real server process and a real
webhook receiver on localhost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.watchlist.webhooks import verify
from tests.conftest import REPO_ROOT, RunningServer
from tests.service.webhook_receiver import Receiver, wait_for
from tests.support import copy_of, create_key, error_code, ingest, person, unique_tag

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.base_url, timeout=60.0, headers=api_server.headers
    ) as http:
        yield http


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def register(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post("/v1/watchlist", json=body, headers=headers or None)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def alerts_of(client: httpx.Client, entry_id: int, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/alerts", params={"entry_id": entry_id, **params})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["alerts"]
    return found


def test_a_clone_alerts_once_and_its_webhook_is_retried_until_delivered(
    client: httpx.Client, receiver: Receiver
) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9101)
    ingest(client, victim)
    path = f"/flaky-{tag}"
    receiver.script(path, [500, 500])  # then 200
    created = register(
        client,
        {
            "identity": {"platform": "twitter", "handle": victim["handle"]},
            "webhook_url": receiver.url(path),
        },
    )
    secret = created["webhook_secret"]
    assert secret and secret.startswith("whsec_")
    assert created["identity"]["display_name"] == victim["display_name"]
    assert created["webhook_url"] == receiver.url(path)
    entry_id = created["id"]

    clone = copy_of(victim, seed=9101, handle=f"{tag}_official")
    ingest(client, clone)
    ingest(client, clone)  # the same clone again: no second alert

    (alert,) = wait_for(lambda: alerts_of(client, entry_id))
    assert alert["profile"]["handle"] == clone["handle"]
    assert alert["label"] == "likely_clone" and alert["likely_impersonator"] == "candidate"
    assert alert["reasons"] and set(alert["signals"]) == {"avatar", "display_name", "handle", "bio"}
    assert alert["acknowledged"] is False

    def delivered() -> dict[str, Any] | None:
        response = client.get(f"/v1/alerts/{alert['id']}/deliveries")
        assert response.status_code == 200, response.text
        (delivery,) = response.json()["deliveries"]
        return delivery if delivery["status"] != "pending" else None

    delivery = wait_for(delivered)
    assert delivery["status"] == "delivered" and delivery["url"] == receiver.url(path)
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in delivery["attempts"]] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert [a["error"] for a in delivery["attempts"]] == ["status 500", "status 500", None]
    assert all(a["duration_ms"] >= 0 and a["at"] for a in delivery["attempts"])

    received = receiver.received(path)
    assert len(received) == 3
    for request in received:
        assert verify(
            secret,
            timestamp=request.headers["x-clonefinder-timestamp"],
            signature=request.headers["x-clonefinder-signature"],
            body=request.body,
        )
        assert json.loads(request.body) == alert  # the alert, as the API shows it
    assert len(alerts_of(client, entry_id)) == 1

    # The secret was shown once: never in a later answer.
    shown = client.get(f"/v1/watchlist/{entry_id}")
    assert shown.status_code == 200 and "webhook_secret" not in shown.json()
    listed = client.get("/v1/watchlist").json()["entries"]
    assert entry_id in [e["id"] for e in listed]
    assert all("webhook_secret" not in e for e in listed)


def test_a_clone_ingested_by_the_command_line_in_another_process_alerts(
    api_server: RunningServer, client: httpx.Client, receiver: Receiver, tmp_path: Path
) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9102)
    ingest(client, victim)
    path = f"/cli-{tag}"
    created = register(
        client,
        {"platform": "twitter", "handle": victim["handle"], "webhook_url": receiver.url(path)},
    )
    clone = copy_of(victim, seed=9102, handle=f"real{tag}")
    records = tmp_path / "clone.jsonl"
    records.write_text(json.dumps(clone) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "service.cli", "ingest", str(records)]
    command += ["--data-dir", str(api_server.data_dir)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    (alert,) = wait_for(lambda: alerts_of(client, created["id"]))
    assert alert["profile"]["handle"] == clone["handle"]
    # The server's delivery loop finds the other process's delivery and sends it.
    (request,) = wait_for(lambda: receiver.received(path))
    assert json.loads(request.body)["id"] == alert["id"]
    assert verify(
        created["webhook_secret"],
        timestamp=request.headers["x-clonefinder-timestamp"],
        signature=request.headers["x-clonefinder-signature"],
        body=request.body,
    )


def test_a_key_sees_only_its_own_entries_and_alerts(
    api_server: RunningServer, client: httpx.Client
) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9103)
    ingest(client, victim)
    individual = create_key(api_server, role="individual")
    other = create_key(api_server, role="individual")

    theirs = register(client, {"platform": "twitter", "handle": victim["handle"]})  # admin's
    identity = {k: victim[k] for k in ("display_name", "bio", "avatar_base64")}
    mine = register(client, {"identity": identity}, **individual)
    assert "webhook_secret" not in mine or mine["webhook_secret"] is None
    ingest(client, copy_of(victim, seed=9103, handle=f"{tag}_backup"))
    (my_alert,) = wait_for(lambda: alerts_of(client, mine["id"]))

    listed = client.get("/v1/watchlist", headers=individual)
    assert [e["id"] for e in listed.json()["entries"]] == [mine["id"]]
    assert client.get("/v1/watchlist", headers=other).json()["entries"] == []
    for response in (
        client.get(f"/v1/watchlist/{theirs['id']}", headers=individual),
        client.delete(f"/v1/watchlist/{theirs['id']}", headers=individual),
        client.get("/v1/alerts", params={"entry_id": theirs["id"]}, headers=individual),
        client.post(f"/v1/alerts/{my_alert['id']}/ack", headers=other),
        client.get(f"/v1/alerts/{my_alert['id']}/deliveries", headers=other),
    ):
        assert error_code(response, 404) == "not_found"
    mine_only = client.get("/v1/alerts", headers=individual).json()["alerts"]
    assert [a["id"] for a in mine_only] == [my_alert["id"]]
    assert client.get("/v1/alerts", headers=other).json()["alerts"] == []

    # The admin key ("watchlist.all") sees and manages every key's.
    assert client.get(f"/v1/watchlist/{mine['id']}").json()["key_id"] != theirs["key_id"]
    assert client.get(f"/v1/alerts/{my_alert['id']}/deliveries").status_code == 200
    assert client.delete(f"/v1/watchlist/{mine['id']}").status_code == 204
    assert error_code(client.get(f"/v1/watchlist/{mine['id']}", headers=individual), 404)

    anonymous = httpx.get(f"{api_server.base_url}/v1/watchlist")
    assert error_code(anonymous, 401) == "unauthorized"


def test_acknowledging_and_filtering_alerts(client: httpx.Client) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9104)
    ingest(client, victim)
    entry_id = register(client, {"platform": "twitter", "handle": victim["handle"]})["id"]
    ingest(
        client,
        copy_of(victim, seed=9104, handle=f"{tag}_one"),
        copy_of(victim, seed=9104, handle=f"{tag}_two"),
    )
    both = wait_for(lambda: len(alerts_of(client, entry_id)) == 2 and alerts_of(client, entry_id))
    first, second = both  # newest first

    acked = client.post(f"/v1/alerts/{second['id']}/ack")
    assert acked.status_code == 200 and acked.json()["acknowledged"] is True
    again = client.post(f"/v1/alerts/{second['id']}/ack").json()
    assert again["acknowledged_at"] == acked.json()["acknowledged_at"]

    assert [a["id"] for a in alerts_of(client, entry_id, acknowledged="true")] == [second["id"]]
    assert [a["id"] for a in alerts_of(client, entry_id, acknowledged="false")] == [first["id"]]
    assert alerts_of(client, entry_id, since="2999-01-01T00:00:00Z") == []
    assert len(alerts_of(client, entry_id, since="2000-01-01T00:00:00Z")) == 2
    assert [a["id"] for a in alerts_of(client, entry_id, limit=1, offset=1)] == [second["id"]]

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"entry_id": entry_id, "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/alerts", params=params).json()
        seen += [a["id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [first["id"], second["id"]]

    assert error_code(client.get("/v1/alerts", params={"cursor": "abc"}), 422)
    assert error_code(client.get("/v1/alerts", params={"limit": 0}), 422)
    assert error_code(client.post("/v1/alerts/999999999/ack"), 404) == "not_found"


def test_what_cannot_be_registered_answers_with_the_reason(client: httpx.Client) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9105)
    ingest(client, victim)
    named = {"platform": "twitter", "handle": victim["handle"]}
    cases = [
        ({**named, "threshold": 0.1}, 422, "threshold"),
        ({**named, "threshold": "high"}, 422, "threshold"),
        ({**named, "webhook_url": "ftp://hooks.example.com"}, 422, "webhook_url"),
        ({**named, "webhook_url": "http://10.0.0.7/hook"}, 422, "webhook_url"),
        ({"platform": "twitter", "handle": f"nobody{tag}"}, 404, "no stored profile"),
        ({"location": "Tromsø"}, 422, "needs a display name"),
        ({"identity": named, "display_name": "Quillon"}, 422, "identity"),
        ({"identity": "twitter/someone"}, 422, "identity"),
    ]
    for body, status, words in cases:
        response = client.post("/v1/watchlist", json=body)
        error_code(response, status)
        assert words in response.json()["error"]["message"], (body, response.text)
    assert error_code(client.post("/v1/watchlist", json=[named]), 422)
    assert error_code(client.get("/v1/watchlist/999999999"), 404) == "not_found"
    assert error_code(client.delete("/v1/watchlist/999999999"), 404) == "not_found"


def test_the_openapi_document_describes_the_watchlist(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/watchlist"])
    assert {"get", "delete"} <= set(paths["/v1/watchlist/{entry_id}"])
    assert "get" in paths["/v1/alerts"]
    assert "post" in paths["/v1/alerts/{alert_id}/ack"]
    assert "get" in paths["/v1/alerts/{alert_id}/deliveries"]
    assert "201" in paths["/v1/watchlist"]["post"]["responses"]
    body = paths["/v1/watchlist"]["post"]["requestBody"]["content"]["application/json"]
    assert "identity" in body["schema"]["properties"]
    ours = {k: v for k, v in paths.items() if k.startswith(("/v1/watchlist", "/v1/alerts"))}
    assert "#/$defs/" not in json.dumps(ours)  # every reference resolves in the document
