"""Pair evidence: what comparison says of two profiles, field by field."""

from __future__ import annotations

import pytest

from indexers import text
from indexers.compare import ProfileSide, compare


def side(name: str, handle: str) -> ProfileSide:
    return ProfileSide(
        display_name=name,
        name_key=text.normalize_name(name),
        handle=handle,
        handle_norm=text.normalize_handle(handle),
    )


@pytest.mark.parametrize(
    ("name", "query_handle", "candidate_handle", "explained", "bare"),
    [
        ("Maria Garcia", "mariagarcia67", "mariagarcia", True, True),  # namesakes' handles
        ("Maya Okafor", "maya_okafor", "maya_okafor_art", True, False),  # a word of her own
        ("Jane Doe", "janedoe_art", "janedoe_art1", False, False),  # the same own word: copied
        ("Maria Garcia", "mg_lovesbooks", "mg_lovesbooks1", False, False),  # not from the name
    ],
)
def test_handles_that_agree_only_in_the_name_are_marked(
    name: str, query_handle: str, candidate_handle: str, explained: bool, bare: bool
) -> None:
    [evidence] = compare(side(name, query_handle), [side(name, candidate_handle)])
    assert evidence.handle_from_name is explained
    assert evidence.handles_only_name is bare
    assert evidence.handle is not None and evidence.handle > 0.6


def test_a_lookalike_swap_is_not_how_namesakes_handles_agree() -> None:
    """@danielec0tr0nei next to @danielecotronei, both "Daniele Cotronei": the handles spell
    only the name, but no namesake writes his with zeros for o's."""
    [evidence] = compare(
        side("Daniele Cotronei", "danielec0tr0nei"), [side("Daniele Cotronei", "danielecotronei")]
    )
    assert evidence.handle_lookalike
    assert not evidence.handle_from_name


def test_lookalike_handles_of_different_names_are_not_marked() -> None:
    [evidence] = compare(side("Jane Doe", "j0hn"), [side("John Smith", "john")])
    assert not evidence.handle_lookalike
