"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis).

Every operation the served document lists (whatever routes exist when this runs) gets
schema-driven requests, valid and invalid, sent with an admin key to a real server process,
and every answer goes through schemathesis's full set of checks: never a 5xx, a status the
document lists, a body, headers and content type as documented, schema-valid requests
accepted and schema-violating ones refused, and a 405 whose `Allow` names every method the
path serves. The allowances: a schema-valid avatar may still be refused (422), since no
schema can say that bytes decode as an image or that an address can be fetched (the
document's example addresses are reserved names, `.test`, that never resolve, so fuzzing
makes no lookup off this machine); and a schema-valid `Idempotency-Key` that an earlier case
sent with another request is refused (422 `idempotency_key_reused`), since no schema can say
which keys were used before.

Bounded and repeatable: at most `MAX_EXAMPLES` cases per operation, derandomized (the same
cases on every run), no shrinking; the server is one of its own, so fuzzed records never
reach the store other tests read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api.app import create_app
from service.core.settings import Settings
from tests.conftest import SERVER_MAX_BODY_BYTES, SERVER_MAX_IMAGES, SERVER_MAX_RECORDS
from tests.servers import ServerProcess, server_process

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

MAX_EXAMPLES = 25
AVATAR_FIELDS = frozenset({"avatar_url", "avatar_base64"})


def _refuses_only_an_avatar(response: Any) -> bool:
    """A 422 whose every detail is about an avatar field."""
    if response.status_code != 422:
        return False
    try:
        details = json.loads(response.content)["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(details) and all(
        isinstance(detail, dict) and detail.get("field") in AVATAR_FIELDS for detail in details
    )


def _reuses_an_idempotency_key(response: Any) -> bool:
    """A 422 for an `Idempotency-Key` an earlier case sent with another request."""
    if response.status_code != 422:
        return False
    try:
        return bool(json.loads(response.content)["error"]["code"] == "idempotency_key_reused")
    except (ValueError, KeyError, TypeError):
        return False


def schema_valid_requests_are_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's `positive_data_acceptance`, but for an avatar the server could not read
    (a schema-valid string that is no image, or an address that does not resolve) and for an
    idempotency key that earlier cases used."""
    if _refuses_only_an_avatar(response) or _reuses_an_idempotency_key(response):
        return None
    return positive_data_acceptance(ctx, response, case)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        # No throttling (fuzzing is many requests from one key) and small caps, so that the
        # 413s the fuzzer provokes cost little.
        "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
        "CLONEFINDER_MAX_BODY_BYTES": str(SERVER_MAX_BODY_BYTES),
        "CLONEFINDER_MAX_RECORDS_PER_REQUEST": str(SERVER_MAX_RECORDS),
        "CLONEFINDER_MAX_IMAGES_PER_REQUEST": str(SERVER_MAX_IMAGES),
        # Fuzzed avatar URLs must never leave the machine; an unreachable resolver answers fast.
        "CLONEFINDER_AVATAR_FETCH_TIMEOUT_S": "1",
        # A watch may carry an e-mail address only where the service sends mail; nothing
        # listens here, so the confirmation mails the fuzzer causes fail and are retried.
        "CLONEFINDER_SMTP_HOST": "127.0.0.1",
        "CLONEFINDER_SMTP_PORT": "9",
        "CLONEFINDER_SMTP_SENDER": "alerts@example.org",
        "CLONEFINDER_SMTP_TLS": "none",
    }
    with server_process(tmp_path_factory.mktemp("fuzz-server"), env=env) as server:
        yield server


def _schema() -> Any:
    """The document the server serves, built in-process (no engine needed), so that pytest
    can collect one test per operation before any server runs."""
    document = create_app(Settings()).openapi()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        no_shrink=True,
        # NUL is refused in every text (PostgreSQL cannot store it), in attributes at any
        # depth, which a schema cannot say; tests/service/test_hostile_input.py sends it.
        allow_x00=False,
        # The key is sent by the test; generated Authorization headers would only test 401s.
        with_security_parameters=False,
    )
    return loaded


schema = _schema()


def test_the_served_document_is_the_one_fuzzed(fuzz_server: ServerProcess) -> None:
    served = httpx.get(f"{fuzz_server.base_url}/openapi.json", timeout=30).json()
    assert served == create_app(Settings()).openapi()


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_keeps_its_documented_contract(
    case: schemathesis.Case, fuzz_server: ServerProcess
) -> None:
    case.call_and_validate(
        base_url=fuzz_server.base_url,
        headers=fuzz_server.headers,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_requests_are_accepted],
        timeout=60,
    )
