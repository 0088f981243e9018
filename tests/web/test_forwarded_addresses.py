"""Whose `X-Forwarded-For` the server believes: only that of the proxies named in
`CLONEFINDER_TRUSTED_PROXIES` (none by default), so a client cannot choose its own address,
and with it its rate-limit bucket or being taken for a browser on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network

import httpx
import pytest
from pydantic import ValidationError

from service.core.settings import Settings
from tests.servers import ServerProcess, server_process

BURST = 2
PAGE = {"X-Clonefinder-Page": "1"}
CHECK = {"platform": "x", "handle": "someone", "display_name": "Someone Else"}
# Linux routes all of 127.0.0.0/8 to this machine, so a test can connect from a second address.
PROXY_ADDRESS = "127.0.0.2"


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("forwarded")
    env = {
        "CLONEFINDER_WEB_MODE": "public",
        # A bucket of BURST page requests, refilled far slower than the test runs.
        "CLONEFINDER_WEB_RATE_LIMIT_PER_MINUTE": "1",
        "CLONEFINDER_WEB_RATE_LIMIT_BURST": str(BURST),
        "CLONEFINDER_TRUSTED_PROXIES": PROXY_ADDRESS,
    }
    with server_process(root, env=env) as server:
        yield server


def _check(server: ServerProcess, *, forwarded_for: str, source: str = "127.0.0.1") -> int:
    """The status of one page check sent from `source` with the given `X-Forwarded-For`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, base_url=server.base_url, timeout=60) as client:
        answer = client.post(
            "/web/api/check", json=CHECK, headers={**PAGE, "X-Forwarded-For": forwarded_for}
        )
    return answer.status_code


@pytest.mark.slow
def test_a_client_behind_no_trusted_proxy_cannot_choose_its_rate_limit_bucket(
    public_server: ServerProcess,
) -> None:
    # Loopback is no exception: uvicorn's own default would believe it.
    statuses = [_check(public_server, forwarded_for=f"203.0.113.{n}") for n in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]


@pytest.mark.slow
def test_a_trusted_proxy_names_the_client_whatever_the_client_wrote_before(
    public_server: ServerProcess,
) -> None:
    first = [
        _check(public_server, forwarded_for=f"198.51.100.{n}, 203.0.113.1", source=PROXY_ADDRESS)
        for n in range(BURST + 1)
    ]
    assert first == [200] * BURST + [429]
    # Another client behind the same proxy has a bucket of its own.
    assert _check(public_server, forwarded_for="203.0.113.2", source=PROXY_ADDRESS) == 200


def test_trusted_proxies_are_none_by_default_and_a_comma_list_of_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLONEFINDER_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("CLONEFINDER_TRUSTED_PROXIES", "10.0.0.2, 192.168.0.0/24,::1")
    assert Settings().trusted_proxies == [
        ip_network("10.0.0.2"),
        ip_network("192.168.0.0/24"),
        ip_network("::1"),
    ]
    monkeypatch.setenv("CLONEFINDER_TRUSTED_PROXIES", "proxy.example.test")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings()


@pytest.mark.slow
def test_local_mode_refuses_what_a_proxy_on_this_machine_passes_on(
    page_server: ServerProcess,
) -> None:
    info = f"{page_server.base_url}/web/api/info"
    assert httpx.get(info, headers=PAGE, timeout=60).status_code == 200
    passed_on = httpx.get(info, headers={**PAGE, "X-Forwarded-For": "127.0.0.1"}, timeout=60)
    assert passed_on.status_code == 403
    assert passed_on.json()["error"]["code"] == "forbidden"
