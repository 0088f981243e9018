"""A real HTTP server on localhost, in a thread, that records what webhooks send it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Receiver:
    """Answers POSTs with scripted statuses per path (then `default`), and records each.

    `script("/a", [500, 500])` makes the first two POSTs to /a answer 500, later ones
    `default`. `headers_for` adds answer headers per status (a redirect's Location).
    """

    def __init__(self, *, default: int = 200, delay_s: float = 0.0) -> None:
        self.default = default
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._scripts: dict[str, list[int]] = {}
        self._received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                status = receiver._record(self.path, dict(self.headers.items()), body)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/redirected")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[path] = list(statuses)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self._received.append(
                Received(path=path, headers={k.lower(): v for k, v in headers.items()}, body=body)
            )
            queue = self._scripts.get(path)
            return queue.pop(0) if queue else self.default

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    """A port nothing listens on (for a refused connection)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], *, timeout_s: float = 30.0, every_s: float = 0.05
) -> Any:
    """Poll `condition()` until it returns something truthy (returned), or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:g} s")
        time.sleep(every_s)
