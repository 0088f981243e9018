"""Measure labelled pairs through the real service: ingest a corpus, then compare each pair.

Training and the quality benchmark both go through here, so the weights are fitted on exactly
the evidence the service computes at check time (including how common an avatar or bio is in
the indexed corpus).
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from models.result import PairEvidence
from models.scoring import ScoringModel
from service.core.settings import Settings
from service.matching.engine import Engine
from service.matching.profile_sides import side_of_row
from training.pairset import Corpus, LabelledPair

logger = logging.getLogger(__name__)


@dataclass
class MeasuredPair:
    pair: LabelledPair
    evidence: PairEvidence


@contextmanager
def corpus_engine(
    corpus: Corpus, *, data_dir: Path | None = None, scorer: ScoringModel | None = None
) -> Iterator[Engine]:
    """A throw-away engine (SQLite and FAISS in a temp folder) holding the whole corpus."""
    with tempfile.TemporaryDirectory(prefix="clonefinder-corpus-") as tmp:
        engine = Engine.open(Settings(data_dir=data_dir or Path(tmp)), scorer=scorer)
        try:
            items = ((f"index {i}", record) for i, record in enumerate(corpus.profiles))
            report = engine.ingest(items)
            if report.rejected:
                bad = [o.error for o in report.outcomes if o.status == "rejected"][:5]
                raise RuntimeError(f"{report.rejected} corpus profiles were rejected: {bad}")
            yield engine
        finally:
            engine.close()


def measure_pairs(engine: Engine, pairs: list[LabelledPair]) -> list[MeasuredPair]:
    """The evidence of each labelled pair, exactly as a check of its query would compute it."""
    by_query: dict[tuple[str, str], list[LabelledPair]] = defaultdict(list)
    for pair in pairs:
        by_query[pair.query].append(pair)
    measured: list[MeasuredPair] = []
    for query_key, group in by_query.items():
        query_row = engine.store.get(*query_key)
        if query_row is None:
            raise KeyError(f"query profile {query_key} is not in the corpus")
        query_side = side_of_row(query_row)
        _, popularity = engine.matcher.neighbourhood(query_side, exclude_id=query_row.id)
        rows = [engine.store.get(*pair.candidate) for pair in group]
        if any(row is None for row in rows):
            raise KeyError(f"a candidate of {query_key} is not in the corpus")
        evidence = engine.matcher.evidence(query_side, rows, popularity=popularity)  # type: ignore[arg-type]
        measured.extend(MeasuredPair(p, e) for p, e in zip(group, evidence, strict=True))
    return measured
