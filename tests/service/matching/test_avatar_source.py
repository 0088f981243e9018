"""AvatarSource against real files and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest

from models.errors import AvatarFetchError, InvalidRecordError, PayloadTooLargeError
from models.profile import ProfileRecord
from service.matching.avatar_source import AvatarSource, address_refusal

# Not a decodable image on purpose: this module moves bytes, it does not look at them.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
MAX_BYTES = 4096

Route = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        # The client may hang up on purpose (size or time limit).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _send(body: bytes, *, length: bool = True) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def _redirect(location: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def _trickle(stop: threading.Event) -> Route:
    """Sends one byte every 50 ms: each read is quick, only a total limit stops it."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            if stop.is_set():
                return
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    return route


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _source(*, allow_private: bool = False, timeout_s: float = 5.0) -> AvatarSource:
    return AvatarSource(max_bytes=MAX_BYTES, timeout_s=timeout_s, allow_private=allow_private)


def _record(**avatar: str) -> ProfileRecord:
    return ProfileRecord.model_validate({"platform": "twitter", "handle": "jane_doe", **avatar})


# -- no avatar, precedence ----------------------------------------------------------------------


def test_no_avatar_gives_none() -> None:
    assert _source().read(_record(), base_dir=None) is None


def test_base64_wins_over_path_and_url(tmp_path: Path) -> None:
    (tmp_path / "other.png").write_bytes(b"from the file")
    record = _record(
        avatar_base64=base64.b64encode(IMAGE).decode(),
        avatar_path="other.png",
        avatar_url="http://10.0.0.5/never-fetched.png",
    )
    assert _source().read(record, base_dir=tmp_path) == IMAGE


def test_path_wins_over_url(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(IMAGE)
    record = _record(avatar_path="a.png", avatar_url="http://10.0.0.5/never-fetched.png")
    assert _source().read(record, base_dir=tmp_path) == IMAGE


# -- base64 -------------------------------------------------------------------------------------


def test_base64_plain() -> None:
    record = _record(avatar_base64=base64.b64encode(IMAGE).decode())
    assert _source().read(record, base_dir=None) == IMAGE


def test_base64_with_data_prefix_and_line_breaks() -> None:
    encoded = base64.encodebytes(IMAGE).decode()  # wrapped at 76 characters, as mail does
    assert "\n" in encoded.strip()
    record = _record(avatar_base64="data:image/png;base64," + encoded)
    assert _source().read(record, base_dir=None) == IMAGE


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        "QUJD$",  # a character outside the alphabet
        "QUJ",  # bad padding
        base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 10).decode(),  # URL-safe alphabet
        "data:text/html;base64," + base64.b64encode(b"<html>").decode(),
    ],
)
def test_base64_invalid_names_the_field(text: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        _source().read(_record(avatar_base64=text), base_dir=None)
    assert info.value.field == "avatar_base64"


def test_base64_too_large_is_refused() -> None:
    record = _record(avatar_base64=base64.b64encode(b"x" * (MAX_BYTES + 10)).decode())
    with pytest.raises(PayloadTooLargeError):
        _source().read(record, base_dir=None)


def test_base64_at_the_cap_is_accepted() -> None:
    data = b"y" * MAX_BYTES
    record = _record(avatar_base64=base64.b64encode(data).decode())
    assert _source().read(record, base_dir=None) == data


# -- local files --------------------------------------------------------------------------------


def test_path_relative_to_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "avatars").mkdir()
    (tmp_path / "avatars" / "jane.png").write_bytes(IMAGE)
    monkeypatch.chdir("/")  # the working directory must not matter
    record = _record(avatar_path="avatars/jane.png")
    assert _source().read(record, base_dir=tmp_path) == IMAGE


def test_path_absolute_ignores_base_dir(tmp_path: Path) -> None:
    (tmp_path / "jane.png").write_bytes(IMAGE)
    record = _record(avatar_path=str(tmp_path / "jane.png"))
    assert _source().read(record, base_dir=Path("/nonexistent")) == IMAGE


def test_path_refused_for_records_from_the_network(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(IMAGE)
    with pytest.raises(InvalidRecordError) as info:
        _source().read(_record(avatar_path=str(tmp_path / "secret.png")), base_dir=None)
    assert info.value.field == "avatar_path"
    assert "command line" in info.value.message


def test_path_missing_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidRecordError) as info:
        _source().read(_record(avatar_path="missing.png"), base_dir=tmp_path)
    assert info.value.field == "avatar_path"
    assert "missing.png" in info.value.message


def test_path_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidRecordError) as info:
        _source().read(_record(avatar_path="folder"), base_dir=tmp_path)
    assert info.value.field == "avatar_path"


def test_path_too_large_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(b"z" * (MAX_BYTES + 1))
    with pytest.raises(PayloadTooLargeError):
        _source().read(_record(avatar_path="big.png"), base_dir=tmp_path)


# -- URLs: fetching -----------------------------------------------------------------------------


def test_url_fetches_from_local_server_when_allowed(server: _Server) -> None:
    server.routes["/a.png"] = _send(IMAGE)
    data = _source(allow_private=True).read(
        _record(avatar_url=server.base + "/a.png"), base_dir=None
    )
    assert data == IMAGE
    assert server.requests == ["/a.png"]


def test_url_by_host_name_localhost_when_allowed(server: _Server) -> None:
    server.routes["/a.png"] = _send(IMAGE, length=False)
    url = f"http://localhost:{server.port}/a.png"
    assert _source(allow_private=True).read(_record(avatar_url=url), base_dir=None) == IMAGE


def test_url_follows_a_redirect(server: _Server) -> None:
    server.routes["/old.png"] = _redirect("/new.png")
    server.routes["/new.png"] = _send(IMAGE)
    data = _source(allow_private=True).read(
        _record(avatar_url=server.base + "/old.png"), base_dir=None
    )
    assert data == IMAGE
    assert server.requests == ["/old.png", "/new.png"]


def test_url_too_many_redirects(server: _Server) -> None:
    for hop in range(10):
        server.routes[f"/{hop}"] = _redirect(f"/{hop + 1}")
    with pytest.raises(AvatarFetchError, match="redirects"):
        _source(allow_private=True).read(_record(avatar_url=server.base + "/0"), base_dir=None)
    assert len(server.requests) == 4  # the first request and three redirects, no more


def test_url_status_404(server: _Server) -> None:
    with pytest.raises(AvatarFetchError, match="status 404") as info:
        _source(allow_private=True).read(
            _record(avatar_url=server.base + "/nope.png"), base_dir=None
        )
    assert info.value.field == "avatar_url"


@pytest.mark.parametrize("declare_length", [True, False])
def test_url_body_over_the_cap_is_stopped(server: _Server, declare_length: bool) -> None:
    server.routes["/big.png"] = _send(b"b" * (MAX_BYTES * 50), length=declare_length)
    with pytest.raises(AvatarFetchError, match=f"larger than {MAX_BYTES} bytes"):
        _source(allow_private=True).read(
            _record(avatar_url=server.base + "/big.png"), base_dir=None
        )


def test_url_slow_server_hits_the_total_time_limit(server: _Server) -> None:
    stop = threading.Event()
    server.routes["/slow.png"] = _trickle(stop)
    try:
        with pytest.raises(AvatarFetchError, match="timed out after 0.3 s"):
            _source(allow_private=True, timeout_s=0.3).read(
                _record(avatar_url=server.base + "/slow.png"), base_dir=None
            )
    finally:
        stop.set()


# -- URLs: refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/a.png", "loopback"),
        ("http://localhost:{port}/a.png", "loopback"),
        ("http://[::1]:{port}/a.png", "loopback"),
        ("http://0.0.0.0:{port}/a.png", "unspecified"),
        ("http://[::ffff:127.0.0.1]:{port}/a.png", "address ::ffff:"),
        ("http://10.0.0.5:{port}/a.png", "address 10.0.0.5 is private"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
        ("https://192.168.1.1/a.png", "private"),
    ],
)
def test_url_non_public_address_refused_before_connecting(
    server: _Server, url: str, reason: str
) -> None:
    server.routes["/a.png"] = _send(IMAGE)
    with pytest.raises(AvatarFetchError, match=reason) as info:
        _source().read(_record(avatar_url=url.format(port=server.port)), base_dir=None)
    assert info.value.field == "avatar_url"
    assert server.requests == []


def test_allow_private_still_refuses_link_local_and_private() -> None:
    source = _source(allow_private=True)
    for url in ("http://169.254.169.254/", "http://10.0.0.5/"):
        with pytest.raises(AvatarFetchError):
            source.read(_record(avatar_url=url), base_dir=None)


@pytest.mark.parametrize(
    "target", ["http://10.0.0.5/a.png", "http://169.254.169.254/latest/", "file:///etc/passwd"]
)
def test_redirect_to_a_forbidden_target_is_refused(server: _Server, target: str) -> None:
    server.routes["/a.png"] = _redirect(target)
    with pytest.raises(AvatarFetchError) as info:
        _source(allow_private=True).read(_record(avatar_url=server.base + "/a.png"), base_dir=None)
    assert info.value.field == "avatar_url"
    assert server.requests == ["/a.png"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "a.png"]
)
def test_non_http_scheme_refused(url: str) -> None:
    with pytest.raises(AvatarFetchError) as info:
        _source().read(_record(avatar_url=url), base_dir=None)
    assert info.value.field == "avatar_url"


def test_unresolvable_host_is_a_fetch_error() -> None:
    with pytest.raises(AvatarFetchError, match="resolve"):
        _source().read(_record(avatar_url="http://no-such-host.invalid/a.png"), base_dir=None)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("93.184.215.14", False),
        ("2606:4700::1111", False),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("224.0.0.1", True),  # multicast
        ("240.0.0.1", True),  # reserved
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:10.0.0.5", True),  # IPv4-mapped
        ("2002:0a00:0005::1", True),  # 6to4 around 10.0.0.5
        ("2001:0:4136:e378:8000:63bf:f5ff:fffa", True),  # Teredo around 10.0.0.5
        ("64:ff9b::7f00:1", True),  # NAT64 around 127.0.0.1
    ],
)
def test_address_refusal(address: str, refused: bool) -> None:
    assert (address_refusal(ipaddress.ip_address(address)) is not None) is refused


# -- URLs: the RESOLVED address is what is checked, and what is connected to --------------------

_real_getaddrinfo = socket.getaddrinfo


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Answer `host` with the next list of addresses in `answers[host]`; log every lookup.

    Other names resolve as usual. Each lookup takes the next answer, so a second lookup of
    the same name can see another address (what a rebinding DNS server does).
    """
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        addresses = answers[host][min(len(lookups) - 1, len(answers[host]) - 1)]
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any connection attempt: a refused address must never be dialled."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", refuse)


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["10.0.0.5"], "address 10.0.0.5 is private (host images.example.test)"),
        (["127.0.0.1"], "loopback"),
        (["169.254.169.254"], "link-local"),
        (["239.1.2.3"], "multicast"),
        (["fe80::1"], "link-local"),
        (["93.184.215.14", "192.168.1.1"], "192.168.1.1 is private"),  # any one is enough
    ],
)
def test_a_public_name_that_resolves_to_a_refused_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_connections: None, addresses: list[str], reason: str
) -> None:
    _fake_dns(monkeypatch, {"images.example.test": [addresses]})
    with pytest.raises(AvatarFetchError, match=re.escape(reason)) as info:
        _source().read(_record(avatar_url="http://images.example.test/a.png"), base_dir=None)
    assert info.value.field == "avatar_url"


def test_a_redirect_to_a_name_that_resolves_privately_is_refused(
    monkeypatch: pytest.MonkeyPatch, server: _Server
) -> None:
    lookups = _fake_dns(monkeypatch, {"internal.example.test": [["10.0.0.5"]]})
    server.routes["/a.png"] = _redirect("http://internal.example.test/secret")
    with pytest.raises(AvatarFetchError, match="10.0.0.5 is private"):
        _source(allow_private=True).read(_record(avatar_url=server.base + "/a.png"), base_dir=None)
    assert lookups == ["internal.example.test"]
    assert server.requests == ["/a.png"]


def test_the_name_is_resolved_once_and_the_checked_address_is_dialled(
    monkeypatch: pytest.MonkeyPatch, server: _Server
) -> None:
    # A rebinding DNS server answers the loopback test server first and a private address on
    # any later lookup; the fetch must connect to the first answer, never look up again.
    lookups = _fake_dns(monkeypatch, {"rebind.example.test": [["127.0.0.1"], ["10.0.0.5"]]})
    server.routes["/a.png"] = _send(IMAGE)
    url = f"http://rebind.example.test:{server.port}/a.png"
    assert _source(allow_private=True).read(_record(avatar_url=url), base_dir=None) == IMAGE
    assert lookups == ["rebind.example.test"]
    assert server.requests == ["/a.png"]
