"""Reading profile records from files: JSON Lines, CSV and JSON lists.

`read_records` checks up front that the file can be read at all (so the CLI can exit 2 before
loading the model), then streams `(where, raw_record)` pairs. A line that is not JSON is not a
reason to stop: it is yielded as `(where, InvalidRecordError)`, which the engine counts as an
already-rejected record, so the rest of the file goes on.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.errors import InvalidInputError, InvalidRecordError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".json",)
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES

_SNIFF_BYTES = 64 * 1024
# A CSV cell may hold a whole bio with an embedded avatar; the default limit (128 KiB) is low.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024


def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Every record of `path` as `(where, raw)`, in file order; blank lines are skipped.

    `where` is "line N" (1-based physical line; a CSV record's first line) or "index N" (0-based,
    JSON lists). Raises InvalidInputError now, not on first iteration, when the file is missing,
    a directory, of an unknown kind or not UTF-8; a decoding error further into the file raises
    InvalidInputError during iteration.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    _check_readable(path, suffix)
    if suffix in JSONL_SUFFIXES:
        return _guard_decoding(path, _read_jsonl(path))
    if suffix in CSV_SUFFIXES:
        return _guard_decoding(path, _read_csv(path))
    return iter(_read_json(path))


def _check_readable(path: Path, suffix: str) -> None:
    if suffix not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(SUPPORTED_SUFFIXES)
        raise InvalidInputError(f"{path}: unknown file kind '{suffix or path.name}' (use {kinds})")
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    if not path.is_file():
        raise InvalidInputError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        # Not final: the sniffed block may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from None


def _guard_decoding(path: Path, records: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    try:
        yield from records
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text past the start ({exc.reason})") from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            where = f"line {number}"
            try:
                yield where, json.loads(text)
            except json.JSONDecodeError as exc:
                yield where, _unparsable(where, f"not valid JSON ({exc.msg} at column {exc.colno})")


def _read_csv(path: Path) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        last_line = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                where = f"line {last_line + 1}"
                last_line = reader.line_num
                yield where, _unparsable(where, f"not valid CSV ({exc})")
                continue
            where = f"line {last_line + 1}"
            last_line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                continue
            if len(row) > len(header):
                yield (
                    where,
                    _unparsable(
                        where, f"has {len(row)} cells but the header names {len(header)} columns"
                    ),
                )
                continue
            # An empty cell is a missing field, not an empty string.
            yield (
                where,
                {name: cell for name, cell in zip(header, row, strict=False) if name and cell},
            )


def _read_json(path: Path) -> list[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if isinstance(data, dict):
        return [("index 0", data)]
    if isinstance(data, list):
        return [(f"index {i}", item) for i, item in enumerate(data)]
    raise InvalidInputError(
        f"{path}: a .json file must hold a profile object or a list of them, "
        f"got {type(data).__name__}"
    )


def _unparsable(where: str, reason: str) -> InvalidRecordError:
    return InvalidRecordError(
        f"{where}: {reason}", details=[{"where": where, "field": None, "message": reason}]
    )
