"""A real SMTP server on localhost (aiosmtpd) for the tests that read what the service mails,
and readers of the messages it received."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

SENDER = "clonefinder <alerts@clonefinder.test>"


class Inbox:
    """What a real SMTP server on localhost received, message by message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's API
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [message for rcpts, message in self._messages if address in rcpts]


@contextmanager
def running_inbox() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free local port, and what it receives."""
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def mail_settings(port: int) -> dict[str, str]:
    """The service's settings for mailing through the local server on `port`, with quick
    retries."""
    return {
        "CLONEFINDER_SMTP_HOST": "127.0.0.1",
        "CLONEFINDER_SMTP_PORT": str(port),
        "CLONEFINDER_SMTP_TLS": "none",
        "CLONEFINDER_SMTP_SENDER": SENDER,
        "CLONEFINDER_WEBHOOK_RETRY_BASE_S": "0.05",
        "CLONEFINDER_WEBHOOK_POLL_INTERVAL_S": "0.1",
    }


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(text: str, path: str) -> str:
    found = re.search(rf"https?://\S+{re.escape(path)}\S+", text)
    assert found, text
    return found.group(0)
