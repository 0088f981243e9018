"""Reading profile files: what the CLI's ingest and scan see of a file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from models.errors import InvalidInputError, InvalidRecordError
from service.records import read_records


def test_jsonl_yields_records_with_line_numbers_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "profiles.jsonl"
    path.write_text(
        '{"platform": "twitter", "handle": "a"}\n\n   \n{"platform": "twitter", "handle": "b"}\n',
        encoding="utf-8",
    )
    assert list(read_records(path)) == [
        ("line 1", {"platform": "twitter", "handle": "a"}),
        ("line 4", {"platform": "twitter", "handle": "b"}),
    ]


def test_jsonl_malformed_line_is_an_error_item_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "profiles.ndjson"
    path.write_text(
        '{"platform": "twitter", "handle": "a"}\n{"platform": "twitter", "handle": \n'
        '{"platform": "twitter", "handle": "c"}\n',
        encoding="utf-8",
    )
    items = list(read_records(path))
    assert [where for where, _ in items] == ["line 1", "line 2", "line 3"]
    bad = items[1][1]
    assert isinstance(bad, InvalidRecordError)
    assert bad.message.startswith("line 2: not valid JSON")
    assert items[2][1] == {"platform": "twitter", "handle": "c"}


def test_jsonl_with_byte_order_mark_reads_first_record(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"platform": "x", "handle": "a"}\n')
    assert list(read_records(path)) == [("line 1", {"platform": "x", "handle": "a"})]


def test_csv_quoted_newline_empty_cells_and_first_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "profiles.csv"
    path.write_text(
        "platform,handle,display_name,bio,followers_count\n"
        'twitter,jane,Jane Doe,"Painter.\nLives in Lisbon, PT.",12\n'
        "\n"
        "twitter,john,,,\n",
        encoding="utf-8",
    )
    assert list(read_records(path)) == [
        (
            "line 2",
            {
                "platform": "twitter",
                "handle": "jane",
                "display_name": "Jane Doe",
                "bio": "Painter.\nLives in Lisbon, PT.",
                "followers_count": 12,  # typed as its column is in the contract
            },
        ),
        # Empty cells are missing fields, not empty strings.
        ("line 5", {"platform": "twitter", "handle": "john"}),
    ]


def test_csv_row_with_too_many_cells_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "profiles.csv"
    path.write_text("platform,handle\ntwitter,a,extra\ntwitter,b\n", encoding="utf-8")
    items = list(read_records(path))
    assert isinstance(items[0][1], InvalidRecordError)
    assert "line 2" in items[0][1].message
    assert items[1] == ("line 3", {"platform": "twitter", "handle": "b"})


def test_json_list_uses_indexes(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps([{"handle": "a"}, 5]), encoding="utf-8")
    assert list(read_records(path)) == [("index 0", {"handle": "a"}), ("index 1", 5)]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.jsonl", None, "no such file"),
        ("profiles.txt", b"{}", "unknown file kind"),
        ("latin1.jsonl", '{"bio": "café"}\n'.encode("latin-1"), "not UTF-8"),
        ("broken.json", b"[{", "not valid JSON"),
        ("scalar.json", b"42", "profile object or a list"),
    ],
)
def test_unreadable_file_raises_invalid_input_before_iteration(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=expected):
        read_records(path)


def test_directory_is_not_a_record_file(tmp_path: Path) -> None:
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match="not a regular file"):
        read_records(folder)


def test_file_without_read_permission_raises_invalid_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    # The error the system raises for a file without read permission, made here because root
    # (CI's user) reads a file whatever its mode.
    real_open = Path.open

    def refusing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    with pytest.raises(InvalidInputError, match="cannot be read: Permission denied"):
        read_records(path)
