"""Who the page answers without a key in local mode: this machine's browser only."""

from __future__ import annotations

import pytest

from service.web.page import PageClient, is_loopback_host, local_refusal


@pytest.mark.parametrize(
    ("address", "host", "admitted"),
    [
        ("127.0.0.1", "127.0.0.1:8000", True),
        ("127.0.0.1", "localhost:8000", True),
        ("::1", "[::1]:8000", True),
        ("::ffff:127.0.0.1", "localhost", True),
        # Another machine, even one that names this server as localhost.
        ("192.168.1.20", "localhost:8000", False),
        ("10.0.0.5", "10.0.0.1:8000", False),
        (None, "localhost:8000", False),
        # DNS rebinding: a loopback connection made for another site's name.
        ("127.0.0.1", "evil.example.com:8000", False),
        ("127.0.0.1", None, False),
    ],
)
def test_local_mode_admits_only_a_browser_on_this_machine(
    address: str | None, host: str | None, admitted: bool
) -> None:
    client = PageClient(address=address, host=host, from_page=True)
    assert (local_refusal(client) is None) is admitted


def test_local_mode_refuses_what_a_proxy_on_this_machine_passes_on() -> None:
    client = PageClient(address="127.0.0.1", host="localhost:8000", from_page=True, forwarded=True)
    assert "not a proxy" in (local_refusal(client) or "")


def test_loopback_host_names() -> None:
    assert is_loopback_host("LOCALHOST")
    assert is_loopback_host("app.localhost:3000")
    assert not is_loopback_host("localhost.example.com")
    assert not is_loopback_host("127.0.0.1.nip.io")
