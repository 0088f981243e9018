"""A watch that reaches the person, over HTTP against a real server: one entry per watch, the
private page (its alerts as cards, "this is me", a new link, stop watching), and alert
e-mails read from a real SMTP server on localhost (aiosmtpd)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer
from tests.mail import SENDER, Inbox, body_of, link_in, mail_settings, running_inbox
from tests.servers import ServerProcess, server_process
from tests.service.webhook_receiver import wait_for
from tests.support import copy_of, error_code, ingest, person, unique_tag

pytestmark = pytest.mark.slow

pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is a dev dependency: make install")
PAGE = {"X-Clonefinder-Page": "1"}


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as running:
        yield running


@pytest.fixture(scope="module")
def server(
    inbox: tuple[Inbox, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = mail_settings(inbox[1])
    with server_process(tmp_path_factory.mktemp("mail-server"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60.0, headers=server.headers) as http:
        yield http


def token_of(watch_url: str) -> str:
    return watch_url.split("#", 1)[1]


def test_an_address_is_confirmed_first_then_alerts_are_mailed_and_the_stop_link_erases(
    client: httpx.Client, inbox: tuple[Inbox, int]
) -> None:
    mails, _ = inbox
    tag = unique_tag()
    victim = person(tag, seed=9301)
    address = f"{tag}@example.org"
    ingest(client, victim)
    body = {"platform": "twitter", "handle": victim["handle"], "email": address}

    created = client.post("/v1/watchlist", json=body)
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["existing"] is False and entry["email"] == address
    assert entry["email_confirmed"] is False
    assert entry["watch_url"].startswith(f"{client.base_url}/watch#")

    # The same watch again: the same entry, said so, and no second link or e-mail.
    again = client.post("/v1/watchlist", json={**body, "email": address.upper()})
    assert again.status_code == 200, again.text
    assert again.json()["existing"] is True and again.json()["id"] == entry["id"]
    assert again.json()["watch_url"] is None

    (confirmation,) = wait_for(lambda: mails.to(address))
    assert confirmation["From"] == SENDER and confirmation["To"] == address
    text = body_of(confirmation)
    confirm = link_in(text, "/watch/confirm/")
    stop = link_in(text, "/watch/stop/")
    assert confirmation["List-Unsubscribe"] == f"<{stop}>"

    # Before the address is confirmed, a clone alerts (on the private page) but mails nothing.
    early = copy_of(victim, seed=9301, handle=f"{tag}_early")
    ingest(client, early)
    page = client.post(
        "/web/api/watching", json={"token": token_of(entry["watch_url"])}, headers=PAGE
    )
    assert [a["profile"]["handle"] for a in page.json()["alerts"]] == [early["handle"]]

    # The confirmation link opens a page that asks; its button POSTs to the same address.
    assert client.get(confirm).headers["content-type"].startswith("text/html")
    confirmed = client.post(confirm, headers=PAGE)
    assert confirmed.status_code == 200, confirmed.text
    assert client.get(f"/v1/watchlist/{entry['id']}").json()["email_confirmed"] is True

    late = copy_of(victim, seed=9301, handle=f"{tag}_late")
    ingest(client, late)
    _, alert_mail = wait_for(lambda: mails.to(address)[1:] and mails.to(address))
    assert len(mails.to(address)) == 2  # the early clone was never mailed
    assert late["handle"] in alert_mail["Subject"]
    words = body_of(alert_mail)
    assert f"@{late['handle']} on twitter" in words
    assert "very likely a copy" in words and "Why it looks like a copy:" in words
    assert not re.search(r"bits|hash|cosine|candidate|query|\d%|\b0\.\d\d\b", words), words
    assert link_in(words, "/watch/stop/") == stop
    assert alert_mail["List-Unsubscribe"] == f"<{stop}>"
    assert alert_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # One click in a mail program: RFC 8058's POST to the List-Unsubscribe address.
    unsubscribed = client.post(
        stop,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsubscribed.status_code == 200, unsubscribed.text
    assert error_code(client.get(f"/v1/watchlist/{entry['id']}"), 404) == "not_found"
    assert error_code(client.get("/v1/alerts", params={"entry_id": entry["id"]}), 404)
    gone = client.post(
        "/web/api/watching", json={"token": token_of(entry["watch_url"])}, headers=PAGE
    )
    assert error_code(gone, 404) == "not_found"
    assert error_code(client.post(stop), 404) == "not_found"


def test_the_private_page_shows_answers_renews_and_stops_its_watch(client: httpx.Client) -> None:
    tag = unique_tag()
    victim = person(tag, seed=9302)
    ingest(client, victim)
    watched = client.post(
        "/web/api/watch",
        json={"platform": "twitter", "handle": victim["handle"]},
        headers=PAGE,
    )
    assert watched.status_code == 201, watched.text
    first = watched.json()
    assert first["existing"] is False and first["watch_url"].startswith("/watch#")
    for _ in range(4):  # "Watch my identity" pressed again and again
        repeated = client.post(
            "/web/api/watch",
            json={"platform": "twitter", "handle": victim["handle"]},
            headers=PAGE,
        )
        assert repeated.status_code == 200, repeated.text
        assert repeated.json()["id"] == first["id"] and repeated.json()["watch_url"] is None
    token = token_of(first["watch_url"])

    mine = copy_of(victim, seed=9302, handle=f"{tag}_mine")
    clone = copy_of(victim, seed=9302, handle=f"{tag}_clone")
    ingest(client, mine, clone)
    view = client.post("/web/api/watching", json={"token": token}, headers=PAGE).json()
    cards = {card["profile"]["handle"]: card for card in view["alerts"]}
    assert set(cards) == {mine["handle"], clone["handle"]}  # one alert each, not five
    card = cards[clone["handle"]]
    assert card["label_words"] == "very likely a copy"
    assert card["report_form"] == "https://help.x.com/forms/impersonation"
    assert card["explanations"] and all(e["text"] and e["detail"] for e in card["explanations"])
    assert [e["detail"] for e in card["explanations"]] == card["reasons"]

    answered = client.post(
        "/web/api/watching/answer",
        json={"token": token, "alert_id": cards[mine["handle"]]["id"], "answer": "mine"},
        headers=PAGE,
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == "mine"
    # Erased and stored again (a new id): the account said to be the person's never alerts
    # again, while the clone's does.
    for record in (mine, clone):
        assert client.delete(f"/v1/profiles/twitter/{record['handle']}").status_code == 204
    ingest(client, mine, clone)
    view = client.post("/web/api/watching", json={"token": token}, headers=PAGE).json()
    handles = sorted(card["profile"]["handle"] for card in view["alerts"])
    assert handles == sorted([mine["handle"], clone["handle"], clone["handle"]])

    renewed = client.post("/web/api/watching/new-link", json={"token": token}, headers=PAGE)
    assert renewed.status_code == 200, renewed.text
    new_token = token_of(renewed.json()["watch_url"])
    assert new_token != token
    old = client.post("/web/api/watching", json={"token": token}, headers=PAGE)
    assert error_code(old, 404) == "not_found"
    assert client.post("/web/api/watching", json={"token": new_token}, headers=PAGE).is_success

    stopped = client.post("/web/api/watching/stop", json={"token": new_token}, headers=PAGE)
    assert stopped.status_code == 200, stopped.text
    assert error_code(client.get(f"/v1/watchlist/{first['id']}"), 404) == "not_found"
    entries = client.get("/v1/watchlist").json()["entries"]
    assert first["id"] not in [e["id"] for e in entries]


def test_a_private_link_is_needed_and_tokens_are_never_guessable(client: httpx.Client) -> None:
    for token in (None, "", "cfw_nothing", "x" * 10_000, 7):
        answer = client.post("/web/api/watching", json={"token": token}, headers=PAGE)
        assert error_code(answer, 404) == "not_found"
    # The page's own header is required, as for its other endpoints.
    assert client.post("/web/api/watching", json={"token": "cfw_x"}).status_code == 403


def test_an_address_is_refused_where_no_smtp_server_is_set_up(api_server: RunningServer) -> None:
    tag = unique_tag()
    with httpx.Client(base_url=api_server.base_url, headers=api_server.headers) as http:
        victim = person(tag, seed=9303)
        ingest(http, victim)
        named = {"platform": "twitter", "handle": victim["handle"]}
        answer = http.post("/v1/watchlist", json={**named, "email": f"{tag}@example.org"})
        assert error_code(answer, 422) == "invalid_input"
        assert answer.json()["error"]["details"][0]["field"] == "email"
        assert "sends no e-mail" in answer.json()["error"]["message"]
        nonsense = http.post("/v1/watchlist", json={**named, "email": "not an address"})
        assert error_code(nonsense, 422) == "invalid_input"


def test_the_readme_names_every_smtp_setting() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    for name in ("HOST", "PORT", "TLS", "USERNAME", "PASSWORD", "SENDER", "LINK_BASE_URL"):
        assert f"CLONEFINDER_SMTP_{name}" in readme
