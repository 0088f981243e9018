"""The person's path end to end in a real browser: watch from the page with an e-mail address,
confirm it, open the private link, see the alert card of a clone ingested afterwards and its
e-mail in a real SMTP server's mailbox, stop watching."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.images import b64, jpeg_bytes, photo
from tests.mail import Inbox, body_of, link_in, mail_settings, running_inbox
from tests.servers import ServerProcess, server_process
from tests.service.webhook_receiver import wait_for
from tests.web.conftest import VICTIM_SEED, load_corpus

pytestmark = pytest.mark.slow

NEW_CLONE = "jane.rivera.real"
ADDRESS = "jane.rivera@example.org"
PAGE = {"X-Clonefinder-Page": "1"}


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as running:
        yield running


@pytest.fixture(scope="module")
def watch_server(
    tmp_path_factory: pytest.TempPathFactory, inbox: tuple[Inbox, int]
) -> Iterator[ServerProcess]:
    """A server of this module's own, which mails through the local SMTP server: the test
    ingests a clone, which the page tests that share `page_server` must not see."""
    root = tmp_path_factory.mktemp("watch-page-server")
    env = {"CLONEFINDER_WEB_MODE": "local", **mail_settings(inbox[1])}
    with server_process(root, env=env) as server:
        load_corpus(server)
        yield server


@pytest.fixture
def context(browser: Any, watch_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=watch_server.base_url)
    try:
        yield context
    finally:
        context.close()


def entries_of(server: ServerProcess, handle: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.base_url}/v1/watchlist", headers=server.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["entries"] if e["identity"].get("handle") == handle]


def test_watch_open_the_private_link_see_the_alert_and_stop_watching(
    context: Any, watch_server: ServerProcess, inbox: tuple[Inbox, int]
) -> None:
    mails, _ = inbox
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_rivera")
    page.get_by_role("button", name="Check for clones").click()
    page.locator(".card").first.wait_for()

    page.get_by_label("E-mail me when a new clone appears (optional)").fill(ADDRESS)
    watch = page.get_by_role("button", name="Watch my identity")
    watch.click()
    page.locator("#actions-status").filter(has_text="You are watched").wait_for()
    link = page.locator("#private-link")
    private_url = link.get_attribute("href")
    assert private_url and re.fullmatch(
        rf"{re.escape(watch_server.base_url)}/watch#cfw_\S+", private_url
    )
    # Pressed again: no second entry, and the private link stays on screen.
    watch.click()
    page.locator("#actions-status").filter(has_text="already watched").wait_for()
    assert link.get_attribute("href") == private_url
    assert len(entries_of(watch_server, "jane_rivera")) == 1

    # The address is confirmed first, by the link of the one e-mail sent so far.
    (confirmation,) = wait_for(lambda: mails.to(ADDRESS))
    confirmed = httpx.post(
        link_in(body_of(confirmation), "/watch/confirm/"), headers=PAGE, timeout=30
    )
    assert confirmed.status_code == 200, confirmed.text

    mine = context.new_page()
    mine.set_default_timeout(30_000)
    mine.goto(private_url)
    mine.locator("#status").filter(has_text="No account has copied you").wait_for()

    clone = {
        "platform": "instagram",
        "handle": NEW_CLONE,
        "display_name": "Jane Rivera",
        "bio": "Marine biologist in Lisbon. Kelp forests, diving and science outreach. Giveaways!",
        "avatar_base64": b64(jpeg_bytes(photo(VICTIM_SEED).resize((200, 200)), quality=65)),
        "created_at": "2025-02-01T10:00:00Z",
        "followers_count": 5,
    }
    ingested = httpx.post(
        f"{watch_server.base_url}/v1/profiles",
        json=[clone],
        headers=watch_server.headers,
        timeout=60,
    )
    assert ingested.status_code == 200 and ingested.json()["rejected"] == 0, ingested.text

    _, alert_mail = wait_for(lambda: mails.to(ADDRESS)[1:] and mails.to(ADDRESS))
    assert NEW_CLONE in alert_mail["Subject"]
    assert "very likely a copy" in body_of(alert_mail)

    mine.reload()
    card = mine.locator(".card").filter(has_text=f"@{NEW_CLONE}")
    card.wait_for()
    assert card.locator(".label").inner_text() == "very likely a copy"
    plain = card.locator(".reasons").inner_text()
    assert "photo" in plain and not re.search(r"bits|hash|cosine|candidate|query", plain), plain
    card.get_by_role("button", name="Not me: a clone").click()
    card.locator(".answer-state").filter(has_text="not you").wait_for()

    mine.get_by_role("button", name="Stop watching and erase everything").click()
    mine.locator("#status").filter(has_text="no longer watched").wait_for()
    assert entries_of(watch_server, "jane_rivera") == []
    mine.goto(private_url)
    mine.locator("#status").filter(has_text="opens no watch").wait_for()
