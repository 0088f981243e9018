"""Batched checks, clusters, and scan jobs done by a worker, in process on the embedded default."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from indexers.bio import BioEmbedder
from models.errors import CloneFinderError, PermissionDeniedError
from service.auth.roles import Caller
from service.core.settings import Settings
from service.matching.engine import Engine
from service.scans.clusters import find_clusters
from service.scans.service import ScanService, ScanUpload
from service.scans.worker import ScanWorker
from tests.images import b64, jpeg_bytes, photo
from tests.support import items, jane, jane_clone, strangers

pytestmark = pytest.mark.slow

PLATFORM = Caller(key_id=11, name="platform", role="platform")


@pytest.fixture(scope="module")
def embedder() -> BioEmbedder:
    return BioEmbedder()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: BioEmbedder) -> Iterator[Engine]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("scan-engine") / "data",
        scan_chunk_size=3,
        scan_poll_s=0.05,
        scan_lease_s=5,
    )
    engine = Engine.open(settings, embedder=embedder)
    report = engine.ingest(items([jane(), jane_clone(), *strangers(40)]))
    assert report.rejected == 0
    yield engine
    engine.close()


def queries() -> list[Any]:
    namesake = photo(7).resize((120, 120))
    return [
        {"platform": "twitter", "handle": "janedoe"},  # a stored profile, completed from the store
        jane_clone(handle="another_jane"),  # a fresh copy
        {"display_name": "Luca Rossi 3"},
        {"bio": "Profile number 5: football, cooking and maths"},
        {"avatar_base64": b64(jpeg_bytes(namesake))},
        {"platform": "twitter"},  # nothing to look for: an error in its place
        {"platform": "twitter", "handle": "x", "avatar_base64": b64(b"no image")},  # bad avatar
        {"platform": "twitter", "handle": "user105"},
        jane(handle="JaneDoe"),
    ]


@pytest.mark.parametrize("min_score", [None, 0.0])
def test_a_batch_answers_each_query_as_a_single_check_does(
    engine: Engine, min_score: float | None
) -> None:
    batch = engine.check_many(queries(), top_k=5, min_score=min_score)
    assert len(batch) == len(queries())
    for query, outcome in zip(queries(), batch, strict=True):
        try:
            alone: Any = engine.check(query, top_k=5, min_score=min_score)
        except CloneFinderError as exc:
            alone = exc
        if isinstance(alone, CloneFinderError):
            assert isinstance(outcome, CloneFinderError)
            assert (outcome.code, outcome.message) == (alone.code, alone.message)
        else:
            assert not isinstance(outcome, CloneFinderError)
            assert outcome.model_dump() == alone.model_dump()
    first = batch[0]
    assert not isinstance(first, CloneFinderError)
    assert first.matches[0].profile["handle"] == "jane_doe_official"
    if min_score == 0.0:
        assert all(not isinstance(r, CloneFinderError) and r.matches for r in batch[:5])


@pytest.mark.parametrize("min_score", [None, 0.0])
def test_the_scan_pipeline_answers_each_record_as_a_single_check_does(
    engine: Engine, min_score: float | None
) -> None:
    # Batches of two keep the three stages full: reading, searching and scoring at once.
    records = queries()
    batches = [
        [(f"line {i}", r) for i, r in enumerate(records)][start : start + 2]
        for start in range(0, len(records), 2)
    ]
    scanned = [
        record
        for piece in engine.scan_batches(batches, top_k=5, min_score=min_score)
        for record in piece
    ]
    assert len(scanned) == len(records)
    for query, record in zip(records, scanned, strict=True):
        try:
            alone = engine.check(query, top_k=5, min_score=min_score).model_dump(mode="json")
        except CloneFinderError as exc:
            assert record["error"]["code"] == exc.code
            continue
        assert record == alone
    assert scanned[1]["matches"][0]["profile"]["handle"] == "janedoe"


def test_scan_batch_keeps_order_and_says_where_a_record_failed(engine: Engine) -> None:
    unreadable = CloneFinderError("line 3: not valid JSON")  # as the worker hands it over
    batch = [("line 1", jane()), ("line 2", {"platform": 3}), ("line 3", unreadable)]
    records = engine.scan_batch(batch)
    assert records[0]["matches"][0]["profile"]["handle"] == "jane_doe_official"
    assert records[1]["error"]["where"] == "line 2"
    assert records[1]["error"]["field"] == "platform"
    assert records[2]["error"]["message"] == "line 3: not valid JSON"


def test_clusters_group_the_copies_and_name_the_original(engine: Engine) -> None:
    copied = photo(1).resize((90, 90))
    upload = [
        ("line 1", jane_clone()),  # also stored: one member, not two
        ("line 2", jane_clone(handle="jane.doe.real", display_name="Jane Doe")),
        ("line 3", {"platform": "twitter"}),  # no handle: an error line
        ("line 4", {"platform": "instagram", "handle": "someone_else", "display_name": "Kim"}),
        (
            "line 5",
            {
                "platform": "instagram",
                "handle": "janedoe_pics",
                "display_name": "Jane Doe",
                "avatar_base64": b64(jpeg_bytes(copied, quality=60)),
                "created_at": "2023-01-01T00:00:00Z",
            },
        ),
    ]
    records = find_clusters(engine, upload)
    assert records[1]["error"]["where"] == "line 3"
    groups = [r for r in records if "members" in r]
    assert len(groups) == 1
    group = groups[0]
    assert records[0] is group  # ordered by its first input record
    handles = {(m["source"], m["handle"]) for m in group["members"]}
    assert handles == {
        ("upload", "jane_doe_official"),
        ("upload", "jane.doe.real"),
        ("upload", "janedoe_pics"),
        ("index", "janedoe"),
    }
    assert group["size"] == 4
    # The verified, older original.
    assert group["likely_original"]["handle"] == "janedoe"
    members = group["members"]
    original = group["likely_original"]["member"]
    assert members[original]["source"] == "index"
    for edge in group["edges"]:
        assert edge["score"] >= engine.possible_clone_threshold
        assert 0 <= edge["a"] < len(members) and 0 <= edge["b"] < len(members)
        if original in (edge["a"], edge["b"]) and edge["likely_copy"] is not None:
            assert edge["likely_copy"] != original


def upload_of(records: list[Any], **options: Any) -> ScanUpload:
    body = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()
    return ScanUpload(
        content_type="application/x-ndjson",
        options=options,
        chunks=(body[i : i + 50] for i in range(0, len(body), 50)),
    )


def wait_done(scans: ScanService, job_id: str, *, caller: Caller = PLATFORM) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = scans.status(job_id, caller=caller)
        if status.state in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def worker(engine: Engine) -> Iterator[ScanWorker]:
    running = ScanWorker(engine, engine.settings, worker_id="in-process-test")
    thread = threading.Thread(target=running.run)
    thread.start()
    yield running
    running.stop()
    thread.join()


def test_a_job_is_done_by_a_worker_with_one_result_per_line(
    engine: Engine, worker: ScanWorker
) -> None:
    scans = ScanService(engine.store, engine.settings)
    lines = [jane_clone(), "not json {", {"platform": "twitter", "handle": "a", "verified": 3}]
    lines += [{"platform": "twitter", "handle": f"q{i}", "display_name": f"Eva Novak {i}"}
              for i in range(8)]  # fmt: skip
    created = scans.create(upload_of(lines, min_score=0.0, top_k=2), caller=PLATFORM)
    assert created.state == "queued" and created.total == 11
    status = wait_done(scans, created.id)
    assert (status.state, status.processed, status.errors) == ("done", 11, 2)
    results = [
        json.loads(x)
        for x in b"".join(scans.results(created.id, caller=PLATFORM)).split(b"\n")
        if x
    ]
    assert len(results) == 11
    assert results[0]["matches"][0]["profile"]["handle"] == "janedoe"
    assert (
        results[1]["error"]["where"] == "line 2"
        and "not valid JSON" in results[1]["error"]["message"]
    )
    assert results[2]["error"]["field"] == "verified"
    assert [r["query"]["handle"] for r in results[3:]] == [f"q{i}" for i in range(8)]
    assert all(len(r["matches"]) <= 2 for r in results)
    tail = b"".join(scans.results(created.id, caller=PLATFORM, offset=9)).split(b"\n")
    assert [json.loads(x)["query"]["handle"] for x in tail if x] == ["q6", "q7"]
    workers = {w for _, w in scans.jobs.result_workers(created.id)}
    assert workers == {"in-process-test"}


def test_ingest_option_stores_the_scanned_profiles(engine: Engine, worker: ScanWorker) -> None:
    scans = ScanService(engine.store, engine.settings)
    lines = [{"platform": "mastodon", "handle": "new_one", "display_name": "New One"}, {"bio": "x"}]
    created = scans.create(upload_of(lines, ingest=True), caller=PLATFORM)
    assert wait_done(scans, created.id).state == "done"
    results = [
        json.loads(x)
        for x in b"".join(scans.results(created.id, caller=PLATFORM)).split(b"\n")
        if x
    ]
    assert results[0]["ingest"]["status"] == "created"
    assert results[1]["ingest"]["status"] == "rejected"
    assert engine.get_profile("mastodon", "new_one").display_name == "New One"


def test_ingest_needs_the_permission_to_write_profiles(engine: Engine) -> None:
    scans = ScanService(engine.store, engine.settings)
    reader = Caller(key_id=13, name="reader", role="investigator")  # no profiles.write
    with pytest.raises(PermissionDeniedError, match="profiles.write"):
        scans.create(upload_of([jane()], ingest=True), caller=reader)


def test_a_clusters_job_through_a_worker(engine: Engine, worker: ScanWorker) -> None:
    scans = ScanService(engine.store, engine.settings)
    lines = [jane_clone(handle="jd_copy_1"), jane_clone(handle="jd_copy_2"), {"handle": 1}]
    created = scans.create(upload_of(lines, mode="clusters"), caller=PLATFORM)
    status = wait_done(scans, created.id)
    assert (status.state, status.processed, status.errors) == ("done", 3, 1)
    results = [
        json.loads(x)
        for x in b"".join(scans.results(created.id, caller=PLATFORM)).split(b"\n")
        if x
    ]
    assert status.result_lines == len(results) == 2
    group, error = results
    assert {m["handle"] for m in group["members"]} >= {"jd_copy_1", "jd_copy_2", "janedoe"}
    assert error["error"]["where"] == "line 3"


def test_another_key_does_not_see_the_job(engine: Engine) -> None:
    scans = ScanService(engine.store, engine.settings)
    created = scans.create(upload_of([jane()]), caller=PLATFORM)
    other = Caller(key_id=12, name="other", role="platform")
    admin = Caller(key_id=1, name="admin", role="admin")
    with pytest.raises(CloneFinderError, match="no scan job"):
        scans.status(created.id, caller=other)
    with pytest.raises(CloneFinderError, match="no scan job"):
        scans.cancel(created.id, caller=other)
    assert scans.status(created.id, caller=admin).id == created.id
    assert scans.cancel(created.id, caller=PLATFORM).state == "cancelled"


def test_an_upload_that_cannot_be_read_leaves_nothing_behind(engine: Engine) -> None:
    scans = ScanService(engine.store, engine.settings)
    bad = ScanUpload(content_type="application/json", options={}, chunks=iter([b"[{}, {"]))
    with pytest.raises(CloneFinderError):
        scans.create(bad, caller=PLATFORM)
    wrong = ScanUpload(content_type="text/csv", options={}, chunks=iter([b"a,b"]))
    with pytest.raises(CloneFinderError, match="not text/csv"):
        scans.create(wrong, caller=PLATFORM)
    with pytest.raises(CloneFinderError, match="option 'top_k'"):
        scans.create(upload_of([jane()], top_k=0), caller=PLATFORM)
    with engine.store.engine.connect() as conn:
        states = [r[0] for r in conn.execute(text("SELECT state FROM scan_jobs"))]
    assert "receiving" not in states
