"""Reading profile records from files: JSON Lines, CSV and JSON lists.

`read_records` checks up front that the file can be read at all (so the CLI can exit 2 before
loading the model), then streams `(where, raw_record)` pairs. A record that cannot be read (not
JSON, too large, too deep) is not a reason to stop: it is yielded as `(where,
InvalidRecordError)`, which the engine counts as an already-rejected record, so the rest of the
file goes on. Records are read within the same limits as the HTTP API's
(`service.core.bounded_json`).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.errors import InvalidInputError, InvalidRecordError
from models.profile import MAX_RECORD_DEPTH
from service.core.bounded_json import (
    DEFAULT_MAX_RECORD_BYTES,
    JsonStream,
    RawValue,
    decode,
    load_record,
    raw_value_error,
    record_error,
)
from service.scans.upload import LineSplitter, ScanRecord

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".json",)
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES

_SNIFF_BYTES = 64 * 1024
_READ_BYTES = 1024 * 1024


def read_records(
    path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[str, Any]]:
    """Every record of `path` as `(where, raw)`, in file order; blank lines are skipped.

    `where` is "line N" (1-based physical line; a CSV record's first line) or "index N" (0-based,
    JSON lists). A record that cannot be read (not JSON, not UTF-8, larger than
    `max_record_bytes`, nested deeper than `MAX_RECORD_DEPTH`) comes as its InvalidRecordError,
    and reading goes on; no record is held whole beyond the limit. Raises InvalidInputError now,
    not on first iteration, when the file is missing, a directory, of an unknown kind or does
    not start as UTF-8 (a JSON Lines file: its first line); a CSV file whose text breaks
    further on raises it during iteration.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    _check_readable(path, suffix)
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, max_record_bytes=max_record_bytes)
    if suffix in CSV_SUFFIXES:
        return _guard_decoding(path, _read_csv(path, max_record_bytes=max_record_bytes))
    # A JSON document is read whole now, so that one broken at its end is refused up front
    # too; its records are held (each within the limits), as they were always.
    return iter(list(_read_json(path, max_record_bytes=max_record_bytes)))


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
    if suffix in JSONL_SUFFIXES:
        # Its first line tells a file in another encoding; a bad line further on is that
        # line's error, as anything else wrong with one line is.
        head = head.split(b"\n", 1)[0]
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


def _read_jsonl(path: Path, *, max_record_bytes: int) -> Iterator[tuple[str, Any]]:
    splitter = LineSplitter(max_line_bytes=max_record_bytes)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_BYTES), b""):
            for line in splitter.feed(chunk):
                yield line.label, _line_record(line)
        for line in splitter.close():
            yield line.label, _line_record(line)


def _line_record(line: ScanRecord) -> Any:
    if line.raw is None:
        return record_error(line.label, line.problem or "empty")
    try:
        return load_record(line.raw, where=line.label)
    except InvalidRecordError as exc:
        return exc


def _read_csv(path: Path, *, max_record_bytes: int) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(max_record_bytes)
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
                {
                    name: _typed_cell(name, cell)
                    for name, cell in zip(header, row, strict=False)
                    if name and cell
                },
            )


_COUNT_COLUMNS = frozenset({"followers_count", "following_count", "posts_count"})
_FLAG_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _typed_cell(name: str, cell: str) -> Any:
    """A CSV cell (always text) as the JSON type its column has in the contract; text that is
    no such value stays text, for the record's validation to reject by field."""
    text = cell.strip()
    if name in _COUNT_COLUMNS and text.isascii() and text.isdigit():
        return int(text)
    if name == "verified":
        return _FLAG_TEXT.get(text.lower(), cell)
    return cell


def _read_json(path: Path, *, max_record_bytes: int) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as handle:
        stream = JsonStream(iter(lambda: handle.read(_READ_BYTES), b""))
        try:
            first = stream.peek()
            if first == "{":
                yield "index 0", _element("index 0", stream, max_record_bytes)
                stream.end()
                return
            if first != "[":
                raise InvalidInputError("a .json file must hold a profile object or a list of them")
            limits = {"max_bytes": max_record_bytes, "max_depth": MAX_RECORD_DEPTH}
            for index, value in enumerate(stream.array(**limits)):
                yield f"index {index}", _decoded(f"index {index}", value)
            stream.end()
        except InvalidInputError as exc:
            raise InvalidInputError(f"{path}: {exc.message}") from None


def _element(where: str, stream: JsonStream, max_record_bytes: int) -> Any:
    return _decoded(where, stream.raw_value(max_bytes=max_record_bytes, max_depth=MAX_RECORD_DEPTH))


def _decoded(where: str, value: RawValue) -> Any:
    if value.problem or value.text is None:
        return raw_value_error(where, value)
    try:
        return decode(value.text)
    except json.JSONDecodeError as exc:
        return record_error(where, f"not valid JSON ({exc.msg} at column {exc.colno})")


def _unparsable(where: str, reason: str) -> InvalidRecordError:
    return InvalidRecordError(
        f"{where}: {reason}", details=[{"where": where, "field": None, "message": reason}]
    )
