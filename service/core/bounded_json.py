"""JSON from outside, read within limits: how large one record may be, how deep it may nest.

Every way a record comes in (a request body, a JSON-list or JSON Lines scan upload, a file
given to `clonefinder ingest`) reads it through here, so one record size limit and one nesting
limit hold everywhere, and they hold while the bytes stream. An ordinary value is cut out by
the C decoder and its nesting counted on what it decoded; a value the decoder cannot take
within the limits (still going past 1 MiB, nested past the decoder's own recursion limit, not
JSON at all) is measured by a byte scanner that counts brackets outside strings, and is kept
only while under the size limit. An integer too long to convert becomes an `UnreadableNumber`
that the record's schema rejects by field. Whatever comes in, the answer is the value, or that
record's error: never an exception that would take its whole batch down.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import InvalidInputError, InvalidRecordError, PayloadTooLargeError
from models.profile import MAX_INT_DIGITS, MAX_RECORD_DEPTH, UnreadableNumber, shown_key

# Default for `Settings.max_record_bytes`: one record, however it is sent.
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
# Levels a request body may add around its records: `{"profiles": [record, ...]}`.
ENVELOPE_DEPTH = 2

_WHITESPACE = b" \t\r\n"
_WHITESPACE_TEXT = " \t\r\n"
_OPENERS = b"[{"
# The rest of a string after its opening quote, up to (not including) its closing quote; stops
# before a backslash that ends the data, whose escaped character is in the next chunk.
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
# A number or literal (true, false, null) runs to the next delimiter.
_SCALAR = re.compile(rb"[^\s,\]}]*")
_BRACKET = re.compile(rb"[\[\]{}]")
_KEY_CAPTURE = 256  # bytes of a top-level key kept to name the field of a too-deep value
# The C decoder cuts out values up to this many characters: beyond, trying it on a value that
# has not ended yet would build (and drop) many times its size in objects, so the scanner
# takes over, whose memory is the value's text at most.
_DECODER_TEXT = 1024 * 1024
_PIECE = 64 * 1024
# Above this many brackets in a stretch, the running depth is counted with numpy.
_VECTOR_FROM = 256


@dataclass(frozen=True, slots=True)
class RawValue:
    """One JSON value as it was sent: its text (None when it was not kept: too large, not
    UTF-8, a NUL byte), and why it cannot be decoded (`problem`, with the top-level `field` it
    concerns when that is known)."""

    text: str | None
    problem: str | None = None
    field: str | None = None


def decode(text: str | bytes) -> Any:
    """`json.loads` that never raises on numbers: an integer of more than `MAX_INT_DIGITS`
    digits becomes an `UnreadableNumber`, and NaN or Infinity one too. Nesting is the caller's
    to bound (`nesting`), and RecursionError its to catch."""
    return json.loads(text, parse_int=_integer, parse_constant=_constant)


def _integer(digits: str) -> int | UnreadableNumber:
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        return UnreadableNumber(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _constant(name: str) -> UnreadableNumber:
    return UnreadableNumber(f"{name}, which JSON does not allow")


def check_depth(text: str, *, max_depth: int) -> tuple[bool, str | None]:
    """(`True`, None) when `text` nests at most `max_depth` levels, else (`False`, the top-level
    key under which it goes deeper, when the text is an object)."""
    if text.count("[") + text.count("{") <= max_depth:
        return True, None
    scanner = _ValueScanner(max_depth=max_depth)
    data = text.encode("utf-8", "surrogatepass")
    start = len(data) - len(data.lstrip(_WHITESPACE))
    scanner.feed(data, start)
    return not scanner.too_deep, scanner.deep_field


def load_record(text: str, *, where: str, max_depth: int = MAX_RECORD_DEPTH) -> Any:
    """The value of one record's JSON text; InvalidRecordError (naming `where`, and the field
    when the nesting is too deep under one) when it is not JSON or nests too deep."""
    try:
        return _decoded_within(text, max_depth=max_depth)
    except _TooDeepError as exc:
        raise record_error(where, too_deep_message(max_depth), field=exc.field) from None
    except json.JSONDecodeError as exc:
        raise record_error(where, f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def load_body(raw: bytes, *, max_depth: int) -> Any:
    """A whole request body that is one JSON document; InvalidInputError when it is not
    UTF-8 JSON or nests deeper than `max_depth`."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the request body is not UTF-8 text (byte {exc.start})") from None
    try:
        return _decoded_within(text, max_depth=max_depth)
    except _TooDeepError as exc:
        message = too_deep_message(max_depth)
        where = f"field '{exc.field}': " if exc.field else ""
        raise InvalidInputError(
            f"the request body: {where}{message}",
            details=[{"field": exc.field, "message": message}],
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the request body is not valid JSON: {exc}") from None


class _TooDeepError(Exception):
    def __init__(self, field: str | None) -> None:
        super().__init__(field)
        self.field = field


def _decoded_within(text: str, *, max_depth: int) -> Any:
    """`decode`, then the nesting counted on the value; a value past the decoder's own
    recursion limit is measured on its text instead."""
    try:
        value = decode(text)
    except RecursionError:
        shallow, field = check_depth(text, max_depth=max_depth)
        if shallow:  # pragma: no cover - the recursion limit is far above any max_depth
            raise
        raise _TooDeepError(field) from None
    shallow, field = nesting(value, max_depth=max_depth)
    if not shallow:
        raise _TooDeepError(field)
    return value


def too_deep_message(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels"


def too_large_message(max_bytes: int) -> str:
    return f"larger than the record limit of {max_bytes} bytes"


def record_error(where: str, reason: str, *, field: str | None = None) -> InvalidRecordError:
    """The error of one record that could not be read: names where it was and the field."""
    prefix = f"{where}: field '{field}'" if field else where
    return InvalidRecordError(
        f"{prefix}: {reason}",
        field=field,
        details=[{"where": where, "field": field, "message": reason}],
    )


def raw_value_error(where: str, value: RawValue) -> InvalidRecordError:
    return record_error(where, value.problem or "empty", field=value.field)


class JsonStream:
    """Walks one top-level JSON document as its bytes arrive, value by value.

    The envelope (the brackets, commas and keys around the records) is followed here; each
    value inside is cut out by the C decoder (`raw_decode`) when it is an ordinary one, and its
    nesting then counted on the decoded value. A value that the decoder cannot take within the
    limits (larger than `max_bytes` before it ends, nested past the decoder's own recursion
    limit, not JSON at all) is measured by a byte scanner instead, as it streams, and kept only
    within the limits: no element costs more than `max_bytes` of memory, and a large one costs
    time in proportion to its size.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._unread = memoryview(b"")  # the rest of the chunk in hand
        # Bytes that are not UTF-8 become lone surrogates, which no JSON text holds: they are
        # found again in the value they fall in, which alone is then rejected.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._text = ""
        self._pos = 0
        self._eof = False
        self._started = False
        self._json = json.JSONDecoder(parse_int=_integer, parse_constant=_constant)

    def _more(self) -> bool:
        """Append the next piece of the body to the text; False at its end.

        A piece is at most `_PIECE` bytes, however large the chunks (a body held whole is one
        chunk): the text ahead of a value then says how far that value has gone, not how much
        of the body has arrived."""
        if self._eof:
            return False
        if self._pos > _PIECE and self._pos > len(self._text) // 2:
            self._text, self._pos = self._text[self._pos :], 0
        while True:
            if not self._unread:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._unread = memoryview(chunk)
            piece, self._unread = self._unread[:_PIECE], self._unread[_PIECE:]
            decoded = self._decoder.decode(piece)
            if not self._started and decoded:
                self._started = True
                decoded = decoded.removeprefix("\ufeff")
            if decoded:
                self._text += decoded
                return True
        self._eof = True
        rest = self._decoder.decode(b"", final=True)
        self._text += rest
        return bool(rest)

    def peek(self) -> str:
        """The next non-blank character ("" at the end of the body)."""
        while True:
            while self._pos < len(self._text) and self._text[self._pos] in _WHITESPACE_TEXT:
                self._pos += 1
            if self._pos < len(self._text):
                return self._text[self._pos]
            if not self._more():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the body"
            if "\udc80" <= found <= "\udcff":
                shown = "bytes that are not UTF-8"
            raise InvalidInputError(
                f"the request body is not valid JSON: expected {char!r}, found {shown}"
            )
        self._pos += 1

    def raw_value(self, *, max_bytes: int, max_depth: int) -> RawValue:
        """The next value's text, or why it was not kept (too large, not UTF-8, a NUL), and
        why it cannot be taken (nested too deep, with the top-level field). Raises
        InvalidInputError only when the body ends inside it."""
        first = self.peek()
        if not first:
            raise InvalidInputError("the request body is not valid JSON: it ends too early")
        if first in ",:]}":
            raise InvalidInputError(
                f"the request body is not valid JSON: expected a value, found {first!r}"
            )
        need = 0
        while True:
            available = len(self._text) - self._pos
            if available > min(max_bytes, _DECODER_TEXT):  # characters: at least as many bytes
                return self._scanned(max_bytes=max_bytes, max_depth=max_depth)
            if available >= need or self._eof:
                try:
                    value, end = self._json.raw_decode(self._text, self._pos)
                except RecursionError:
                    return self._scanned(max_bytes=max_bytes, max_depth=max_depth)
                except json.JSONDecodeError:
                    if self._eof:
                        return self._scanned(max_bytes=max_bytes, max_depth=max_depth)
                else:
                    # A value that touches the end of the text (a number) may go on.
                    if end < len(self._text) or self._eof:
                        text = self._text[self._pos : end]
                        self._pos = end
                        return _kept(text, value, max_bytes=max_bytes, max_depth=max_depth)
                need = 2 * available + 1
            self._more()

    def _scanned(self, *, max_bytes: int, max_depth: int) -> RawValue:
        """The next value, cut out by the byte scanner as the body streams."""
        scanner = _ValueScanner(max_depth=max_depth)
        kept: list[str] = []
        size = 0  # bytes of the value so far
        while True:
            segment = self._text[self._pos :]
            piece = segment.encode("utf-8", "surrogateescape")
            end = scanner.feed(piece, 0) if piece else None
            if end is not None:
                # The scanner stops after an ASCII character: never inside a multi-byte one.
                segment = piece[:end].decode("utf-8", "surrogateescape")
            self._pos += len(segment)
            size += len(piece) if end is None else end
            kept = kept + [segment] if size <= max_bytes else []
            if end is not None:
                break
            if not self._more():
                if not scanner.finish():
                    raise InvalidInputError(
                        "the request body is not valid JSON: it ends inside a value"
                    )
                break
        if size > max_bytes:
            return RawValue(None, too_large_message(max_bytes))
        text = "".join(kept)
        problem = _text_problem(text)
        if problem:
            return RawValue(None, problem)
        if scanner.too_deep:
            return RawValue(text, too_deep_message(max_depth), scanner.deep_field)
        return RawValue(text)

    def value(self, *, max_bytes: int, max_depth: int) -> Any:
        """The next value, decoded; InvalidInputError when it cannot be."""
        raw = self.raw_value(max_bytes=max_bytes, max_depth=max_depth)
        if raw.problem or raw.text is None:
            field = f"field '{raw.field}': " if raw.field else ""
            raise InvalidInputError(f"the request body: {field}{raw.problem}")
        try:
            return decode(raw.text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"the request body is not valid JSON ({exc.msg})") from None

    def array(self, *, max_bytes: int, max_depth: int) -> Iterator[RawValue]:
        """The raw elements of the array that comes next."""
        self.expect("[")
        if self.peek() == "]":
            self.expect("]")
            return
        while True:
            yield self.raw_value(max_bytes=max_bytes, max_depth=max_depth)
            if self.peek() == ",":
                self.expect(",")
                continue
            self.expect("]")
            return

    def end(self) -> None:
        if self.peek():
            raise InvalidInputError("the request body is not valid JSON: extra data after it")


def _text_problem(text: str) -> str | None:
    """Why a value's text cannot be kept: bytes that were not UTF-8, or a raw NUL."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not UTF-8 text (character {exc.start})"
    if "\x00" in text:
        # Not JSON anyway, and PostgreSQL cannot store it in a text column.
        return "contains a NUL character"
    return None


def _kept(text: str, value: Any, *, max_bytes: int, max_depth: int) -> RawValue:
    """A value the decoder took: its text, unless too large or not UTF-8; too deep?"""
    problem = _text_problem(text)
    if problem:
        return RawValue(None, problem)
    if len(text.encode("utf-8")) > max_bytes:
        return RawValue(None, too_large_message(max_bytes))
    shallow, field = nesting(value, max_depth=max_depth)
    if not shallow:
        return RawValue(text, too_deep_message(max_depth), field)
    return RawValue(text)


def nesting(value: Any, *, max_depth: int) -> tuple[bool, str | None]:
    """(`True`, None) when a decoded value nests at most `max_depth` levels, else (`False`,
    the top-level key under which it goes deeper, when it is an object). Walked with a stack,
    so any depth the decoder produced is answered."""
    if not isinstance(value, dict | list):
        return True, None
    keyed = isinstance(value, dict)
    tops = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, top in tops:
        pending = [(top, 2)]
        while pending:
            item, level = pending.pop()
            if isinstance(item, dict | list):
                if level > max_depth:
                    return False, shown_key(key) if keyed and isinstance(key, str) else None
                children = item.values() if isinstance(item, dict) else item
                pending.extend((child, level + 1) for child in children)
    return True, None


def body_elements(
    raw: bytes, *, max_bytes: int, max_depth: int
) -> list[Any | InvalidRecordError] | Any:
    """A request body held in memory: when it is a JSON list, each element decoded on its own
    (one that is too large, too deep or not JSON becomes its InvalidRecordError, in its place,
    so the others go on); any other document decoded whole, as `load_body` does, but with
    room for an envelope around one record."""
    stream = JsonStream([raw])
    if stream.peek() != "[":
        if len(raw) > max_bytes:
            raise PayloadTooLargeError(f"the request body is {too_large_message(max_bytes)}")
        return load_body(raw, max_depth=max_depth + ENVELOPE_DEPTH)
    elements: list[Any | InvalidRecordError] = []
    for index, value in enumerate(stream.array(max_bytes=max_bytes, max_depth=max_depth)):
        where = f"index {index}"
        if value.problem or value.text is None:
            elements.append(raw_value_error(where, value))
            continue
        try:
            elements.append(decode(value.text))
        except json.JSONDecodeError as exc:
            elements.append(record_error(where, f"not valid JSON ({exc.msg})"))
    stream.end()
    return elements


class _ValueScanner:
    """Finds where one JSON value ends in a byte stream, counting its nesting on the way.

    Fed the stream piece by piece; it tells strings (skipped at C speed) from the rest, where
    brackets are counted: one by one where they are few, with numpy where they are many. It
    checks only what it needs (where the value ends, how deep it goes); the decoder checks the
    rest.
    """

    def __init__(self, *, max_depth: int) -> None:
        self.max_depth = max_depth
        self.too_deep = False
        self.deep_field: str | None = None
        self._depth = 0
        self._kind = ""  # "container", "string" or "scalar", from the first byte
        self._object = False
        self._in_string = False
        self._escape_pending = False  # a backslash ended the last piece, inside a string
        self._key = bytearray()  # the string being read at depth 1 (a key, in an object)
        self._last_key: bytes | None = None

    def finish(self) -> bool:
        """The data ended: True when the value was complete (only a scalar can end so)."""
        return self._kind == "scalar"

    def feed(self, data: bytes, start: int) -> int | None:
        """Scan `data[start:]`; the index just past the value's end, or None when it goes on."""
        pos = start
        size = len(data)
        if not self._kind:
            first = data[pos : pos + 1]
            if first in (b"[", b"{"):
                self._kind = "container"
                self._object = first == b"{"
            elif first == b'"':
                self._kind = "string"
                self._in_string = True
                pos += 1
            else:
                self._kind = "scalar"
        if self._kind == "scalar":
            end = _SCALAR.match(data, pos).end()  # type: ignore[union-attr]
            return end if end < size else None
        while pos < size:
            if self._in_string:
                if self._escape_pending:
                    self._escape_pending = False
                    pos += 1
                    continue
                end = _STRING_REST.match(data, pos).end()  # type: ignore[union-attr]
                if self._depth == 1 and len(self._key) < _KEY_CAPTURE:
                    self._key += data[pos : min(end, pos + _KEY_CAPTURE)]
                if end == size:
                    return None
                if data[end] == 0x5C:  # a backslash ends the data: its character comes next
                    self._escape_pending = True
                    return None
                self._in_string = False  # the closing quote
                pos = end + 1
                if self._depth == 0:
                    return pos
                if self._depth == 1:
                    self._last_key = bytes(self._key)
                continue
            quote = data.find(b'"', pos)
            stop = size if quote < 0 else quote
            end = self._brackets(data, pos, stop)
            if end is not None:
                return end
            if quote < 0:
                return None
            self._in_string = True
            if self._depth == 1:
                self._key = bytearray()
            pos = quote + 1
        return None

    def _brackets(self, data: bytes, start: int, stop: int) -> int | None:
        """Count the brackets of `data[start:stop]` (no string in it); the index just past the
        bracket that closes the value, when it is there."""
        count = sum(data.count(bracket, start, stop) for bracket in (b"[", b"]", b"{", b"}"))
        if count == 0:
            return None
        if count < _VECTOR_FROM:
            for match in _BRACKET.finditer(data, start, stop):
                if match.group() in _OPENERS:
                    self._depth += 1
                    if self._depth > self.max_depth:
                        self._went_too_deep()
                else:
                    self._depth -= 1
                    if self._depth <= 0:
                        return match.end()
            return None
        piece = np.frombuffer(data, dtype=np.uint8, count=stop - start, offset=start)
        # "[" 0x5b and "{" 0x7b, "]" 0x5d and "}" 0x7d: each pair differs only in bit 0x20.
        opens = (piece | 0x20) == 0x7B
        where = np.flatnonzero(opens | ((piece | 0x20) == 0x7D))
        running = self._depth + np.cumsum(np.where(opens[where], 1, -1))
        closed = np.flatnonzero(running <= 0)
        reached = running if not len(closed) else running[: closed[0] + 1]
        if int(reached.max()) > self.max_depth:
            self._went_too_deep()
        if len(closed):
            return start + int(where[closed[0]]) + 1
        self._depth = int(running[-1])
        return None

    def _went_too_deep(self) -> None:
        if self.too_deep:
            return
        self.too_deep = True
        if self._object and self._last_key is not None:
            self.deep_field = shown_key(self._last_key.decode("utf-8", "replace"))
