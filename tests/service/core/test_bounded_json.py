"""Reading JSON within the record limits: what a body's elements become, one by one."""

from __future__ import annotations

import pytest

from models.errors import InvalidInputError, InvalidRecordError, PayloadTooLargeError
from models.profile import MAX_INT_DIGITS, UnreadableNumber
from service.core.bounded_json import body_elements, check_depth, decode, load_record

LIMITS = {"max_bytes": 1000, "max_depth": 4}


def test_each_bad_element_of_a_list_becomes_its_own_error_in_its_place() -> None:
    body = (
        b'[{"handle": "a"}, {"handle": "deep", "x": [[[[[1]]]]]}, {"bio": "'
        + b"y" * 2000
        + b'"}, {"bio": "caf\xe9"}, {"handle": "b"}]'
    )
    elements = body_elements(body, **LIMITS)
    assert elements[0] == {"handle": "a"} and elements[4] == {"handle": "b"}
    deep, large, not_utf8 = elements[1:4]
    assert isinstance(deep, InvalidRecordError) and deep.field == "x"
    assert "index 1" in deep.message and "nested deeper than 4 levels" in deep.message
    assert isinstance(large, InvalidRecordError) and "index 2" in large.message
    assert "larger than the record limit of 1000 bytes" in large.message
    assert isinstance(not_utf8, InvalidRecordError) and "not UTF-8" in not_utf8.message


def test_a_body_that_is_one_object_is_read_whole_with_room_for_an_envelope() -> None:
    assert body_elements(b'{"identity": {"x": [[[1]]]}}', **LIMITS) == {"identity": {"x": [[[1]]]}}
    with pytest.raises(InvalidInputError, match="field 'identity': nested deeper"):
        body_elements(b'{"identity": {"x": [[[[[[1]]]]]]}}', **LIMITS)
    with pytest.raises(PayloadTooLargeError):
        body_elements(b'{"bio": "' + b"y" * 2000 + b'"}', **LIMITS)


def test_numbers_python_would_not_convert_are_left_for_the_schema_to_refuse() -> None:
    value = decode('{"a": ' + "9" * (MAX_INT_DIGITS + 1) + ', "b": NaN, "c": 12}')
    assert isinstance(value["a"], UnreadableNumber) and isinstance(value["b"], UnreadableNumber)
    assert value["c"] == 12


def test_depth_is_counted_outside_strings_only() -> None:
    assert check_depth('{"bio": "' + "[" * 100 + '"}', max_depth=4) == (True, None)
    assert check_depth('{"a": 1, "b": "x", "c": ' + "[" * 100 + "]" * 100 + "}", max_depth=4) == (
        False,
        "c",
    )
    with pytest.raises(InvalidRecordError, match="line 3: field 'c': nested deeper") as caught:
        load_record('{"c": ' + "[" * 3000 + "]" * 3000 + "}", where="line 3")
    assert caught.value.field == "c"
