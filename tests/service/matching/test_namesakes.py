"""Namesakes are not clones: dozens of people carry a common name, and their handles spell it
with the everyday words people add ("johnreads", "justjohn"), so such a handle beside the name
is no finding. The same handle beside a name nobody else carries was copied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexers.bio import BioEmbedder
from service.core.settings import Settings
from service.matching.engine import Engine

# Bios of people who have nothing to do with each other.
BIOS = ("Nurse in Leeds", "Dad, runner, coffee", "History teacher", "Bass player in a covers band",
        "Software engineer at a bank", "Gardening and grandchildren", "Retired firefighter",
        "Photographer, mostly birds", "Baker. Sourdough nerd", "PhD student in chemistry",
        "Pastor at a small church", "Accountant and amateur chef")  # fmt: skip
# How John Smiths name their accounts: the name, a word of their own, a year.
JOHN_SMITH_HANDLES = ("johnsmith", "john_smith", "jsmith", "smithjohn", "johnreads", "johnruns",
                      "justjohnsmith", "johnsmith_art", "johnsmith84", "john.smith.music",
                      "smithcodes", "johnsmithfit", "john_smith_travels", "thejohnsmith",
                      "johnsmithphoto", "johnsmithwrites", "johncooks", "heyjohnsmith",
                      "johnsmith_eats", "johnsmithfilms")  # fmt: skip


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder: Path = tmp_path_factory.mktemp("namesakes")
    engine = Engine.open(Settings(data_dir=folder / "data"), embedder=BioEmbedder())
    records = [
        {
            "platform": "instagram",
            "handle": handle,
            "display_name": "John Smith",
            "bio": BIOS[i % len(BIOS)],
        }
        for i, handle in enumerate(JOHN_SMITH_HANDLES)
    ]
    records.append(
        {
            "platform": "instagram",
            "handle": "quillonreads",
            "display_name": "Quillon Ashgrove",
            "bio": "Bookseller in Hay-on-Wye",
        }
    )
    report = engine.ingest([(f"record {i}", r) for i, r in enumerate(records)])
    assert report.rejected == 0
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("handle", "namesakes_handle"),
    [("johnreads3", "johnreads"), ("justjohnsmith_", "justjohnsmith"),
     ("johnsmith_art1", "johnsmith_art")],
)  # fmt: skip
def test_a_namesake_with_an_everyday_handle_is_no_finding(
    engine: Engine, handle: str, namesakes_handle: str
) -> None:
    result = engine.check(
        {
            "platform": "instagram",
            "handle": handle,
            "display_name": "John Smith",
            "bio": "Marine biologist, diver",
        },
        top_k=50,
        min_score=0.0,
    )
    [namesake] = [m for m in result.matches if m.profile["handle"] == namesakes_handle]
    assert namesake.label != "likely_clone"
    assert any("namesakes" in reason for reason in namesake.reasons)
    assert not [m.profile["handle"] for m in result.matches if m.label == "likely_clone"]


def test_the_same_handle_beside_a_name_nobody_else_carries_was_copied(engine: Engine) -> None:
    result = engine.check(
        {
            "platform": "instagram",
            "handle": "quillonreads_",
            "display_name": "Quillon Ashgrove",
            "bio": "Marine biologist, diver",
        },
        top_k=50,
    )
    [match] = [m for m in result.matches if m.profile["handle"] == "quillonreads"]
    assert match.label != "unlikely"
    assert not any("namesake" in reason for reason in match.reasons)
