"""Fixtures of the web page's tests: profiles with a known clone, a real `clonefinder serve`
and Debian's chromium driven by Playwright.

Screenshots go to `$CLONEFINDER_TEST_ARTIFACTS/screenshots` when that variable is set (CI
keeps them), else to the test session's temporary folder; the test log names the folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images import b64, jpeg_bytes, photo
from tests.servers import ServerProcess, server_process

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, chromium's own connections (updates, sync) are attempted at every start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

VICTIM_SEED = 501
CLONE_HANDLE = "jane_rivera_official"


def chromium_path() -> str | None:
    """Debian's chromium (or the one `CLONEFINDER_TEST_CHROMIUM` names)."""
    named = os.environ.get("CLONEFINDER_TEST_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
    )


def victim_photo() -> bytes:
    return jpeg_bytes(photo(VICTIM_SEED))


def victim_upload() -> bytes:
    """The person's own copy of their photo: the same picture, saved again smaller, so its
    bytes (and SHA-256) differ from every stored avatar's."""
    return jpeg_bytes(photo(VICTIM_SEED).resize((320, 320)), quality=70)


def corpus() -> list[dict[str, Any]]:
    """A person, an account that copies her, and unrelated people."""
    bio = "Marine biologist in Lisbon. Kelp forests, diving and science outreach."
    clone_photo = jpeg_bytes(photo(VICTIM_SEED).resize((240, 240)), quality=60)
    profiles: list[dict[str, Any]] = [
        {
            "platform": "twitter",
            "handle": "jane_rivera",
            "display_name": "Jane Rivera",
            "bio": bio,
            "avatar_base64": b64(victim_photo()),
            "created_at": "2011-04-02T10:00:00Z",
            "followers_count": 8200,
            "verified": True,
            "profile_url": "https://twitter.com/jane_rivera",
        },
        {
            "platform": "twitter",
            "handle": CLONE_HANDLE,
            "display_name": "Jane Rivera",
            "bio": bio + " DM for promo deals!",
            "avatar_base64": b64(clone_photo),
            "created_at": "2024-09-30T10:00:00Z",
            "followers_count": 14,
            "profile_url": f"https://twitter.com/{CLONE_HANDLE}",
        },
    ]
    others = [
        ("tom_okoro", "Tom Okoro", "Jazz drummer and teacher in Lagos."),
        ("mei_lin_art", "Mei Lin", "Watercolours of mountains. Commissions open."),
        ("pedro.salgado", "Pedro Salgado", "Cycling, coffee and open-source maps."),
    ]
    for seed, (handle, name, other_bio) in enumerate(others, start=700):
        profiles.append(
            {
                "platform": "instagram",
                "handle": handle,
                "display_name": name,
                "bio": other_bio,
                "avatar_base64": b64(jpeg_bytes(photo(seed))),
            }
        )
    return profiles


def load_corpus(server: ServerProcess) -> int:
    profiles = corpus()
    answer = httpx.post(
        f"{server.base_url}/v1/profiles", json=profiles, headers=server.headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0, answer.text
    return len(profiles)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("CLONEFINDER_TEST_ARTIFACTS")
    folder = Path(named) / "screenshots" if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium; never a browser that Playwright would download."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium: install Debian's package (apt-get install chromium)")
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is a dev dependency: make install"
    )
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server in the default (local) page mode, holding the corpus."""
    root = tmp_path_factory.mktemp("web-server")
    with server_process(root, env={"CLONEFINDER_WEB_MODE": "local"}) as server:
        load_corpus(server)
        yield server
