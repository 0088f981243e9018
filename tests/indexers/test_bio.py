"""Bio embeddings: normalized vectors from the bundled model, each distinct text embedded once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from indexers.bio import BioEmbedder, normalize_bio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> BioEmbedder:
    return BioEmbedder()


def test_vectors_are_unit_length_float32(embedder: BioEmbedder) -> None:
    vectors = embedder.embed(["Coffee, code and cats.", "Marathon runner and dad of two."])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, embedder.dim) == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_bio_has_no_vector(embedder: BioEmbedder) -> None:
    vectors = embedder.embed_bios([None, "", "   \n ", "Hello there"])
    assert vectors[:3] == [None, None, None]
    assert vectors[3] is not None


def test_identical_texts_are_embedded_once(
    embedder: BioEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    original = embedder._model.encode

    def counting(texts: list[str], **kwargs: Any) -> Any:
        seen.extend(texts)
        return original(texts, **kwargs)

    monkeypatch.setattr(embedder._model, "encode", counting)
    bios = ["Follow me for more! #teamfollowback"] * 5 + ["Unique text about tidal energy"]
    vectors = embedder.embed_bios(bios)
    assert len(seen) == len(set(seen)) <= 2
    assert np.array_equal(vectors[0], vectors[4])
    embedder.embed_bios(["Unique text about tidal energy"])
    assert seen.count("Unique text about tidal energy") <= 1


def test_a_copied_bio_stays_close_and_an_unrelated_one_does_not(embedder: BioEmbedder) -> None:
    original, promo, unrelated = embedder.embed(
        [
            "Marine biologist in Lisbon. Writing about octopus intelligence.",
            "Marine biologist in Lisbon. Writing about octopus intelligence. DM for promo",
            "Bitcoin trader, gym rat, living my best life in Miami",
        ]
    )
    assert float(original @ promo) > 0.85
    assert float(original @ unrelated) < 0.5


def test_normalize_bio_collapses_whitespace_and_compatibility_forms() -> None:
    assert normalize_bio("  Ｊane\n\n doe  ") == "Jane doe"
    assert normalize_bio(None) == ""
