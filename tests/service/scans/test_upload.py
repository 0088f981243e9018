"""Reading scan uploads as they stream: JSON Lines, JSON lists and objects, multipart forms."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import InvalidInputError
from service.scans.upload import ScanBody, ScanRecord, read_json, read_jsonl, read_multipart


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    """The body cut into `size`-byte chunks, as a network would deliver it."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_jsonl_lines_keep_their_numbers_whatever_the_chunking(size: int) -> None:
    body = (
        b'\xef\xbb\xbf{"handle": "a"}\r\n\n   \n{"handle": "b"}\nnot json\n'
        b'\xff\n{"handle": "c"}'  # a BOM first; \xff is not UTF-8; no newline at the end
    )
    records = list(read_jsonl(pieces(body, size), ScanBody(), max_line_bytes=1000))
    assert [r.label for r in records] == ["line 1", "line 4", "line 5", "line 6", "line 7"]
    assert records[0].raw == '{"handle": "a"}'
    assert records[2].raw == "not json"  # kept as it is: the worker reports it
    assert records[3].raw is None and "UTF-8" in (records[3].problem or "")
    assert records[4].raw == '{"handle": "c"}'


def test_a_line_over_the_limit_is_a_problem_not_a_failure() -> None:
    body = b'{"handle": "a"}\n' + b"x" * 5000 + b'\n{"handle": "b"}\n{"handle": "\x00"}\n'
    records = list(read_jsonl(pieces(body, 100), ScanBody(), max_line_bytes=1000))
    assert [(r.label, r.raw is None) for r in records] == [
        ("line 1", False),
        ("line 2", True),
        ("line 3", False),
        ("line 4", True),
    ]
    assert "longer than the limit" in (records[1].problem or "")
    assert "NUL" in (records[3].problem or "")


@pytest.mark.parametrize("size", [1, 5, 64 * 1024])
def test_a_json_list_streams_element_by_element(size: int) -> None:
    profiles = [{"handle": f"user{i}", "n": i * 1234567, "bio": "x" * (i * 50)} for i in range(30)]
    body = json.dumps(profiles).encode()
    records = list(read_json(pieces(body, size), ScanBody()))
    assert [r.label for r in records] == [f"index {i}" for i in range(30)]
    assert [json.loads(r.raw or "") for r in records] == profiles


@pytest.mark.parametrize("size", [3, 1000])
def test_an_object_carries_profiles_and_options_in_any_order(size: int) -> None:
    document = {"mode": "clusters", "profiles": [{"handle": "a"}, 7, None], "min_score": 0.5}
    body = ScanBody()
    records = list(read_json(pieces(json.dumps(document).encode(), size), body))
    assert [r.raw for r in records] == ['{"handle": "a"}', "7", "null"]
    assert body.options == {"mode": "clusters", "min_score": 0.5}


def test_numbers_are_not_cut_at_a_chunk_boundary() -> None:
    records = list(read_json(pieces(b"[12345678, 9]", 3), ScanBody()))
    assert [r.raw for r in records] == ["12345678", "9"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1, 2", b'{"profiles": 3}', b'"a string"', b"[1] [2]", b"[1,]", b"\xff[]"],
)
def test_a_body_that_is_not_that_shape_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        list(read_json(pieces(body, 2), ScanBody()))


def _form(file: bytes, **fields: str) -> tuple[bytes, bytes]:
    boundary = b"----scanboundary42"
    parts = [
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode()
        + b'"\r\n\r\n' + value.encode() + b"\r\n"
        for name, value in fields.items()
    ]  # fmt: skip
    parts.append(
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        b'filename="p.jsonl"\r\nContent-Type: application/x-ndjson\r\n\r\n' + file + b"\r\n"
    )
    return b"".join(parts) + b"--" + boundary + b"--\r\n", boundary


@pytest.mark.parametrize("size", [1, 13, 65536])
def test_a_multipart_form_streams_its_file_and_keeps_its_fields(size: int) -> None:
    data, boundary = _form(b'{"handle": "a"}\n\n{"handle": "b"}\n', mode="clusters", top_k="3")
    body = ScanBody()
    records = list(read_multipart(pieces(data, size), body, boundary=boundary, max_line_bytes=99))
    assert records == [
        ScanRecord("line 1", '{"handle": "a"}'),
        ScanRecord("line 3", '{"handle": "b"}'),
    ]
    # A form's text is typed as the JSON scalar it spells, as a JSON body's options are.
    assert body.options == {"mode": "clusters", "top_k": 3}


def test_a_form_without_the_file_is_refused() -> None:
    boundary = b"xyz"
    data = b'--xyz\r\nContent-Disposition: form-data; name="mode"\r\n\r\nclusters\r\n--xyz--\r\n'
    with pytest.raises(InvalidInputError, match="'file'"):
        list(read_multipart(pieces(data, 10), ScanBody(), boundary=boundary, max_line_bytes=99))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(elements=st.lists(json_values, max_size=6), size=st.integers(min_value=1, max_value=40))
def test_a_json_list_is_cut_into_its_elements_at_any_chunking(
    elements: list[object], size: int
) -> None:
    # Strings with brackets, quotes and escapes in them, cut at every possible place.
    body = json.dumps(elements, ensure_ascii=size % 2 == 0).encode()
    records = list(read_json(pieces(body, size), ScanBody(), max_record_bytes=1 << 20))
    assert [json.loads(r.raw or "") for r in records] == elements


def test_an_element_over_the_record_limit_is_skipped_alone_and_never_held() -> None:
    huge = {"handle": "big", "bio": "x" * 3_000_000, "tags": [[]] * 200_000}
    body = json.dumps([{"handle": "a"}, huge, {"handle": "b"}]).encode()
    records = list(read_json(pieces(body, 64 * 1024), ScanBody(), max_record_bytes=10_000))
    assert [r.label for r in records] == ["index 0", "index 1", "index 2"]
    assert records[1].raw is None and "larger than the record limit" in (records[1].problem or "")
    assert [records[0].raw, records[2].raw] == ['{"handle": "a"}', '{"handle": "b"}']


@pytest.mark.parametrize("size", [1, 3, 4096])
def test_an_element_nested_too_deep_is_kept_for_the_worker_to_report(size: int) -> None:
    deep = '{"handle": "d", "nested": ' + "[" * 5000 + "]" * 5000 + "}"
    body = f'[{deep}, {{"handle": "e", "bio": "[[[[ in a string ]]]"}}]'.encode()
    records = list(read_json(pieces(body, size), ScanBody(), max_record_bytes=1 << 20))
    assert [r.raw for r in records] == [deep, '{"handle": "e", "bio": "[[[[ in a string ]]]"}']
