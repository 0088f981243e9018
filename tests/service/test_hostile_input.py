"""Hostile records never fail a request, a job or a command: each is that record's error.

Hypothesis builds batches that mix good records with hostile ones (a date that overflows once
in UTC, a count past 64 bits, an integer literal of thousands of digits, nesting thousands
deep, NUL, a lone surrogate, NaN, bytes that are not UTF-8, a record over the size limit, a
wrong type, no object at all) and sends them every way a record comes in: `POST
/v1/profiles`, `/v1/checks`, `/v1/watchlist`, `/v1/evidence/checks`, `/web/api/check`, bulk
scans (JSON Lines and JSON lists, both modes, with and without `ingest`) and `clonefinder
ingest`. What must hold: never a 5xx, the good records kept, each hostile one reported with
its line or index and its field, every scan job `done`.

Bounded and repeatable: a few examples per surface, derandomized, on one server of its own
(small record limit, small chunks, short leases, so that a failing chunk would show at once).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from models.profile import MAX_COUNT, MAX_INT_DIGITS, MAX_RECORD_DEPTH
from service.cli import app as cli_app
from service.core.settings import Settings
from tests.servers import ServerProcess, server_process

pytestmark = pytest.mark.slow

MAX_RECORD_BYTES = 64 * 1024
SERVER_ENV = {
    "CLONEFINDER_RATE_LIMIT_PER_MINUTE": "0",
    "CLONEFINDER_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
    "CLONEFINDER_SCAN_CHUNK_SIZE": "3",
    "CLONEFINDER_SCAN_POLL_S": "0.05",
    "CLONEFINDER_SCAN_LEASE_S": "2",
    "CLONEFINDER_SCAN_MAX_ATTEMPTS": "2",
}
JOB_TIMEOUT_S = 60.0
EXAMPLES = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_serial = itertools.count()


@dataclass(frozen=True)
class Sample:
    """One record as sent: its bytes, and what must become of it."""

    data: bytes
    handle: str | None  # a good record's handle (it must be kept); None for a hostile one
    field: str | None = None  # the field a hostile record's error names (None: the record)
    utf8: bool = True

    @property
    def good(self) -> bool:
        return self.handle is not None


def _handle(kind: str) -> str:
    return f"{kind}_{next(_serial)}"


def _record(handle: str, **fields: Any) -> dict[str, Any]:
    return {"platform": "twitter", "handle": handle, "display_name": "Hostile Input", **fields}


def _with_raw(handle: str, field: str, raw_value: str) -> bytes:
    """A record whose `field` is JSON text that json.dumps would not write (a literal of
    thousands of digits, NaN, a lone surrogate escape, nesting thousands deep)."""
    head = json.dumps(_record(handle))[:-1]
    return f'{head}, "{field}": {raw_value}}}'.encode()


@st.composite
def good_records(draw: st.DrawFn) -> Sample:
    handle = _handle("good")
    name = draw(st.sampled_from(["Jane Doe", "Olaf Olafsen", "María José", "李小龍"]))
    fields = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "bio": st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40),
                "followers_count": st.integers(min_value=0, max_value=MAX_COUNT),
                "verified": st.booleans(),
                "created_at": st.sampled_from(["2015-03-01T12:00:00Z", "2020-05-01T12:00+02:00"]),
                "tags": st.lists(st.integers(), max_size=3),
            },
        )
    )
    return Sample(json.dumps(_record(handle, display_name=name, **fields)).encode(), handle)


@st.composite
def hostile_records(draw: st.DrawFn) -> Sample:
    handle = _handle("bad")
    kind = draw(
        st.sampled_from(
            [
                "date",
                "count",
                "digits",
                "deep",
                "nul",
                "surrogate",
                "nan",
                "wrong_type",
                "not_object",
                "not_utf8",
                "too_large",
            ]
        )
    )
    if kind == "date":
        when = draw(st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"]))
        return Sample(json.dumps(_record(handle, created_at=when)).encode(), None, "created_at")
    if kind == "count":
        field = draw(st.sampled_from(["followers_count", "following_count", "posts_count"]))
        value = draw(
            st.one_of(
                st.integers(min_value=MAX_COUNT + 1, max_value=2**70), st.integers(max_value=-1)
            )
        )
        return Sample(json.dumps(_record(handle, **{field: value})).encode(), None, field)
    if kind == "digits":
        field = draw(st.sampled_from(["followers_count", "x_number"]))
        digits = draw(st.integers(min_value=MAX_INT_DIGITS + 1, max_value=MAX_INT_DIGITS + 2000))
        return Sample(_with_raw(handle, field, "7" * digits), None, field)
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_RECORD_DEPTH, max_value=5000))
        nested = draw(
            st.sampled_from(["[" * depth + "]" * depth, '{"k":' * depth + "1" + "}" * depth])
        )
        return Sample(_with_raw(handle, "x_nested", nested), None, "x_nested")
    if kind == "nul":
        field = draw(st.sampled_from(["bio", "display_name", "x_note"]))
        return Sample(json.dumps(_record(handle, **{field: "a\x00b"})).encode(), None, field)
    if kind == "surrogate":
        field = draw(st.sampled_from(["bio", "x_note"]))
        return Sample(_with_raw(handle, field, '"half \\ud83d of a pair"'), None, field)
    if kind == "nan":
        field = draw(st.sampled_from(["followers_count", "x_score"]))
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return Sample(_with_raw(handle, field, literal), None, field)
    if kind == "wrong_type":
        field, value = draw(
            st.sampled_from(
                [("verified", "yes"), ("verified", 1), ("followers_count", "12"),
                 ("followers_count", 1.5), ("created_at", 1700000000), ("bio", ["a"])]
            )
        )  # fmt: skip
        return Sample(json.dumps(_record(handle, **{field: value})).encode(), None, field)
    if kind == "not_object":
        data = draw(st.sampled_from([b"[1, 2]", b'"a profile"', b"42", b"null", b"true"]))
        return Sample(data, None)
    if kind == "not_utf8":
        return Sample(json.dumps(_record(handle, bio="caf\x00")).encode().replace(
            b"\\u0000", b"\xe9"), None, utf8=False)  # fmt: skip
    # too_large: over the record limit, wherever it comes in
    return Sample(json.dumps(_record(handle, bio="x" * MAX_RECORD_BYTES)).encode(), None)


batches = st.lists(st.one_of(good_records(), hostile_records()), min_size=1, max_size=5).filter(
    lambda batch: any(not sample.good for sample in batch)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with server_process(tmp_path_factory.mktemp("hostile-server"), env=SERVER_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as http:
        yield http


def _send(client: httpx.Client, path: str, data: bytes, **kwargs: Any) -> httpx.Response:
    response = client.post(path, content=data, **kwargs)
    assert response.status_code < 500, (path, response.status_code, response.text[:500])
    return response


def _assert_reported(error: dict[str, Any], sample: Sample, where: str) -> None:
    assert where in error["message"] or error.get("where") == where, (where, error)
    if sample.field is not None:
        assert error["field"] == sample.field, (sample.data[:200], error)


def _assert_stored(client: httpx.Client, handle: str) -> None:
    response = client.get(f"/v1/profiles/twitter/{handle}")
    assert response.status_code == 200, (handle, response.text[:300])


@settings(EXAMPLES, max_examples=12)
@given(batch=batches)
def test_ingest_keeps_the_good_records_and_names_each_bad_one(
    client: httpx.Client, batch: list[Sample]
) -> None:
    body = b"[" + b",".join(sample.data for sample in batch) + b"]"
    response = _send(client, "/v1/profiles", body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    results = response.json()["results"]
    assert [item["index"] for item in results] == list(range(len(batch)))
    for index, (sample, item) in enumerate(zip(batch, results, strict=True)):
        if sample.good:
            assert item["status"] in ("created", "updated"), item
            _assert_stored(client, sample.handle or "")
        else:
            assert item["status"] == "rejected", (sample.data[:200], item)
            _assert_reported(item["error"], sample, f"index {index}")


@settings(EXAMPLES, max_examples=12)
@given(sample=st.one_of(good_records(), hostile_records()))
def test_one_record_requests_refuse_a_bad_record_with_its_field(
    server: ServerProcess, client: httpx.Client, sample: Sample
) -> None:
    json_body = {"content-type": "application/json"}
    page = {**json_body, "X-Clonefinder-Page": "1"}
    # The page takes only the fields it shows (name, handle, bio, avatar) and leaves the
    # rest unread: it may answer a record whose other fields are hostile, never fail on it.
    by_page = _send(client, "/web/api/check", sample.data, headers=page)
    assert by_page.status_code in (200, 413, 422), by_page.text[:300]
    answers = [
        _send(client, "/v1/checks", sample.data, headers=json_body),
        _send(client, "/v1/evidence/checks?format=json", sample.data, headers=json_body),
        _send(client, "/v1/watchlist", sample.data, headers=json_body),
    ]
    for answer in answers:
        if sample.good:
            assert answer.status_code in (200, 201), answer.text[:300]
            continue
        assert answer.status_code in (413, 422), (sample.data[:200], answer.text[:300])
        if sample.field is not None:
            fields = {detail.get("field") for detail in answer.json()["error"]["details"]}
            assert sample.field in fields, (sample.data[:200], answer.text[:300])


@pytest.mark.parametrize(
    "body",
    [
        b'{"victim": {"platform": "twitter", "handle": "victim"}, "title": "a\\u0000b"}',
        b'{"victim": {"platform": "twitter", "handle": "victim"}, "notes": "\\udc00"}',
        b'{"victim": {"platform": "twitter", "handle": "' + b"7" * 5000 + b'"}}',
        b'{"victim": {"platform": "twitter", "handle": "victim"}, "notes": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
        b'{"victim": {"platform": "twitter", "handle": "victim"}, "title": ' + b"9" * 5000 + b"}",
        b'{"victim": {"platform": "tw\xff", "handle": "x"}}',
    ],
)
def test_a_case_body_with_hostile_values_is_refused_not_failed(
    client: httpx.Client, body: bytes
) -> None:
    victim = {"platform": "twitter", "handle": "victim", "display_name": "Vic Tim"}
    assert client.post("/v1/profiles", json=victim).status_code == 200
    response = _send(client, "/v1/cases", body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text[:300]


def _wait_done(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.get(f"/v1/scans/{job['id']}").json()
        if status["state"] not in ("queued", "running"):
            return status  # type: ignore[no-any-return]
        time.sleep(0.05)
    pytest.fail(f"scan job {job['id']} not finished after {JOB_TIMEOUT_S:.0f} s")


def _results(client: httpx.Client, job: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(f"/v1/scans/{job['id']}/results")
    assert response.status_code == 200, response.text[:300]
    return [json.loads(line) for line in response.text.splitlines()]


@settings(EXAMPLES, max_examples=6)
@given(batch=batches)
def test_scan_jobs_finish_with_one_error_line_per_bad_record(
    client: httpx.Client, batch: list[Sample]
) -> None:
    jsonl = b"\n".join(sample.data for sample in batch) + b"\n"
    listed = b"[" + b",".join(sample.data for sample in batch) + b"]"
    uploads = [  # (body, content type, options, how a record's place is named)
        (jsonl, "application/x-ndjson", {}, "line {}"),
        (jsonl, "application/x-ndjson", {"ingest": "true"}, "line {}"),
        (jsonl, "application/x-ndjson", {"mode": "clusters"}, "line {}"),
        (listed, "application/json", {"ingest": "true"}, "index {}"),
    ]
    for body, media_type, options, place in uploads:
        response = _send(
            client, "/v1/scans", body, params=options, headers={"content-type": media_type}
        )
        assert response.status_code == 202, response.text[:300]
        status = _wait_done(client, response.json())
        assert status["state"] == "done", status
        assert status["total"] == len(batch)
        errors = {
            line["error"]["where"]: line["error"] for line in _results(client, response.json())
            if "error" in line
        }  # fmt: skip
        for position, sample in enumerate(batch):
            where = place.format(position + 1 if place.startswith("line") else position)
            if sample.good:
                assert where not in errors, errors[where]
                if options.get("ingest"):
                    _assert_stored(client, sample.handle or "")
            else:
                assert where in errors, (sample.data[:200], sorted(errors))
                _assert_reported(errors[where], sample, where)


@pytest.fixture(scope="module")
def cli_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-cli") / "data"


@settings(EXAMPLES, max_examples=6)
@given(batch=batches)
def test_the_ingest_command_reports_each_bad_line_and_goes_on(
    open_engine: Callable[[Settings], AbstractContextManager[Any]],
    cli_data_dir: Path,
    batch: list[Sample],
) -> None:
    source = cli_data_dir.parent / f"batch-{next(_serial)}.jsonl"
    source.write_bytes(b"\n".join(sample.data for sample in batch) + b"\n")
    result = CliRunner().invoke(
        cli_app,
        ["ingest", str(source), "--data-dir", str(cli_data_dir)],
        obj={"open_engine": open_engine},
        env={"CLONEFINDER_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES)},
    )
    if not batch[0].utf8:
        # A first line that is not UTF-8 says the file is in another encoding: refused whole.
        assert result.exit_code == 2, result.output
        assert "not UTF-8" in result.output
        return
    assert result.exit_code == 1, result.output  # 1: some records were rejected
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    good = sum(sample.good for sample in batch)
    assert f"rejected {len(batch) - good} " in result.output, result.output
    reasons = {
        line.strip().split(":", 1)[0]: line for line in result.output.splitlines()
        if line.startswith("  line ")
    }  # fmt: skip
    for number, sample in enumerate(batch, start=1):
        if sample.good:
            assert f"line {number}" not in reasons
        else:
            reason = reasons[f"line {number}"]
            if sample.field is not None:
                assert f"field '{sample.field}'" in reason, reason
    settings_ = Settings(data_dir=cli_data_dir)
    with open_engine(settings_) as engine:
        for sample in batch:
            if sample.good:
                assert engine.store.get("twitter", sample.handle or "") is not None
