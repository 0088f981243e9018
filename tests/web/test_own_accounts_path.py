"""The individual's path end to end, on the demo corpus: Maya Okafor checks her Instagram with
her photo, names her Twitter as her own (or answers "Is this you?" about it), watches her
identity and opens her private page; the accounts she named go with the watch and never
alert it."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.matching.engine import DEMO_DIR
from service.records import read_records
from tests.servers import ServerProcess, server_process
from tests.web.test_page import DESKTOP, PHONE, png_size

pytestmark = pytest.mark.slow

PAGE = {"X-Clonefinder-Page": "1"}
MAYA_PHOTO = DEMO_DIR / "avatars" / "maya_okafor.jpg"
MAYA_INSTAGRAM = {
    "platform": "instagram",
    "handle": "mayaokafor.science",
    "display_name": "Maya Okafor",
}
MAYA_TWITTER = {"platform": "twitter", "handle": "maya_okafor"}
CLONES = ("maya_0kafor", "realmayaokafor")


def demo_records() -> list[dict[str, Any]]:
    """The demo corpus as a client sends it: each avatar file's bytes inline."""
    records = []
    for _, record in read_records(DEMO_DIR / "profiles.jsonl"):
        path = DEMO_DIR / record.pop("avatar_path")
        record["avatar_base64"] = base64.b64encode(path.read_bytes()).decode("ascii")
        records.append(record)
    return records


def demo_photo(name: str) -> str:
    return base64.b64encode((DEMO_DIR / "avatars" / name).read_bytes()).decode("ascii")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A local-mode server holding the demo corpus, for this module alone (a test ingests)."""
    with server_process(
        tmp_path_factory.mktemp("own-accounts-web"), env={"CLONEFINDER_WEB_MODE": "local"}
    ) as server:
        loaded = httpx.post(
            f"{server.base_url}/v1/profiles",
            json=demo_records(),
            headers=server.headers,
            timeout=120,
        )
        assert loaded.status_code == 200 and loaded.json()["rejected"] == 0, loaded.text
        yield server


@pytest.fixture
def page_client(demo_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_server.base_url, headers=PAGE, timeout=60) as client:
        yield client


def card_titles(page: Any, selector: str) -> list[str]:
    return [title.strip() for title in page.locator(f"{selector} h3").all_inner_texts()]


def check(page: Any) -> None:
    page.get_by_role("button", name="Check for clones").click()
    page.locator("#matches .card").first.wait_for()


def shoot(page: Any, folder: Path, name: str) -> None:
    """Screenshots at desktop and phone width; the page never scrolls sideways on a phone."""
    for width, viewport in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(viewport)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: the page scrolls sideways at {width} px"
        shot = folder / f"{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert png_size(shot)[0] == viewport["width"]
    page.set_viewport_size(DESKTOP)


def test_maya_names_her_twitter_or_says_it_is_hers_then_watches(
    browser: Any, demo_server: ServerProcess, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=demo_server.base_url, viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("/")
        page.locator("#platform").fill(MAYA_INSTAGRAM["platform"])
        page.locator("#handle").fill(MAYA_INSTAGRAM["handle"])
        page.locator("#display_name").fill(MAYA_INSTAGRAM["display_name"])
        page.get_by_label("Profile photo").set_input_files(MAYA_PHOTO)
        page.locator("#preview").wait_for(state="visible")

        # 1. Her Twitter named as her own: apart, under "Your accounts", never a copy.
        page.get_by_role("button", name="Add another of my accounts").click()
        row = page.locator("#own-rows li").first
        assert page.evaluate("() => document.activeElement.className") == "own-platform"
        row.locator(".own-platform").fill(MAYA_TWITTER["platform"])
        row.locator(".own-handle").fill("@" + MAYA_TWITTER["handle"])
        check(page)
        yours = page.locator("#own-results")
        yours.wait_for()
        assert yours.locator("h3").inner_text() == "Your accounts"
        assert yours.locator(".own-name").all_inner_texts() == [
            "Maya Okafor @maya_okafor on twitter"
        ]
        assert "Not counted as a copy" in yours.inner_text()
        page.wait_for_function(
            "() => { const img = document.querySelector('#own-list img');"
            " return img && img.complete && img.naturalWidth > 0; }"
        )
        titles = card_titles(page, "#matches .card")
        assert not [t for t in titles if t.endswith("@maya_okafor on twitter")], titles
        assert page.locator(".question").count() == 0
        for clone in CLONES:
            card = page.locator("#matches .card").filter(has_text=f"@{clone} on twitter")
            assert card.locator(".label").inner_text() == "very likely a copy"
        shoot(page, tmp_path, "own-account-named")

        # 2. Not named: she is asked "Is this you?", in plain words, with no verdict.
        row.get_by_role("button", name="Remove").click()
        assert page.locator("#own-rows li").count() == 0
        check(page)
        question = page.locator(".question")
        assert question.count() == 1
        title = question.locator("h3").inner_text()
        assert title == "Is this you? Maya Okafor @maya_okafor on twitter"
        assert "looks exactly like you on another platform" in question.inner_text()
        assert question.locator(".label, .score").count() == 0
        assert page.locator("#own-results").is_hidden()
        assert "may be another of yours" in page.locator("#status").inner_text()
        shoot(page, tmp_path, "is-this-you")

        # "No, it is not me": shown as the match it is.
        question.get_by_role("button", name="No, it is not me").click()
        assert page.locator(".question").count() == 0
        answered = page.locator("#matches .card").filter(has_text="@maya_okafor on twitter")
        assert answered.locator(".label").inner_text() == "very likely a copy"
        assert page.evaluate("() => document.activeElement.tagName") == "H3"

        # "Yes, this is mine": added to her accounts, checked again, listed apart.
        check(page)
        page.get_by_role("button", name="Yes, this is mine").click()
        page.locator("#own-results").wait_for()
        page.locator("#matches .card").first.wait_for()
        assert page.locator(".question").count() == 0
        assert yours.locator(".own-name").all_inner_texts() == [
            "Maya Okafor @maya_okafor on twitter"
        ]
        assert [
            page.locator("#own-rows .own-platform").input_value(),
            page.locator("#own-rows .own-handle").input_value(),
        ] == ["twitter", "maya_okafor"]
        titles = card_titles(page, "#matches .card")
        assert sorted(t.rsplit("@", 1)[1] for t in titles) == sorted(
            f"{clone} on twitter" for clone in CLONES
        )

        # 3. Watch: her Twitter goes with the watch; the private link opens her page.
        page.get_by_role("button", name="Watch my identity").click()
        status = page.locator("#actions-status")
        status.filter(has_text="You are watched").wait_for()
        assert "Your accounts (@maya_okafor on twitter) go with the watch" in status.inner_text()
        private_url = page.locator("#private-link").get_attribute("href")
        assert private_url and re.fullmatch(
            rf"{re.escape(demo_server.base_url)}/watch#cfw_\S+", private_url
        )
        shoot(page, tmp_path, "watched")
        entries = httpx.get(
            f"{demo_server.base_url}/v1/watchlist", headers=demo_server.headers, timeout=10
        ).json()["entries"]
        (entry,) = [e for e in entries if e["identity"].get("handle") == "mayaokafor.science"]
        assert entry["identity"]["own_accounts"] == [MAYA_TWITTER]

        mine = context.new_page()
        mine.set_default_timeout(30_000)
        mine.goto(private_url)
        mine.locator("#status").filter(has_text="No account has copied you").wait_for()
        assert "Maya Okafor" in mine.locator("#who").inner_text()
        print(f"screenshots: {tmp_path}")
    finally:
        context.close()


def test_the_page_check_lists_named_accounts_apart(page_client: httpx.Client) -> None:
    body = {
        **MAYA_INSTAGRAM,
        "avatar_base64": demo_photo("maya_okafor.jpg"),
        "own_accounts": [MAYA_TWITTER, {"platform": "tiktok", "handle": "maya.okafor"}],
    }
    answer = page_client.post("/web/api/check", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert sorted(m["profile"]["handle"] for m in result["matches"]) == sorted(CLONES)
    assert not any(m["may_be_yours"] for m in result["matches"])
    twitter, tiktok = result["own_accounts"]
    assert (twitter["handle"], twitter["found"], tiktok["found"]) == ("maya_okafor", True, False)
    # The page shows of it what a card shows of any account: public fields, its photo's address.
    assert twitter["profile"]["verified"] is True and "attributes" not in twitter["profile"]
    assert page_client.get(twitter["avatar"]).headers["content-type"] == "image/jpeg"
    assert tiktok["profile"] is None and tiktok["avatar"] is None

    # Without them, the original is asked about.
    del body["own_accounts"]
    asked = page_client.post("/web/api/check", json=body).json()
    assert [m["profile"]["handle"] for m in asked["matches"] if m["may_be_yours"]] == [
        "maya_okafor"
    ]
    assert asked["own_accounts"] == []

    bad = page_client.post(
        "/web/api/check", json={**body, "own_accounts": [{"platform": "twitter", "handle": ""}]}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "own_accounts[0].handle"


def test_accounts_named_with_a_watch_never_alert_it(
    page_client: httpx.Client, demo_server: ServerProcess
) -> None:
    carla = {
        "platform": "twitter",
        "handle": "carla_mendes",
        "display_name": "Carla Mendes",
        "bio": "Running coach. Marathon PB 2:58. Plans for beginners.",
        "avatar_base64": demo_photo("carla_mendes.jpg"),
    }
    watched = page_client.post(
        "/web/api/watch",
        json={**carla, "own_accounts": [{"platform": "tiktok", "handle": "@Carla.Runs"}]},
    )
    assert watched.status_code == 201, watched.text
    assert watched.json()["own_accounts"] == [{"platform": "tiktok", "handle": "Carla.Runs"}]

    # Two new accounts alike in every way (her photo, name and bio) but their handle: the one
    # she named is hers, the other a clone.
    look_alike = {key: carla[key] for key in ("display_name", "bio", "avatar_base64")}
    hers = {**look_alike, "platform": "tiktok", "handle": "carla.runs"}
    clone = {**look_alike, "platform": "tiktok", "handle": "carla.mendes.coach"}
    ingested = httpx.post(
        f"{demo_server.base_url}/v1/profiles",
        json=[hers, clone],
        headers=demo_server.headers,
        timeout=60,
    )
    assert ingested.status_code == 200 and ingested.json()["rejected"] == 0, ingested.text

    alerts = httpx.get(
        f"{demo_server.base_url}/v1/alerts",
        params={"entry_id": watched.json()["id"]},
        headers=demo_server.headers,
        timeout=10,
    ).json()["alerts"]
    assert [a["profile"]["handle"] for a in alerts] == ["carla.mendes.coach"]
    # Not for want of likeness: a check of her identity finds both alike enough to alert.
    checked = page_client.post("/web/api/check", json=carla).json()
    scores = {m["profile"]["handle"]: m["score"] for m in checked["matches"]}
    assert scores["carla.runs"] >= watched.json()["threshold"]
    assert scores["carla.mendes.coach"] >= watched.json()["threshold"]
