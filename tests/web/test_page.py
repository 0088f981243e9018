"""The web page in a real browser (Debian's chromium through Playwright) against a real
`clonefinder serve`: what a person sees and can do on it."""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ServerProcess
from tests.web.conftest import CLONE_HANDLE, corpus, victim_upload

pytestmark = pytest.mark.slow

PAGE_BUDGET_BYTES = 100_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def page(browser: Any, page_server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=page_server.base_url, viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def fill_identity(page: Any, *, name: str = "Jane Rivera") -> None:
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_rivera")
    page.get_by_label("Display name").fill(name)


def test_a_photo_whose_clone_is_indexed_shows_the_clone_side_by_side(
    page: Any, page_server: ServerProcess, tmp_path: Path, artifacts_dir: Path
) -> None:
    upload = tmp_path / "me.jpg"
    upload.write_bytes(victim_upload())
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    fill_identity(page)
    page.get_by_label("Profile photo").set_input_files(upload)
    # The chosen photo, before any check; shown once the browser has read the file.
    page.locator("#preview").wait_for(state="visible", timeout=5_000)
    assert page.locator("#preview").is_visible()

    page.get_by_role("button", name="Check for clones").click()

    card = page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}")
    card.wait_for()
    # The score in one line: what it measures, in words, then the number.
    assert card.locator(".label").inner_text() == "very likely a copy"
    score_line = card.locator(".score").inner_text()
    meaning = "How sure clonefinder is that this account copies you"
    assert re.fullmatch(rf"{meaning}: very likely a copy \(0\.\d\d of 1\)", score_line), score_line
    assert f"@{CLONE_HANDLE} is likely the copy" in card.inner_text()
    # The reasons in plain words; their technical form only on demand.
    assert card.locator(".reasons li").count() >= 2
    plain = card.locator(".reasons").inner_text()
    assert "photo" in plain and "your name" in plain
    assert not re.search(r"bits|hash|cosine|candidate|query|victim|\d%", plain), plain
    assert not card.locator(".reason-details").is_visible()
    card.get_by_text("Technical detail").click()
    assert "avatar is" in card.locator(".reason-details").inner_text()
    assert "Photo" in card.locator(".signals").inner_text()
    # Each card ends with what to do next: the platform's impersonation form.
    report_form = card.locator(".next a")
    assert report_form.get_attribute("href") == "https://help.x.com/forms/impersonation"
    link = card.locator("h3 a")
    assert link.get_attribute("href") == f"https://twitter.com/{CLONE_HANDLE}"
    # Both photos side by side, each really loaded: the person's preview and the clone's.
    images = card.locator(".faces img")
    assert images.count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card .faces img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    scores = [float(s) for s in page.locator(".score-value").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    # Everything came from the service itself (the preview is the browser's own blob:).
    assert requested
    assert all(url.startswith((page_server.base_url, "blob:", "data:")) for url in requested)

    page.screenshot(path=str(artifacts_dir / "result-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways at phone width"
    page.screenshot(path=str(artifacts_dir / "result-phone.png"), full_page=True)
    assert png_size(artifacts_dir / "result-desktop.png")[0] == DESKTOP["width"]
    assert png_size(artifacts_dir / "result-phone.png")[0] == PHONE["width"]
    print(f"screenshots: {artifacts_dir}")

    # Watch my identity: an entry an administrator can see.
    page.get_by_role("button", name="Watch my identity").click()
    page.locator("#actions-status").filter(has_text="You are watched").wait_for()
    entries = httpx.get(
        f"{page_server.base_url}/v1/watchlist", headers=page_server.headers, timeout=10
    ).json()["entries"]
    assert any(e["identity"].get("handle") == "jane_rivera" for e in entries)

    # Download evidence: the PDF of this result.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download evidence (PDF)").click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")


def test_a_file_that_is_not_an_image_is_refused_next_to_the_photo_field(
    page: Any, tmp_path: Path
) -> None:
    not_image = tmp_path / "me.jpg"
    not_image.write_text("these are my notes, not a photo\n" * 20)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    fill_identity(page)
    page.get_by_label("Profile photo").set_input_files(not_image)

    # Said as soon as the file is chosen, in plain words, and never shown as a broken image.
    error = page.locator("#avatar-error")
    error.filter(has_text="not a usable image").wait_for()
    assert "cannot be opened as a picture" in error.inner_text()
    assert page.locator("#preview").is_hidden()
    assert page.locator("#avatar").get_attribute("aria-invalid") == "true"
    assert "avatar-error" in (page.locator("#avatar").get_attribute("aria-describedby") or "")

    # Sending the form does not send the file: the check is not made.
    page.get_by_role("button", name="Check for clones").click()
    error.filter(has_text="not a usable image").wait_for()
    assert page.evaluate("() => document.activeElement.id") == "avatar"
    assert not [url for url in sent if "/web/api/check" in url]
    assert page.locator(".card").count() == 0
    assert page.locator("#handle-error").inner_text() == ""

    # Removing it lets the check go on without a photo.
    page.get_by_role("button", name="Remove this file").click()
    assert error.is_hidden()
    page.get_by_role("button", name="Check for clones").click()
    page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}").wait_for()


def test_an_empty_form_flags_every_missing_field_at_once(page: Any, tmp_path: Path) -> None:
    not_image = tmp_path / "me.jpg"
    not_image.write_text("not a photo\n")
    page.goto("/")
    page.get_by_label("Profile photo").set_input_files(not_image)
    page.locator("#avatar-error").filter(has_text="not a usable image").wait_for()
    page.get_by_role("button", name="Check for clones").click()

    page.locator("#form-error").filter(has_text="fields").wait_for()
    for field, words in [("platform", "the site your account is on"), ("handle", "your handle")]:
        assert words in page.locator(f"#{field}-error").inner_text()
        assert page.locator(f"#{field}").get_attribute("aria-invalid") == "true"
    assert "not a usable image" in page.locator("#avatar-error").inner_text()
    assert page.locator("#form-error").inner_text() == (
        "Please correct these 3 fields: Platform, Handle, Profile photo."
    )
    # The first of them takes the focus.
    assert page.evaluate("() => document.activeElement.id") == "platform"


def test_empty_fields_show_a_hint_not_a_value(page: Any) -> None:
    page.goto("/")
    for field in ["platform", "handle", "display_name"]:
        box = page.locator(f"#{field}")
        assert box.input_value() == ""
        assert (box.get_attribute("placeholder") or "").startswith("e.g. "), field
        # Set apart from typed text: a hint is italic and muted.
        style = box.evaluate(
            "(el) => { const s = getComputedStyle(el, '::placeholder');"
            " return [s.fontStyle, s.color, getComputedStyle(el).color]; }"
        )
        assert style[0] == "italic" and style[1] != style[2], (field, style)


def test_a_handle_only_check_shows_the_photo_on_file_it_compared(page: Any) -> None:
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_rivera")
    page.get_by_role("button", name="Check for clones").click()

    card = page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}")
    card.wait_for()
    assert "photo" in card.locator(".reasons").inner_text()
    yours = card.locator(".faces figure").first
    assert yours.locator("figcaption").inner_text() == "You (photo on file)"
    assert "No photo" not in yours.inner_text()
    photo_on_file = yours.locator("img")
    assert photo_on_file.get_attribute("alt") == "Your photo on file"
    page.wait_for_function(
        "() => { const img = document.querySelector('.card .faces figure img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )


def test_a_handle_that_fills_in_no_photo_claims_none(page: Any) -> None:
    # Sent with a name but no photo, for a handle the store does not hold: nothing was on file.
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_new_account")
    page.get_by_label("Display name").fill("Jane Rivera")
    page.get_by_role("button", name="Check for clones").click()

    card = page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}")
    card.wait_for()
    yours = card.locator(".faces figure").first
    assert yours.inner_text() == "No photo given\nYou"
    assert "photo" not in card.locator(".reasons").inner_text().lower()


def test_watch_and_evidence_cannot_be_sent_twice_while_working(page: Any) -> None:
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_rivera")
    page.get_by_role("button", name="Check for clones").click()
    page.locator(".card").first.wait_for()
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    page.route("**/web/api/watch", hold)
    page.route("**/web/api/evidence", hold)

    watch = page.locator("#watch")
    watch.click()
    page.wait_for_function("() => document.getElementById('watch').disabled")
    assert watch.get_attribute("aria-busy") == "true"
    assert "Registering" in page.locator("#actions-status").inner_text()
    watch.dispatch_event("click")  # a second click while it works
    assert len(held) == 1
    held.pop().continue_()
    # Watched now, or already by an earlier test of this module: either answer gives it back.
    page.locator("#actions-status").filter(
        has_text=re.compile("You are (already )?watched")
    ).wait_for()
    assert watch.is_enabled() and watch.get_attribute("aria-busy") is None

    # A failure gives the button back too, with what went wrong.
    evidence = page.locator("#evidence")
    evidence.click()
    page.wait_for_function("() => document.getElementById('evidence').disabled")
    assert "Preparing" in page.locator("#actions-status").inner_text()
    evidence.dispatch_event("click")
    assert len(held) == 1
    held.pop().fulfill(
        status=500,
        json={"error": {"code": "internal", "message": "The report could not be made."}},
    )
    page.locator("#actions-status").filter(has_text="could not be made").wait_for()
    assert evidence.is_enabled()
    assert [url for url in sent if "/web/api/watch" in url or "/web/api/evidence" in url] == [
        f"{page.url.rstrip('/')}/web/api/watch",
        f"{page.url.rstrip('/')}/web/api/evidence",
    ]


def test_the_verdict_is_in_the_first_screen_on_a_phone(
    browser: Any, page_server: ServerProcess, artifacts_dir: Path
) -> None:
    widths = {"phone": PHONE, "desktop": DESKTOP}
    for name, viewport in widths.items():
        context = browser.new_context(base_url=page_server.base_url, viewport=viewport)
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            fill_identity(page)
            page.get_by_role("button", name="Check for clones").click()
            card = page.locator(".card").first
            card.wait_for()
            top = card.evaluate("(el) => el.getBoundingClientRect().top")
            assert 0 <= top < viewport["height"], (name, top)
            verdict = card.locator(".score").evaluate("(el) => el.getBoundingClientRect().bottom")
            assert verdict <= viewport["height"], (name, verdict)
            # The webhook is an option for the few, folded away below the results.
            assert page.locator("#webhook_url").is_hidden()
            below = page.evaluate(
                "() => document.getElementById('advanced').getBoundingClientRect().top"
                " > document.getElementById('matches').getBoundingClientRect().bottom"
            )
            assert below
            shot = artifacts_dir / f"verdict-{name}.png"
            page.screenshot(path=str(shot))
            assert png_size(shot)[0] == viewport["width"]
            page.get_by_text("Advanced: also notify a web address").click()
            assert page.locator("#webhook_url").is_visible()
        finally:
            context.close()


def test_a_missing_handle_is_said_next_to_the_handle_field(page: Any) -> None:
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Display name").fill("Jane Rivera")
    page.get_by_role("button", name="Check for clones").click()

    page.locator("#handle-error").filter(has_text="fill this in").wait_for()
    assert page.locator("#handle").get_attribute("aria-invalid") == "true"
    assert page.evaluate("() => document.activeElement.id") == "handle"


def test_the_form_can_be_filled_and_sent_with_the_keyboard_alone(page: Any) -> None:
    page.goto("/")
    page.locator("#status").wait_for(state="attached")
    expected_order = ["platform", "handle", "display_name"]
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("() => document.activeElement.className") == "skip"
    for field, text in zip(expected_order, ["twitter", "jane_rivera", "Jane Rivera"], strict=True):
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == field
        page.keyboard.type(text)
    # After the photo, the button that adds another of the person's accounts, then Check.
    for field in ["bio", "avatar", "own-add", "submit"]:
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == field
    page.keyboard.press("Enter")

    page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}").wait_for()
    # The results take the focus, so a screen reader reads them next.
    assert page.evaluate("() => document.activeElement.id") == "results"


def test_no_match_says_how_many_profiles_were_searched(page: Any) -> None:
    page.goto("/")
    page.get_by_label("Platform").fill("mastodon")
    page.get_by_label("Handle").fill("quiet_person")
    page.get_by_label("Display name").fill("Xavier Quillfeather")
    page.get_by_role("button", name="Check for clones").click()

    status = page.locator("#status")
    status.filter(has_text="profiles were searched").wait_for()
    assert status.inner_text() == (
        f"No account copies you: {len(corpus())} profiles were searched."
    )
    assert page.locator(".card").count() == 0


def test_the_page_is_small_and_served_by_the_service(page_server: ServerProcess) -> None:
    total = 0
    for path in ["/", "/static/app.js", "/static/style.css", "/static/favicon.svg"]:
        answer = httpx.get(page_server.base_url + path, timeout=10)
        assert answer.status_code == 200, path
        # Nothing is loaded from another address (no CDN): every src and href is our own.
        assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", answer.text), path
        total += len(answer.content)
    assert total < PAGE_BUDGET_BYTES


def test_the_page_has_an_icon_and_answers_head(page_server: ServerProcess) -> None:
    base = page_server.base_url
    html = httpx.get(base + "/", timeout=10).text
    linked = re.search(r'<link rel="icon" href="([^"]+)"', html)
    assert linked, "the page links no icon"
    for path in [linked.group(1), "/favicon.ico"]:
        icon = httpx.get(base + path, timeout=10)
        assert icon.status_code == 200, path
        assert icon.headers["content-type"].startswith("image/svg+xml"), path
        assert icon.content.lstrip().startswith(b"<svg"), path
    # As GET does, without the body: monitors and link checkers ask with HEAD.
    head = httpx.head(base + "/", timeout=10)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/html")
    assert head.content == b""


def test_page_requests_without_the_page_header_are_refused(page_server: ServerProcess) -> None:
    # A cross-site form cannot add the header; a cross-site script must ask first (CORS).
    answer = httpx.post(
        f"{page_server.base_url}/web/api/check",
        json={"platform": "twitter", "handle": "jane_rivera"},
        timeout=10,
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


def test_a_photo_dropped_on_the_form_is_previewed_and_sent(page: Any) -> None:
    # A handle the store does not hold, so that no stored photo fills in for the dropped one.
    page.goto("/")
    page.get_by_label("Platform").fill("twitter")
    page.get_by_label("Handle").fill("jane_new_account")
    page.get_by_label("Display name").fill("Jane Rivera")
    photo_b64 = base64.b64encode(victim_upload()).decode("ascii")
    # What a drag from the desktop delivers: a DataTransfer holding the file, dropped on the zone.
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            const zone = document.getElementById("drop");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true }));
            }
        }""",
        photo_b64,
    )
    page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
    assert "dropped.jpg" in page.locator("#drop-hint").inner_text()
    page.get_by_role("button", name="Check for clones").click()
    card = page.locator(".card").filter(has_text=f"@{CLONE_HANDLE}")
    card.wait_for()
    # The photo was compared: a reason speaks of it, and its signal has a value.
    assert "photo" in card.locator(".reasons").inner_text()
    card.get_by_text("Technical detail").click()
    assert re.search(r"Photo\n\d+%", card.locator(".signals").inner_text())
    assert "avatar is" in card.locator(".reason-details").inner_text()
