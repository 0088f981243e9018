"""Webhook signing, the guarded POST to a real local receiver, and the delivery loop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from models.errors import InvalidInputError
from service.core.settings import Settings
from service.store import Store
from service.store.watchlist import AlertRow, AlertWrite, EntryWrite, WatchlistStore
from service.watchlist.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    WebhookSender,
    check_webhook_url,
    retry_delay,
    sign,
    verify,
)
from tests.conftest import REPO_ROOT
from tests.service.webhook_receiver import Receiver, free_port, wait_for

SECRET = "whsec_test-secret"


def test_a_signature_verifies_only_for_the_same_secret_body_and_a_recent_time() -> None:
    body = b'{"id": 1, "score": 0.97}'
    now = int(time.time())
    signature = sign(SECRET, now, body)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify(SECRET, timestamp=str(now), signature=signature, body=body)
    assert not verify("whsec_other", timestamp=str(now), signature=signature, body=body)
    assert not verify(SECRET, timestamp=str(now), signature=signature, body=body + b" ")
    assert not verify(SECRET, timestamp=str(now + 1), signature=signature, body=body)
    old = now - 3600
    assert not verify(SECRET, timestamp=str(old), signature=sign(SECRET, old, body), body=body)
    assert not verify(SECRET, timestamp="soon", signature=signature, body=body)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # The scheme the README documents, computed independently.
    import hashlib
    import hmac

    body = b"{}"
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, body) == f"v1={expected}"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/x", "scheme 'ftp'"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("http://10.1.2.3/x", "private"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[::1]:8080/x", "loopback"),
        ("http:///path", "no host"),
    ],
)
def test_a_webhook_url_that_can_never_work_is_refused_at_once(url: str, why: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_webhook_url(url, allow_private=False)
    assert why in caught.value.message
    assert caught.value.details[0]["field"] == "webhook_url"


def test_loopback_is_allowed_only_where_private_addresses_are() -> None:
    assert check_webhook_url("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(InvalidInputError):
        check_webhook_url("http://10.1.2.3/x", allow_private=True)  # still private


def test_a_post_carries_the_exact_body_and_a_verifiable_signature() -> None:
    sender = WebhookSender(timeout_s=5.0, allow_private=True)
    body = json.dumps({"id": 7, "label": "likely_clone", "name": "Jаne"}).encode()
    with Receiver() as receiver:
        result = sender.send(receiver.url(), body, secret=SECRET, delivery_id=3, attempt=2)
        (got,) = receiver.received()
    assert result.ok and result.status_code == 200 and result.error is None
    assert result.duration_ms >= 0
    assert got.body == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-clonefinder-delivery"] == "3"
    assert got.headers["x-clonefinder-attempt"] == "2"
    assert verify(
        SECRET,
        timestamp=got.headers[TIMESTAMP_HEADER.lower()],
        signature=got.headers[SIGNATURE_HEADER.lower()],
        body=got.body,
    )


def test_an_error_status_a_redirect_and_a_dead_port_are_failed_attempts() -> None:
    sender = WebhookSender(timeout_s=5.0, allow_private=True)
    with Receiver() as receiver:
        receiver.script("/down", [503])
        receiver.script("/moved", [302])
        down = sender.send(receiver.url("/down"), b"{}", secret=SECRET, delivery_id=1, attempt=1)
        moved = sender.send(receiver.url("/moved"), b"{}", secret=SECRET, delivery_id=1, attempt=1)
        assert [r.path for r in receiver.received()] == ["/down", "/moved"]  # not followed
    assert not down.ok and down.status_code == 503 and down.error == "status 503"
    assert not moved.ok and moved.status_code == 302
    assert moved.error is not None and "redirects are not followed" in moved.error

    dead = sender.send(
        f"http://127.0.0.1:{free_port()}/x", b"{}", secret=SECRET, delivery_id=1, attempt=1
    )
    assert not dead.ok and dead.status_code is None
    assert dead.error is not None and dead.error.startswith("cannot deliver")


def test_a_slow_receiver_is_a_timed_out_attempt() -> None:
    sender = WebhookSender(timeout_s=0.3, allow_private=True)
    with Receiver(delay_s=2.0) as receiver:
        result = sender.send(receiver.url(), b"{}", secret=SECRET, delivery_id=1, attempt=1)
    assert not result.ok and result.error == "timed out after 0.3 s"


def test_a_name_that_resolves_to_a_refused_address_is_never_contacted() -> None:
    # "localhost" passes the check of the URL's text; its resolved address is what is refused.
    sender = WebhookSender(timeout_s=5.0, allow_private=False)
    with Receiver() as receiver:
        result = sender.send(
            f"http://localhost:{receiver.port}/hook", b"{}", secret=SECRET, delivery_id=1, attempt=1
        )
        assert receiver.received() == []
    assert not result.ok and result.status_code is None
    assert result.error is not None and result.error.startswith("refused: address")
    assert "loopback" in result.error


def test_retries_back_off_exponentially_up_to_a_ceiling() -> None:
    assert [retry_delay(n, base_s=30, max_s=3600) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(20, base_s=30, max_s=3600) == 3600


def _pending_delivery(store: Store, url: str) -> tuple[WatchlistStore, AlertRow]:
    watchlist = WatchlistStore(store)
    entry = watchlist.add_entry(
        EntryWrite(
            key_id=1, platform_key=None, handle_key=None, profile_id=None,
            identity={"display_name": "Jane Doe"}, display_name="Jane Doe", name_key="jane doe",
            handle_norm="", bio=None, bio_vector=None, avatar_hashes=None,
            account_created_at=None, followers_count=None, verified=None, threshold=0.8,
            webhook_url=url, webhook_secret=SECRET,
        )
    )  # fmt: skip
    (alert,) = watchlist.add_alerts(
        [
            AlertWrite(
                entry_id=entry.id, key_id=1, profile_id=5, profile={"handle": "jane_d0e"},
                score=0.99, label="likely_clone", signals={}, reasons=[],
                likely_impersonator="candidate", webhook_url=url,
            )
        ],
        payload=lambda row: json.dumps({"id": row.id}),
    )  # fmt: skip
    return watchlist, alert


def test_the_loop_retries_until_the_receiver_accepts(store: Store) -> None:
    settings = Settings(webhook_retry_base_s=0.01, webhook_max_attempts=5)
    with Receiver() as receiver:
        receiver.script("/flaky", [500, 500])
        watchlist, alert = _pending_delivery(store, receiver.url("/flaky"))
        loop = WebhookDispatcher(
            watchlist, settings=settings, sender=WebhookSender(timeout_s=5, allow_private=True)
        )
        wait_for(lambda: loop.run_once() == 0 and watchlist.deliveries(alert.id)[0].finished_at)
        received = receiver.received("/flaky")
    (delivery,) = watchlist.deliveries(alert.id)
    assert delivery.status == "delivered"
    assert [(a.attempt, a.status_code, a.ok) for a in delivery.attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    # Every attempt sends the same body, each signed for its own time.
    assert [r.body for r in received] == [json.dumps({"id": alert.id}).encode()] * 3
    assert all(
        verify(
            SECRET,
            timestamp=r.headers["x-clonefinder-timestamp"],
            signature=r.headers["x-clonefinder-signature"],
            body=r.body,
        )
        for r in received
    )


def test_the_loop_gives_up_after_the_last_attempt(store: Store) -> None:
    settings = Settings(webhook_retry_base_s=0.01, webhook_max_attempts=2)
    with Receiver(default=500) as receiver:
        watchlist, alert = _pending_delivery(store, receiver.url())
        loop = WebhookDispatcher(
            watchlist, settings=settings, sender=WebhookSender(timeout_s=5, allow_private=True)
        )
        wait_for(lambda: loop.run_once() == 0 and watchlist.deliveries(alert.id)[0].finished_at)
        assert len(receiver.received()) == 2
    (delivery,) = watchlist.deliveries(alert.id)
    assert delivery.status == "failed"
    assert [a.error for a in delivery.attempts] == ["status 500", "status 500"]


def test_the_background_threads_deliver_and_stop(store: Store) -> None:
    settings = Settings(webhook_poll_interval_s=0.05, webhook_workers=2)
    with Receiver() as receiver:
        watchlist, alert = _pending_delivery(store, receiver.url())
        loop = WebhookDispatcher(
            watchlist, settings=settings, sender=WebhookSender(timeout_s=5, allow_private=True)
        )
        loop.start()
        try:
            wait_for(lambda: watchlist.deliveries(alert.id)[0].status == "delivered")
        finally:
            loop.stop()
        assert len(receiver.received()) == 1  # two workers, one attempt


@pytest.mark.slow
def test_a_worker_process_sends_the_deliveries_of_the_store(tmp_path: Path) -> None:
    """`clonefinder worker` runs a delivery loop too: a delivery written by any process goes."""
    data_dir = tmp_path / "data"
    with Receiver() as receiver:
        store = Store.open(Settings(data_dir=data_dir).resolved_database_url)
        try:
            _, alert = _pending_delivery(store, receiver.url("/from-worker"))
        finally:
            store.close()
        env = {
            **os.environ,
            "CLONEFINDER_AVATAR_FETCH_ALLOW_PRIVATE": "1",
            "CLONEFINDER_WEBHOOK_POLL_INTERVAL_S": "0.1",
        }
        env.pop("CLONEFINDER_DATA_DIR", None)
        command = [sys.executable, "-m", "service.cli", "worker", "--data-dir", str(data_dir)]
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            (request,) = wait_for(lambda: receiver.received("/from-worker"), timeout_s=120)
        finally:
            process.terminate()
            process.wait(timeout=60)
    assert process.returncode is not None
    assert json.loads(request.body) == {"id": alert.id}
    store = Store.open(Settings(data_dir=data_dir).resolved_database_url)
    try:
        (delivery,) = WatchlistStore(store).deliveries(alert.id)
    finally:
        store.close()
    assert delivery.status == "delivered", log.read_text()


def test_the_readme_verification_snippet_accepts_our_signatures_only() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (snippet,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
        if "def verify_signature" in block
    ]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - the README's own example
    verify_signature = namespace["verify_signature"]
    body = b'{"id": 5, "label": "likely_clone"}'
    now = int(time.time())
    headers = {
        "X-Clonefinder-Timestamp": str(now),
        "X-Clonefinder-Signature": sign(SECRET, now, body),
    }
    assert verify_signature(SECRET, headers, body)
    assert not verify_signature("whsec_other", headers, body)
    assert not verify_signature(SECRET, headers, body.replace(b"5", b"6"))
    old = now - 3600
    stale = {
        "X-Clonefinder-Timestamp": str(old),
        "X-Clonefinder-Signature": sign(SECRET, old, body),
    }
    assert not verify_signature(SECRET, stale, body)
