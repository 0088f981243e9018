"""The engine end to end on the embedded default: ingest, check, delete, reindex, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexers.bio import BioEmbedder
from models.errors import InvalidRecordError, NotFoundError
from service.core.settings import Settings
from service.matching.engine import Engine
from tests.images import b64, jpeg_bytes, photo
from tests.support import items, jane, jane_clone, strangers

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> BioEmbedder:
    return BioEmbedder()


@pytest.fixture
def engine(tmp_path: Path, embedder: BioEmbedder) -> Iterator[Engine]:
    engine = Engine.open(Settings(data_dir=tmp_path / "data"), embedder=embedder)
    yield engine
    engine.close()


def handles(result: Any) -> list[str]:
    return [m.profile["handle"] for m in result.matches]


def test_check_finds_the_clone_and_explains_it(engine: Engine) -> None:
    report = engine.ingest(items([jane(), jane_clone(), *strangers(20)]))
    assert (report.created, report.updated, report.rejected) == (22, 0, 0)

    result = engine.check({"platform": "twitter", "handle": "JaneDoe"})
    assert handles(result)[0] == "jane_doe_official"
    top = result.matches[0]
    assert top.label == "likely_clone"
    assert top.likely_impersonator == "candidate"
    assert any("avatar" in r for r in top.reasons)
    assert any("U+0430" in r for r in top.reasons)
    assert all(v is None or 0.0 <= v <= 1.0 for v in top.signals.values())
    assert "janedoe" not in [h.casefold() for h in handles(engine.check(jane(), min_score=0))]


def test_matches_are_sorted_and_capped(engine: Engine) -> None:
    engine.ingest(items([jane(), jane_clone(), *strangers(30)]))
    result = engine.check(jane(), min_score=0.0, top_k=5)
    scores = [m.score for m in result.matches]
    assert len(scores) == 5
    assert scores == sorted(scores, reverse=True)


def test_a_name_or_a_photo_alone_is_a_query(engine: Engine) -> None:
    engine.ingest(items([jane(), *strangers(10)]))
    by_name = engine.check({"display_name": "JANE D0E"}, min_score=0.0)
    assert handles(by_name)[0] == "janedoe"
    by_photo = engine.check(
        {"avatar_base64": b64(jpeg_bytes(photo(1).crop((20, 20, 380, 380)), quality=40))},
        min_score=0.0,
    )
    assert handles(by_photo)[0] == "janedoe"
    with pytest.raises(InvalidRecordError):
        engine.check({"platform": "twitter"})


def test_same_identity_updates_instead_of_duplicating(engine: Engine) -> None:
    engine.ingest(items([jane()]))
    report = engine.ingest(items([jane(handle="JaneDoe", platform="Twitter", bio="New bio")]))
    assert (report.created, report.updated) == (0, 1)
    assert engine.store.count() == 1
    assert engine.get_profile("twitter", "janedoe").bio == "New bio"


def test_bad_records_are_rejected_alone(engine: Engine) -> None:
    bad = [
        jane(),
        {"platform": "twitter"},
        {"platform": "twitter", "handle": "x", "followers_count": "many"},
        {"platform": "twitter", "handle": "y", "avatar_base64": b64(b"not an image at all")},
        "not an object",
        jane_clone(),
    ]
    report = engine.ingest(items(bad))
    assert (report.created, report.rejected) == (2, 4)
    errors = {o.where: o.error for o in report.outcomes if o.status == "rejected"}
    assert errors["index 1"]["field"] == "handle"
    assert errors["index 2"]["field"] == "followers_count"
    assert errors["index 3"]["field"] == "avatar_base64"
    assert errors["index 3"]["code"] == "invalid_image"
    assert "index 4" in errors["index 4"]["message"]
    assert engine.store.count() == 2


def test_a_deleted_profile_never_comes_back(engine: Engine) -> None:
    engine.ingest(items([jane(), jane_clone(), *strangers(5)]))
    engine.delete_profile("twitter", "Jane_Doe_Official")
    assert "jane_doe_official" not in handles(engine.check(jane(), min_score=0.0))
    with pytest.raises(NotFoundError):
        engine.get_profile("twitter", "jane_doe_official")
    with pytest.raises(NotFoundError):
        engine.delete_profile("twitter", "jane_doe_official")
    engine.reindex()
    assert "jane_doe_official" not in handles(engine.check(jane(), min_score=0.0))


def test_reindex_and_restart_give_the_same_answers(tmp_path: Path, embedder: BioEmbedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    engine = Engine.open(settings, embedder=embedder)
    engine.ingest(items([jane(), jane_clone(), *strangers(15)]))
    before = engine.check(jane(), min_score=0.0).model_dump()
    assert engine.reindex() == 17
    assert engine.check(jane(), min_score=0.0).model_dump() == before
    engine.close()

    reopened = Engine.open(settings, embedder=embedder)
    try:
        assert reopened.check(jane(), min_score=0.0).model_dump() == before
        assert reopened.health()["indexes"]["last_change_seq"] == reopened.store.last_change_seq()
    finally:
        reopened.close()


def test_scan_keeps_input_order_and_reports_bad_lines(engine: Engine) -> None:
    engine.ingest(items([jane(), jane_clone(), *strangers(5)]))
    queries = [jane(), {"platform": "twitter", "followers_count": -1}, jane_clone()]
    results = list(engine.scan(items(queries)))
    assert [r["query"]["handle"] for r in results] == ["janedoe", None, "jane_doe_official"]
    assert results[1]["error"]["field"] == "followers_count"
    assert results[0]["matches"][0]["profile"]["handle"] == "jane_doe_official"
    assert results[2]["matches"][0]["profile"]["handle"] == "janedoe"


def test_concurrent_checks_during_an_ingest(engine: Engine) -> None:
    engine.ingest(items([jane(), jane_clone()]))
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_checking() -> None:
        while not stop.is_set():
            try:
                result = engine.check(jane())
                assert handles(result)[0] == "jane_doe_official"
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                failures.append(exc)
                return

    threads = [threading.Thread(target=keep_checking) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for batch in range(4):
            engine.ingest(items(strangers(40, offset=1000 + 40 * batch)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert engine.store.count() == 162


KILLED_INGEST = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from service.matching.engine import Engine
    from service.core.settings import Settings

    engine = Engine.open(Settings(data_dir=Path(sys.argv[1]), index_save_every=20))
    records = [json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines()]
    for start in range(0, len(records), 10):
        batch = [(f"line {i}", r) for i, r in enumerate(records[start:start + 10], start)]
        report = engine.ingest(batch)
        print(json.dumps([o.handle for o in report.outcomes]), flush=True)
    print("done", flush=True)
    import time
    time.sleep(600)
    """
)


def test_a_killed_ingest_loses_nothing_it_acknowledged(
    tmp_path: Path, embedder: BioEmbedder
) -> None:
    data_dir = tmp_path / "data"
    records = [jane(), jane_clone(), *strangers(58)]
    source = tmp_path / "profiles.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_INGEST, str(data_dir), str(source)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    acknowledged: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("["):
            acknowledged.extend(json.loads(line))
        if len(acknowledged) >= 30:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    engine = Engine.open(Settings(data_dir=data_dir), embedder=embedder)
    try:
        for handle in acknowledged:
            assert engine.get_profile("twitter", handle).handle == handle
        health = engine.health()
        assert health["indexes"]["last_change_seq"] == engine.store.last_change_seq()
        assert health["indexes"]["bio_vectors"] == engine.store.count()
        assert handles(engine.check({"platform": "twitter", "handle": "janedoe"}))[0] == (
            "jane_doe_official"
        )
    finally:
        engine.close()
