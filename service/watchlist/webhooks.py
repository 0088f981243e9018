"""Signed webhook deliveries of watchlist alerts, and the background loop that sends them
(and the alerts' e-mails, `service.watchlist.mail`).

Each alert of an entry with a webhook URL becomes a durable delivery row (see
`service.store.watchlist`). A delivery loop claims due deliveries, POSTs the alert as JSON with
an HMAC-SHA256 signature, logs the attempt and either marks the delivery delivered, schedules a
retry with exponential backoff, or gives up after the configured number of attempts. Queued
e-mails go the same way, through the SMTP server, with the same retries.

The signature scheme (what a receiver checks):

    X-Clonefinder-Timestamp: <unix seconds>
    X-Clonefinder-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>

over the exact body bytes. The timestamp lets a receiver refuse replays of old deliveries.

The POST goes through the same guarded transport as avatar fetching: only public addresses
(checked on the resolved address, which is the one connected to), no redirects, a total time
limit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from models.errors import InvalidInputError
from service.core.observability import count_delivery
from service.core.settings import Settings
from service.matching.avatar_source import (
    NETWORK_ERRORS,
    TIMEOUT_ERRORS,
    address_refusal,
    guarded_transport,
)
from service.store.watchlist import AttemptResult, ClaimedDelivery, ClaimedMail, WatchlistStore
from service.watchlist.mail import MailSender

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Clonefinder-Timestamp"
SIGNATURE_HEADER = "X-Clonefinder-Signature"
DELIVERY_HEADER = "X-Clonefinder-Delivery"
ATTEMPT_HEADER = "X-Clonefinder-Attempt"
SIGNATURE_VERSION = "v1"
MAX_URL_LENGTH = 2048
# A receiver's answer body is not needed; reading a little lets the connection close cleanly.
_ANSWER_BYTES = 64 * 1024
# A claim outlives the slowest attempt by this much, so a live worker never loses its claim.
_LEASE_MARGIN_S = 60.0
_BACKOFF_AFTER_ERROR_S = 5.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str,
    *,
    timestamp: str,
    signature: str,
    body: bytes,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a delivery's headers sign `body` with `secret`, sent within `tolerance_s`.

    What a receiver runs; kept here so the README's snippet and the tests check one thing.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


class _Refused(Exception):
    """A webhook address the guarded transport must not connect to."""


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL, if it can be a webhook: http(s), a host, and not a literal non-public address.

    Host names are checked again, on their resolved addresses, at every attempt (a name can
    change what it points to); this check only turns away what can never work, at once.
    """
    message = None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        parsed = None
        message = f"not a valid address ({exc})"
    if parsed is not None:
        if len(url) > MAX_URL_LENGTH:
            message = f"longer than {MAX_URL_LENGTH} characters"
        elif parsed.scheme not in ("http", "https"):
            message = f"scheme '{parsed.scheme}' is not allowed (only http and https)"
        elif not parsed.host:
            message = "the address has no host"
        elif parsed.userinfo:
            message = "credentials in the address are not allowed"
        else:
            try:
                address = ipaddress.ip_address(parsed.host)
            except ValueError:
                address = None
            reason = address and address_refusal(address, allow_loopback=allow_private)
            if reason:
                message = f"address {address} is {reason}"
    if message is not None:
        message = f"field 'webhook_url': {message}"
        raise InvalidInputError(message, details=[{"field": "webhook_url", "message": message}])
    return url


class WebhookSender:
    """POSTs one signed body to a webhook URL through the guarded transport; never raises for
    what the network or the receiver does, but reports it as an `AttemptResult`."""

    def __init__(self, *, timeout_s: float, allow_private: bool) -> None:
        self._timeout_s = timeout_s
        self._allow_private = allow_private
        # Loading the CA bundle costs milliseconds; do it once, contexts are safe to share.
        self._ssl_context = httpx.create_ssl_context(trust_env=False)

    def send(
        self, url: str, body: bytes, *, secret: str, delivery_id: int, attempt: int
    ) -> AttemptResult:
        started_at = datetime.now(UTC)
        began = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "clonefinder-webhooks/1",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: str(delivery_id),
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            check_webhook_url(url, allow_private=self._allow_private)
            transport = guarded_transport(
                allow_private=self._allow_private,
                timeout_s=self._timeout_s,
                refuse=_Refused,
                ssl_context=self._ssl_context,
            )
            # trust_env=False: a proxy from the environment would be checked instead of the
            # receiver, and netrc credentials must not go to arbitrary hosts.
            with (
                httpx.Client(
                    transport=transport,
                    follow_redirects=False,
                    trust_env=False,
                    timeout=httpx.Timeout(self._timeout_s),
                ) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                status_code = response.status_code
                read = 0
                for chunk in response.iter_bytes():
                    read += len(chunk)
                    if read >= _ANSWER_BYTES:
                        break
            if 300 <= status_code < 400:
                error = f"status {status_code}: redirects are not followed"
            elif not 200 <= status_code < 300:
                error = f"status {status_code}"
        except InvalidInputError as exc:
            error = exc.message
        except _Refused as exc:
            error = f"refused: {exc}"
        except TIMEOUT_ERRORS:
            error = f"timed out after {self._timeout_s:g} s"
        except NETWORK_ERRORS as exc:
            error = f"cannot deliver: {exc or type(exc).__name__}"
        return AttemptResult(
            started_at=started_at,
            duration_ms=round((time.monotonic() - began) * 1000.0, 3),
            status_code=status_code,
            error=error,
            ok=error is None,
        )


def _origin(url: str) -> str:
    """Where a URL points, without its path: webhook paths often embed a token of their own,
    which server logs must not keep."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(invalid address)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def retry_delay(attempt: int, *, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1): base, 2 x base, ..."""
    return float(min(max_s, base_s * (2 ** min(attempt - 1, 32))))


class WebhookDispatcher:
    """Sends due deliveries (and, with a `mailer`, due e-mails) from background threads until
    stopped.

    Any number of processes (`serve`, `worker`) may run one on the same database: deliveries
    are claimed before they are sent, so each attempt is made by one process only. A new alert
    of this process wakes the loop at once; those of other processes are found by polling.
    """

    def __init__(
        self,
        store: WatchlistStore,
        *,
        settings: Settings,
        sender: WebhookSender | None = None,
        mailer: MailSender | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sender = sender or WebhookSender(
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.avatar_fetch_allow_private,
        )
        self._mailer = mailer
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for n in range(self._settings.webhook_workers):
            thread = threading.Thread(target=self._loop, name=f"webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("webhook delivery loop started (%d workers)", len(self._threads))

    def wake(self) -> None:
        """Look for due deliveries now (called when this process stores a new alert)."""
        self._wake.set()

    def stop(self, *, timeout_s: float | None = None) -> None:
        """Stop the loop; an attempt in flight finishes (within the webhook time limit)."""
        self._stop.set()
        self._wake.set()
        limit = self._settings.webhook_timeout_s + 5.0 if timeout_s is None else timeout_s
        for thread in self._threads:
            thread.join(limit)
        self._threads = []

    def run_once(self, *, limit: int = 1) -> int:
        """Claim and send up to `limit` due deliveries, and as many due e-mails; returns how
        many attempts were made."""
        lease_s = self._settings.webhook_timeout_s + _LEASE_MARGIN_S
        claimed = self._store.claim_due(limit=limit, lease_s=lease_s)
        for delivery in claimed:
            self._attempt(delivery)
        if self._mailer is None:
            return len(claimed)
        mail_lease_s = self._settings.smtp_timeout_s * 4 + _LEASE_MARGIN_S  # connect, TLS, send
        mails = self._store.claim_due_mail(limit=limit, lease_s=mail_lease_s)
        for mail in mails:
            self._send_mail(self._mailer, mail)
        return len(claimed) + len(mails)

    def _retry_at(self, attempt: int) -> datetime | None:
        if attempt >= self._settings.webhook_max_attempts:
            return None
        delay = retry_delay(
            attempt,
            base_s=self._settings.webhook_retry_base_s,
            max_s=self._settings.webhook_retry_max_s,
        )
        return datetime.now(UTC) + timedelta(seconds=delay)

    def _send_mail(self, mailer: MailSender, mail: ClaimedMail) -> None:
        result = mailer.send(mail)
        retry_at = None
        if result.error is not None and not result.permanent:
            retry_at = self._retry_at(mail.attempt)
        status = self._store.record_mail_attempt(mail, error=result.error, retry_at=retry_at)
        count_delivery("email", status)
        log: Callable[..., None] = logger.info if result.error is None else logger.warning
        # The address is the person's: the log names the e-mail by its number only.
        log(
            "%s e-mail %d attempt %d: %s -> %s",
            mail.kind,
            mail.id,
            mail.attempt,
            result.error or "sent",
            status or "claim lost",
        )

    def _attempt(self, delivery: ClaimedDelivery) -> None:
        result = self._sender.send(
            delivery.url,
            delivery.payload.encode("utf-8"),
            secret=delivery.secret,
            delivery_id=delivery.id,
            attempt=delivery.attempt,
        )
        retry_at = None if result.ok else self._retry_at(delivery.attempt)
        status = self._store.record_attempt(delivery, result, retry_at=retry_at)
        count_delivery("webhook", status)
        log: Callable[..., None] = logger.info if result.ok else logger.warning
        log(
            "webhook delivery %d attempt %d to %s: %s -> %s",
            delivery.id,
            delivery.attempt,
            _origin(delivery.url),
            "ok" if result.ok else result.error,
            status or "claim lost",
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:
                # The database may be briefly unavailable; the loop must outlive that.
                logger.exception("webhook delivery loop failed; retrying")
                self._stop.wait(_BACKOFF_AFTER_ERROR_S)
                continue
            if sent:
                continue
            self._wake.wait(self._settings.webhook_poll_interval_s)
            self._wake.clear()
