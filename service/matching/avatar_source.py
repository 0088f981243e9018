"""Turn a profile record's avatar field into raw image bytes, within size, time and address limits.

A record names its avatar one of three ways (interface.md section 1): inline base64, a local
file, or an http(s) address. This module only fetches bytes; decoding them as an image is the
indexers' job. Every refusal is a `CloneFinderError` that names the field, so a batch can reject
one record and go on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
import socket
import ssl
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx

from models.errors import AvatarFetchError, InvalidRecordError, PayloadTooLargeError
from models.profile import ProfileRecord

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
ALLOWED_SCHEMES = ("http", "https")
_DATA_URL_PREFIX = re.compile(r"^data:image/[a-z0-9.+\-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# NAT64's well-known prefix (RFC 6052) embeds an IPv4 address that a NAT64 gateway would reach.
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_CHUNK_BYTES = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# httpcore's errors reach us unwrapped through the small transport below.
_TIMEOUTS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpcore.TimeoutException)
_FAILURES: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
    httpcore.ProxyError,
)


class AvatarSource:
    """Reads a record's avatar bytes from base64, a local file or an http(s) URL.

    Thread-safe: nothing mutable is shared between calls, so one instance serves a whole
    service. `allow_private` lets loopback addresses through (tests serving images from a local
    server); every other non-public address stays refused even then.
    """

    def __init__(self, *, max_bytes: int, timeout_s: float, allow_private: bool = False) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        # Loading the CA bundle costs milliseconds; do it once, contexts are safe to share.
        self._ssl_context = httpx.create_ssl_context(trust_env=False)

    def read(self, record: ProfileRecord, *, base_dir: Path | None) -> bytes | None:
        """The avatar's raw bytes, or None when the record names no avatar.

        Precedence when several are given: `avatar_base64`, then `avatar_path`, then
        `avatar_url`. A relative `avatar_path` resolves against `base_dir` (the folder of the file
        that named it). `base_dir=None` means the record came from a network client, which must
        never make the service read its own files: `avatar_path` is then refused.
        """
        if record.avatar_base64:
            return self._from_base64(record.avatar_base64)
        if record.avatar_path:
            return self._from_path(record.avatar_path, base_dir=base_dir)
        if record.avatar_url:
            return self._from_url(record.avatar_url)
        return None

    # -- base64 -------------------------------------------------------------------------------

    def _from_base64(self, text: str) -> bytes:
        encoded = _DATA_URL_PREFIX.sub("", text.strip(), count=1)
        encoded = _WHITESPACE.sub("", encoded)
        # Refuse a huge string before decoding it: n bytes encode to 4 * ceil(n / 3) characters.
        max_encoded = 4 * -(-self._max_bytes // 3)
        if len(encoded) > max_encoded:
            raise self._too_large("avatar_base64", f"more than {max_encoded} base64 characters")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRecordError(
                f"avatar_base64: not valid standard base64 ({exc})", field="avatar_base64"
            ) from None
        if not data:
            raise InvalidRecordError("avatar_base64: empty", field="avatar_base64")
        if len(data) > self._max_bytes:
            raise self._too_large("avatar_base64", f"{len(data)} bytes")
        return data

    # -- local file ---------------------------------------------------------------------------

    def _from_path(self, name: str, *, base_dir: Path | None) -> bytes:
        if base_dir is None:
            raise InvalidRecordError(
                "avatar_path: local files are read only for records from a file named on the "
                "command line; send avatar_base64 or avatar_url instead",
                field="avatar_path",
            )
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        try:
            info = path.stat()
        except FileNotFoundError:
            raise InvalidRecordError(
                f"avatar_path: no such file: {path}", field="avatar_path"
            ) from None
        except OSError as exc:
            raise InvalidRecordError(
                f"avatar_path: cannot read {path}: {exc.strerror or exc}", field="avatar_path"
            ) from None
        # Only regular files: a FIFO or /dev/zero would block or never end, and stat says 0 bytes.
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise InvalidRecordError(f"avatar_path: {path} is {kind}", field="avatar_path")
        if info.st_size > self._max_bytes:
            raise self._too_large("avatar_path", f"{info.st_size} bytes")
        try:
            with path.open("rb") as handle:
                # The file may grow between stat and read: never take more than the cap.
                data = handle.read(self._max_bytes + 1)
        except OSError as exc:
            raise InvalidRecordError(
                f"avatar_path: cannot read {path}: {exc.strerror or exc}", field="avatar_path"
            ) from None
        if len(data) > self._max_bytes:
            raise self._too_large("avatar_path", "the file grew while being read")
        if not data:
            raise InvalidRecordError(f"avatar_path: {path} is empty", field="avatar_path")
        return data

    # -- URL ----------------------------------------------------------------------------------

    def _from_url(self, url: str) -> bytes:
        current = _checked_url(url)
        deadline = time.monotonic() + self._timeout_s
        backend = _GuardedBackend(allow_private=self._allow_private, deadline=deadline)
        transport = _GuardedTransport(backend, ssl_context=self._ssl_context)
        # trust_env=False: a proxy from the environment would make us check the proxy's address
        # instead of the target's, and netrc credentials must not leak to arbitrary hosts.
        with httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self._timeout_s),
            headers={"Accept": "image/*", "Accept-Encoding": "identity"},
        ) as client:
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    with client.stream("GET", current) as response:
                        if response.has_redirect_location:
                            target = response.headers["location"]
                            current = _checked_url(str(current.join(target)))
                            logger.debug("avatar_url redirected to %s", current)
                            continue
                        if not response.is_success:
                            raise _fetch_error(f"status {response.status_code} from {current}")
                        return self._read_capped(response)
            except httpx.InvalidURL as exc:
                raise _fetch_error(f"invalid redirect address ({exc})") from None
            except _TIMEOUTS:
                raise _fetch_error(f"timed out after {self._timeout_s:g} s") from None
            except _FAILURES as exc:
                raise _fetch_error(f"cannot fetch {current}: {exc or type(exc).__name__}") from None
        raise _fetch_error(f"more than {MAX_REDIRECTS} redirects")

    def _read_capped(self, response: httpx.Response) -> bytes:
        """The body, stopping as soon as it passes the cap (no trust in Content-Length)."""
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise _fetch_error(f"larger than {self._max_bytes} bytes")
        body = bytearray()
        for chunk in response.iter_bytes(_CHUNK_BYTES):
            body += chunk
            if len(body) > self._max_bytes:
                raise _fetch_error(f"larger than {self._max_bytes} bytes")
        if not body:
            raise _fetch_error("empty response body")
        return bytes(body)

    def _too_large(self, field: str, what: str) -> PayloadTooLargeError:
        message = f"{field}: larger than {self._max_bytes} bytes ({what})"
        return PayloadTooLargeError(message, details=[{"field": field, "message": message}])


def _fetch_error(reason: str) -> AvatarFetchError:
    return AvatarFetchError(f"avatar_url: {reason}", field="avatar_url")


def _checked_url(url: str) -> httpx.URL:
    """An http(s) URL with a host, or an `AvatarFetchError` that says what is wrong."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise _fetch_error(f"invalid address ({exc})") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise _fetch_error(f"scheme '{parsed.scheme}' is not allowed (only http and https)")
    if not parsed.host:
        raise _fetch_error("the address has no host")
    return parsed


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `address` must not be fetched from, or None when it is a public unicast address.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by the
    embedded address too, since they can route to it.
    """
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            candidates.append(address.sixtofour)
        if address.teredo is not None:
            candidates.extend(address.teredo)
        if address in _NAT64_PREFIX:
            candidates.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    for candidate in candidates:
        if allow_loopback and candidate.is_loopback:
            continue
        for name, flagged in (
            ("unspecified", candidate.is_unspecified),
            ("loopback", candidate.is_loopback),
            ("link-local", candidate.is_link_local),
            ("multicast", candidate.is_multicast),
            ("private", candidate.is_private),
            ("reserved", candidate.is_reserved),
            ("not globally routable", not candidate.is_global),
        ):
            if flagged:
                return name
    return None


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects in one step, so what is checked is what is connected to.

    Why a network backend: httpx hands the host name to httpcore, which resolves it inside
    `connect_tcp`. Checking the name earlier and letting httpcore resolve it again would let a
    DNS server answer a public address to the check and a private one to the connection (DNS
    rebinding). Here the one resolution is checked and its addresses are what the socket
    connects to. TLS is untouched: httpcore still sends the URL's host name as SNI and verifies
    the certificate against it, because it takes those from the request, not from the socket.
    Every stream also carries the fetch's deadline, so the time limit is total, not per read.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        deadline: float,
        refuse: Callable[[str], Exception] = _fetch_error,
    ) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._deadline = deadline
        self._refuse = refuse  # builds the error a refusal raises, in the caller's words

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._checked_addresses(host, port)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_budget(timeout, self._deadline, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
                continue
            return _DeadlineStream(stream, deadline=self._deadline)
        assert last_error is not None  # addresses is never empty
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise self._refuse("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        # getaddrinfo has no timeout of its own; the system resolver's (a few seconds) applies.
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise self._refuse(f"cannot resolve host {host}: {exc}") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise self._refuse(f"host {host} has no address")
        # Refuse if ANY address is non-public: an attacker controls which one a client picks.
        for address in addresses:
            reason = address_refusal(address, allow_loopback=self._allow_private)
            if reason is not None:
                where = "" if str(address) == host else f" (host {host})"
                logger.info("refused fetch: address %s%s is %s", address, where, reason)
                raise self._refuse(f"address {address} is {reason}{where}")
        return addresses


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation gets at most the time left before the fetch's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, *, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            timeout=_budget(timeout, self._deadline, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(stream, deadline=self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _budget(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the total time limit is spent")
    return remaining if timeout is None else min(timeout, remaining)


def guarded_transport(
    *,
    allow_private: bool,
    timeout_s: float,
    refuse: Callable[[str], Exception],
    ssl_context: ssl.SSLContext,
) -> httpx.BaseTransport:
    """An httpx transport with the address checks above, for other outgoing requests.

    Every connection goes only to a checked public address (loopback too with
    `allow_private`), and all of one transport's work must end within `timeout_s` from now:
    build one per request. A refused address raises `refuse(reason)`. Callers still pass
    `follow_redirects=False` and `trust_env=False` to their client.
    """
    backend = _GuardedBackend(
        allow_private=allow_private, deadline=time.monotonic() + timeout_s, refuse=refuse
    )
    return _GuardedTransport(backend, ssl_context=ssl_context)


# What a request through `guarded_transport` raises besides a refusal: a time limit spent,
# or any other network or protocol failure.
TIMEOUT_ERRORS = _TIMEOUTS
NETWORK_ERRORS = _FAILURES


class _GuardedTransport(httpx.BaseTransport):
    """httpx's transport over an httpcore pool that uses the guarded network backend.

    httpx's own `HTTPTransport` cannot take a network backend, so this is the few lines of it
    that matter for a plain GET, with public APIs only.
    """

    def __init__(self, backend: httpcore.NetworkBackend, *, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, max_connections=4
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        core_response = self._pool.handle_request(core_request)
        assert isinstance(core_response.stream, Iterable)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
