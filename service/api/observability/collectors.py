"""What one application serves at /metrics: the process's metrics, then what its engine's
store and indexes hold, read when scraped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from service.core.observability.metrics import PROCESS
from service.store.jobs import JobState, scan_jobs

if TYPE_CHECKING:
    from service.matching.engine import Engine

logger = logging.getLogger(__name__)


class _ProcessMetrics(Collector):
    def collect(self) -> Iterable[Metric]:
        return PROCESS.collect()

    def describe(self) -> Iterable[Metric]:
        return []


class EngineCollector(Collector):
    """What the engine's store and indexes hold, read when scraped. Nothing while there is no
    engine (starting); a part that cannot be read (the database is down) is left out and
    logged, so that the rest still comes back."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None:
            return
        for part in (self._indexes, self._scan_jobs):
            try:
                yield from part(engine)
            except Exception:
                what = part.__name__.strip("_").replace("_", " ")
                logger.warning("metrics: could not read the %s", what, exc_info=True)

    @staticmethod
    def _indexes(engine: Engine) -> Iterator[Metric]:
        health = engine.health()
        profiles = GaugeMetricFamily(
            "clonefinder_profiles",
            "Stored profiles (PostgreSQL's estimate from 100,000 on)",
            value=health["profiles"],
        )
        entries = GaugeMetricFamily(
            "clonefinder_index_entries", "Entries in each index", labels=["index"]
        )
        indexes = dict(health["indexes"])
        applied = indexes.pop("last_change_seq")
        for name, size in indexes.items():
            entries.add_metric([name], size)
        seq = GaugeMetricFamily(
            "clonefinder_index_change_seq",
            "The last change of the store's change log that the indexes hold",
            value=applied,
        )
        yield from (profiles, entries, seq)

    @staticmethod
    def _scan_jobs(engine: Engine) -> Iterator[Metric]:
        counts = {state: (0, 0) for state in get_args(JobState)}
        query = select(
            scan_jobs.c.state, func.count(), func.coalesce(func.sum(scan_jobs.c.processed), 0)
        ).group_by(scan_jobs.c.state)
        with engine.store.engine.connect() as conn:
            for state, jobs, processed in conn.execute(query):
                counts[state] = (int(jobs), int(processed))
        jobs_family = GaugeMetricFamily(
            "clonefinder_scan_jobs", "Scan jobs in the store, by state", labels=["state"]
        )
        records = GaugeMetricFamily(
            "clonefinder_scan_records_processed",
            "Input records done by the scan jobs in each state",
            labels=["state"],
        )
        for state, (jobs, processed) in counts.items():
            jobs_family.add_metric([state], jobs)
            records.add_metric([state], processed)
        yield from (jobs_family, records)


def application_registry(engine: Callable[[], Engine | None]) -> CollectorRegistry:
    """The metrics one application serves: the process's, then its engine's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    registry.register(EngineCollector(engine))
    return registry
