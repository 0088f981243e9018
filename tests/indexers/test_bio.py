"""Bio embeddings: normalized vectors from the bundled model, each distinct text embedded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexers.bio import BioEmbedder, normalize_bio
from models.errors import ConfigurationError

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
    original = embedder._encode

    def counting(texts: list[str], *, threads: int | None) -> Any:
        seen.extend(texts)
        return original(texts, threads=threads)

    monkeypatch.setattr(embedder, "_encode", counting)
    bios = ["Follow me for more! #teamfollowback"] * 5 + ["Unique text about tidal energy"]
    vectors = embedder.embed_bios(bios)
    assert len(seen) == len(set(seen)) <= 2
    assert np.array_equal(vectors[0], vectors[4])
    embedder.embed_bios(["Unique text about tidal energy"])
    assert seen.count("Unique text about tidal energy") <= 1


def test_one_core_gives_the_vectors_of_all_cores(embedder: BioEmbedder) -> None:
    # A scan pipeline embeds on one core; its matches must be those a check finds.
    texts = ["Marine biologist in Lisbon. Writing about octopus intelligence.", "dad | runner"]
    embedder._cache.clear()
    one_core = embedder.embed(texts, threads=1)
    embedder._cache.clear()
    all_cores = embedder.embed(texts)
    assert np.allclose(one_core, all_cores, atol=1e-5)


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


BIOS = [
    "Marine biologist in Lisbon. Writing about octopus intelligence.",
    "Bitcoin trader, gym rat, living my best life in Miami",
    "Mum of three, nurse, Liverpool fan. Views my own.",
    "Официальный аккаунт. Новости и события",
    "x",
]


def test_the_quantized_model_agrees_with_the_float_model(embedder: BioEmbedder) -> None:
    reference = BioEmbedder(backend="torch").embed(BIOS)
    quantized = embedder.embed(BIOS)
    assert embedder.name == "all-MiniLM-L6-v2+onnx-int8"
    assert np.all(np.sum(reference * quantized, axis=1) > 0.97)


def test_the_export_is_made_once_and_reused(tmp_path: Path) -> None:
    first = BioEmbedder(cache_dir=tmp_path)
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    made_at = exported[0].stat().st_mtime_ns
    second = BioEmbedder(cache_dir=tmp_path)
    assert [p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")] == [made_at]
    assert np.array_equal(first.embed(BIOS), second.embed(BIOS))


def test_an_unknown_backend_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown embedding backend"):
        BioEmbedder(backend="gpu-magic")  # type: ignore[arg-type]
