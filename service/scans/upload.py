"""Reading a bulk scan's upload as it streams in: JSON Lines, a JSON list, or a multipart form.

Nothing here holds a whole upload: each reader takes the body as an iterator of byte chunks
and yields one record at a time, as `ScanRecord`s (where it came from, its JSON text or why it
could not be read). A bad record never stops the upload: it becomes a per-record error in the
job's results. Only a body whose structure cannot be followed (a JSON document that is not
one, a form without the file) is refused as a whole.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from models.errors import InvalidInputError
from models.profile import MAX_RECORD_DEPTH
from service.core.bounded_json import DEFAULT_MAX_RECORD_BYTES, JsonStream, RawValue

JSONL_MEDIA_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "text/plain",
    }
)
JSON_MEDIA_TYPES = frozenset({"application/json"})
MULTIPART_MEDIA_TYPE = "multipart/form-data"
FILE_FIELD = "file"
# Form fields other than the file are options: a few bytes each.
_MAX_FORM_FIELD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One input record: `label` says where it was ("line 7", "index 3")."""

    label: str
    raw: str | None
    problem: str | None = None


@dataclass
class ScanBody:
    """What a reader found besides the records: options sent inside the body."""

    options: dict[str, Any] = field(default_factory=dict)


class LineSplitter:
    """Cuts a byte stream into JSON Lines records, push style (for multipart callbacks).

    Lines are numbered from 1 as a text editor shows them; blank lines are skipped; a line
    that is not UTF-8 or is longer than `max_line_bytes` becomes a record with a problem
    (its text is not kept).
    """

    def __init__(self, *, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._pending = bytearray()
        self._overflow = False  # the current line already passed the limit
        self._line = 0
        self._first = True

    def feed(self, data: bytes) -> list[ScanRecord]:
        out: list[ScanRecord] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return out
            self._keep(data[start:end])
            out.extend(self._finish_line())
            start = end + 1

    def close(self) -> list[ScanRecord]:
        if self._pending or self._overflow:
            return self._finish_line()
        return []

    def _keep(self, piece: bytes) -> None:
        if self._overflow:
            return
        if len(self._pending) + len(piece) > self._max:
            self._overflow = True
            self._pending.clear()
            return
        self._pending += piece

    def _finish_line(self) -> list[ScanRecord]:
        self._line += 1
        label = f"line {self._line}"
        raw, overflow = bytes(self._pending), self._overflow
        self._pending.clear()
        self._overflow = False
        if self._first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            self._first = False
        if overflow:
            return [ScanRecord(label, None, f"longer than the limit of {self._max} bytes")]
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            return [ScanRecord(label, None, f"not UTF-8 text (byte {exc.start})")]
        if not text:
            return []
        if "\x00" in text:
            # Not JSON anyway, and PostgreSQL cannot store it in a text column.
            return [ScanRecord(label, None, "contains a NUL character")]
        return [ScanRecord(label, text)]


def read_jsonl(
    chunks: Iterable[bytes], body: ScanBody, *, max_line_bytes: int
) -> Iterator[ScanRecord]:
    """The records of a JSON Lines body (`body` gets no options: they come as parameters)."""
    splitter = LineSplitter(max_line_bytes=max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.close()


def read_json(
    chunks: Iterable[bytes],
    body: ScanBody,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[ScanRecord]:
    """The records of a JSON body: a bare list of profiles, or an object whose `profiles`
    list holds them and whose other members are options (they land in `body.options`).

    The list is read element by element as the body arrives; each element's own JSON text is
    kept as its record, or, when it is larger than `max_record_bytes` or nested deeper than
    `MAX_RECORD_DEPTH`, the reason instead (that element alone is skipped, in time that grows
    with its size, and never held whole). Raises InvalidInputError when the body is not that
    shape.
    """
    reader = JsonStream(chunks)
    limits = {"max_bytes": max_record_bytes, "max_depth": MAX_RECORD_DEPTH}
    first = reader.peek()
    if first == "[":
        yield from _records(reader.array(**limits))
    elif first == "{":
        reader.expect("{")
        seen_profiles = False
        if reader.peek() != "}":
            while True:
                key = reader.value(**limits)
                if not isinstance(key, str):
                    raise InvalidInputError("the request body is not valid JSON: expected a key")
                reader.expect(":")
                if key == "profiles":
                    if reader.peek() != "[":
                        raise InvalidInputError("field 'profiles': must be a list of profiles")
                    seen_profiles = True
                    yield from _records(reader.array(**limits))
                else:
                    body.options[key] = reader.value(**limits)
                if reader.peek() == ",":
                    reader.expect(",")
                    continue
                break
        reader.expect("}")
        if not seen_profiles:
            raise InvalidInputError("the body has no 'profiles' list")
    else:
        raise InvalidInputError(
            "the body must be a list of profiles or an object with a 'profiles' list"
        )
    reader.end()


def _records(values: Iterable[RawValue]) -> Iterator[ScanRecord]:
    # A value kept but too deep is stored as sent: the worker decodes it the way it decodes
    # a line, and reports the field it nests too deep under.
    for index, value in enumerate(values):
        yield ScanRecord(
            f"index {index}", value.text, None if value.text is not None else value.problem
        )


def read_multipart(
    chunks: Iterable[bytes], body: ScanBody, *, boundary: bytes, max_line_bytes: int
) -> Iterator[ScanRecord]:
    """The records of the JSON Lines file in form field `file`; the form's other fields are
    options (into `body.options`, as text). Parsed as it streams: the file is never spooled."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    splitter = LineSplitter(max_line_bytes=max_line_bytes)
    ready: list[ScanRecord] = []
    state: dict[str, Any] = {"name": None, "header": b"", "value": b"", "fields": {}}
    seen_file = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            _, params = parse_options_header(state["value"])
            name = params.get(b"name")
            state["name"] = name.decode("utf-8", "replace") if name is not None else None
        state["header"], state["value"] = b"", b""

    def on_part_begin() -> None:
        state["name"] = None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal seen_file
        name = state["name"]
        if name == FILE_FIELD:
            seen_file = True
            ready.extend(splitter.feed(data[start:end]))
        elif name is not None:
            value = state["fields"].get(name, b"") + data[start:end]
            if len(value) > _MAX_FORM_FIELD_BYTES:
                raise InvalidInputError(f"form field '{name}' is too long")
            state["fields"][name] = value

    def on_part_end() -> None:
        nonlocal seen_file
        if state["name"] == FILE_FIELD:
            seen_file = True  # an empty file too: a scan of nothing
            ready.extend(splitter.close())

    parser = MultipartParser(
        boundary,
        callbacks={  # type: ignore[arg-type]
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    for chunk in chunks:
        try:
            parser.write(chunk)
        except InvalidInputError:
            raise
        except Exception as exc:  # the parser's own errors: a malformed form
            raise InvalidInputError(f"the multipart form cannot be read: {exc}") from None
        yield from ready
        ready.clear()
    try:
        parser.finalize()
    except Exception as exc:
        raise InvalidInputError(f"the multipart form cannot be read: {exc}") from None
    yield from ready
    if not seen_file:
        raise InvalidInputError(f"the form has no '{FILE_FIELD}' field with a JSON Lines file")
    for name, value in state["fields"].items():
        body.options[name] = _form_value(value.decode("utf-8", "replace"))


def _form_value(text: str) -> Any:
    """A form field (always text) as the JSON scalar it spells (`5`, `0.5`, `true`, `null`),
    else the text itself, so that options are typed alike however they are sent."""
    try:
        value = json.loads(text)
    except ValueError:  # not JSON, or an integer too long to convert
        return text
    return value if value is None or isinstance(value, bool | int | float) else text


def multipart_boundary(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type; InvalidInputError without one."""
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInputError("a multipart/form-data body needs a boundary parameter")
    return boundary
