"""The `clonefinder` command line (interface.md section 2), run in-process.

One embedding model is loaded for the module and shared through the CLI's `open_engine` hook;
each command still opens the store of its `--data-dir` as a real invocation would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from service.cli import app
from service.core.settings import Settings
from tests.images import photo

pytestmark = pytest.mark.slow

Opener = Callable[[Settings], AbstractContextManager[Any]]


def _no_engine(settings: Settings) -> AbstractContextManager[Any]:
    raise AssertionError("this command must fail before loading the engine")


def _run(opener: Opener, *args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], obj={"open_engine": opener})


def _avatar(seed: int, path: Path, *, size: int = 256) -> Path:
    photo(seed, size=size).save(path, format="JPEG", quality=90)
    return path


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


BIO = "Marine biologist in Halifax. Whales, kelp and long walks."
ORIGINAL = {
    "platform": "twitter",
    "handle": "mariaquinn",
    "display_name": "Maria Quinn",
    "bio": BIO,
    "avatar_path": "img/maria.jpg",
    "created_at": "2011-06-01T00:00:00Z",
    "followers_count": 9000,
}
CLONE = {
    "platform": "twitter",
    "handle": "maria_quinn_real",
    "display_name": "Mar\u0456a Quinn",  # Cyrillic i
    "bio": BIO,
    "avatar_path": "img/maria-copy.jpg",
    "created_at": "2024-02-01T00:00:00Z",
    "followers_count": 3,
}
BYSTANDER = {"platform": "twitter", "handle": "olafsen", "display_name": "Olaf Olafsen"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, open_engine: Opener) -> tuple[Path, Path]:
    """A data dir holding the original, its clone and a bystander; and the input file."""
    root = tmp_path_factory.mktemp("cli")
    (root / "img").mkdir()
    original = _avatar(11, root / "img" / "maria.jpg")
    Image.open(original).resize((180, 180)).save(root / "img" / "maria-copy.jpg", quality=65)
    source = _write_jsonl(root / "corpus.jsonl", [ORIGINAL, CLONE, BYSTANDER])
    data_dir = root / "data"
    result = _run(open_engine, "ingest", source, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    return data_dir, source


def test_ingest_all_good_exits_0_and_counts(corpus: tuple[Path, Path], open_engine: Opener) -> None:
    data_dir, source = corpus
    result = _run(open_engine, "ingest", source, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    # The fixture ingested the same file: the second time, every record is an update.
    assert "ingested 0, updated 3, rejected 0" in result.stdout


def test_ingest_with_bad_records_keeps_the_good_and_exits_1(
    tmp_path: Path, open_engine: Opener
) -> None:
    source = _write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"platform": "twitter", "handle": "fine_one"},
            '{"platform": "twitter", "handle": ',
            {"platform": "twitter", "handle": "bad_count", "followers_count": "lots"},
            {"platform": "twitter", "handle": "fine_two"},
        ],
    )
    data_dir = tmp_path / "data"
    result = _run(open_engine, "ingest", source, "--data-dir", data_dir)
    assert result.exit_code == 1, result.output
    assert "ingested 2, updated 0, rejected 2" in result.stdout
    assert "line 2: not valid JSON" in result.stdout
    assert "line 3: field 'followers_count'" in result.stdout

    again = _run(open_engine, "ingest", source, "--data-dir", data_dir)
    assert "ingested 0, updated 2, rejected 2" in again.stdout


def test_ingest_json_is_one_document_with_every_rejection(
    tmp_path: Path, open_engine: Opener
) -> None:
    source = _write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"platform": "twitter", "handle": "fine_one"}, "{oops", {"handle": "no_platform"}],
    )
    result = _run(open_engine, "ingest", source, "--json", "--data-dir", tmp_path / "data")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["records"] == 3
    assert (report["created"], report["updated"], report["rejected"]) == (1, 0, 2)
    assert [r["where"] for r in report["rejections"]] == ["line 2", "line 3"]
    assert "not valid JSON" in report["rejections"][0]["error"]["message"]
    # Nothing for a person on stderr either: no summary, and no progress bar off a terminal.
    assert result.stderr == ""


def test_ingest_json_of_an_unreadable_file_prints_no_document(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    result = _run(_no_engine, "ingest", missing, "--json", "--data-dir", tmp_path / "data")
    assert result.exit_code == 2
    assert result.stdout == "" and result.stderr.startswith("error:")


def test_ingest_lists_at_most_50_reasons(tmp_path: Path, open_engine: Opener) -> None:
    source = _write_jsonl(tmp_path / "bad.jsonl", ["{oops"] * 53)
    result = _run(open_engine, "ingest", source, "--data-dir", tmp_path / "data")
    assert result.exit_code == 1
    assert "line 50: not valid JSON" in result.stdout
    assert "line 51:" not in result.stdout
    assert "... and 3 more" in result.stdout


def test_ingest_csv_with_quoted_newlines(tmp_path: Path, open_engine: Opener) -> None:
    source = tmp_path / "profiles.csv"
    source.write_text(
        "platform,handle,display_name,bio,followers_count\n"
        'twitter,csv_user,CSV User,"two\nlines",\n',
        encoding="utf-8",
    )
    result = _run(open_engine, "ingest", source, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "ingested 1, updated 0, rejected 0" in result.stdout


@pytest.mark.parametrize("name", ["missing.jsonl", "profiles.txt"])
def test_ingest_unreadable_file_exits_2_without_loading_the_model(
    tmp_path: Path, name: str
) -> None:
    if name.endswith(".txt"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    result = _run(_no_engine, "ingest", tmp_path / name, "--data-dir", tmp_path / "data")
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr


def test_check_json_is_a_result_record_with_the_clone_first(
    corpus: tuple[Path, Path], open_engine: Opener
) -> None:
    data_dir, source = corpus
    # avatar_path stays relative: it must resolve against the .json file's folder.
    profile = source.with_name("original.json")
    profile.write_text(json.dumps(ORIGINAL), encoding="utf-8")
    result = _run(open_engine, "check", "--profile", profile, "--json", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["query"] == {"platform": "twitter", "handle": "mariaquinn"}
    assert record["matches"], "the clone was not found"
    top = record["matches"][0]
    assert top["profile"]["handle"] == "maria_quinn_real"
    assert top["label"] in {"likely_clone", "possible_clone"}
    assert top["reasons"]
    assert "mariaquinn" not in [m["profile"]["handle"] for m in record["matches"]]


def test_check_table_by_name_and_avatar(corpus: tuple[Path, Path], open_engine: Opener) -> None:
    data_dir, source = corpus
    result = _run(
        open_engine,
        "check",
        "--name",
        "Maria Quinn",
        "--avatar",
        source.parent / "img" / "maria.jpg",
        "--min-score",
        "0",
        "--data-dir",
        data_dir,
    )
    assert result.exit_code == 0, result.output
    assert "maria_quinn_real" in result.stdout
    assert "mariaquinn" in result.stdout  # a name-only query has no identity to exclude


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--profile", '{"display_name": "X", "followers_count": -1}'],
        ["--profile", "[1, 2]"],
        ["--profile", "/no/such/file.json"],
    ],
)
def test_invalid_check_exits_2_with_a_message(
    corpus: tuple[Path, Path], open_engine: Opener, args: list[str]
) -> None:
    data_dir, _ = corpus
    result = _run(open_engine, "check", *args, "--data-dir", data_dir)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.output


def test_check_of_a_profile_that_is_not_stored_exits_4(
    corpus: tuple[Path, Path], open_engine: Opener
) -> None:
    data_dir, _ = corpus
    result = _run(
        open_engine, "check", "--platform", "twitter", "--handle", "nobody", "--data-dir", data_dir
    )
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("error: no stored profile twitter/nobody")


def test_scan_writes_one_record_per_input_in_order(
    corpus: tuple[Path, Path], open_engine: Opener, tmp_path: Path
) -> None:
    data_dir, source = corpus
    queries = _write_jsonl(
        source.with_name("queries.jsonl"),
        [
            {"platform": "twitter", "handle": "mariaquinn", "display_name": "Maria Quinn"},
            "{broken",
            {"platform": "twitter", "handle": "olafsen"},
            {"display_name": "Maria Quinn", "bio": BIO},
        ],
    )
    out = tmp_path / "out.jsonl"
    result = _run(open_engine, "scan", queries, "--out", out, "--data-dir", data_dir)
    assert result.exit_code == 1, result.output  # one line was not JSON
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4
    assert lines[0]["query"] == {"platform": "twitter", "handle": "mariaquinn"}
    assert "maria_quinn_real" in [m["profile"]["handle"] for m in lines[0]["matches"]]
    assert lines[1]["matches"] == [] and lines[1]["error"]["where"] == "line 2"
    assert lines[2]["query"]["handle"] == "olafsen"
    assert "error" not in lines[3]

    clean = _write_jsonl(tmp_path / "clean.jsonl", [{"display_name": "Olaf Olafsen"}])
    ok = _run(open_engine, "scan", clean, "--out", tmp_path / "o2.jsonl", "--data-dir", data_dir)
    assert ok.exit_code == 0, ok.output


def test_scan_json_summary(corpus: tuple[Path, Path], open_engine: Opener, tmp_path: Path) -> None:
    data_dir, source = corpus
    queries = _write_jsonl(
        tmp_path / "queries.jsonl",
        [{"display_name": "Maria Quinn", "bio": BIO}, "{broken", {"display_name": "Nobody Else"}],
    )
    out = tmp_path / "out.jsonl"
    result = _run(open_engine, "scan", queries, "--out", out, "--json", "--data-dir", data_dir)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary == {"scanned": 3, "flagged": 1, "rejected": 1, "out": str(out)}
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_scan_unreadable_file_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = _run(_no_engine, "scan", tmp_path / "none.jsonl", "--out", out)
    assert result.exit_code == 2
    assert not out.exists()


def test_reindex_counts_the_stored_profiles(corpus: tuple[Path, Path], open_engine: Opener) -> None:
    data_dir, _ = corpus
    result = _run(open_engine, "reindex", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "reindexed 3 profiles" in result.stdout


def test_reindex_json_with_the_data_dir_before_the_command(
    corpus: tuple[Path, Path], open_engine: Opener
) -> None:
    data_dir, _ = corpus
    result = _run(open_engine, "--data-dir", data_dir, "reindex", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"profiles": 3, "data_dir": str(data_dir)}


def test_serve_demo_fills_an_empty_store_at_start(tmp_path: Path, open_engine: Opener) -> None:
    # What `serve --demo` asks of the app, without a server process.
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    settings = Settings(data_dir=tmp_path / "data")
    with open_engine(settings) as engine:
        with TestClient(create_app(settings, engine=engine, load_demo=True)) as client:
            health = client.get("/v1/health").json()
        assert health["profiles"] > 0
        # A second start finds the store filled and loads nothing more.
        with TestClient(create_app(settings, engine=engine, load_demo=True)) as client:
            assert client.get("/v1/health").json()["profiles"] == health["profiles"]


def test_serve_on_a_busy_port_fails_at_once_and_says_how_to_choose_another(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(_no_engine, "serve", "--port", str(port), "--data-dir", tmp_path / "data")
    assert result.exit_code != 0
    assert f"port {port} on 127.0.0.1 is in use" in result.output
    assert f"--port {port + 1}" in result.output
