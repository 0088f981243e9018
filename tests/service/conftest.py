"""Fixtures shared by the service tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from models.bounds import ScoreBounds
from models.scoring import ScoringModel
from service.core.settings import Settings
from service.evidence.signing import EvidenceSigner
from service.store import Store

# The admin connection used to create and drop one scratch database per test.
POSTGRES_ADMIN_URL = os.environ.get(
    "CLONEFINDER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def _postgres_admin() -> Iterator[Engine]:
    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}")
    yield engine
    engine.dispose()


def _postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    admin: Engine = request.getfixturevalue("_postgres_admin")
    name = f"clonefinder_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of an empty database of its own, once per backend (SQLite file, PostgreSQL)."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("store")
        yield f"sqlite:///{folder / 'data' / 'clonefinder.db'}"
    else:
        yield from _postgres_database(request)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """An open, migrated store on each backend."""
    opened = Store.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def scorer() -> ScoringModel:
    """The shipped scoring model (weights from models/weights.json)."""
    return ScoringModel.load()


@pytest.fixture(scope="session")
def bounds(scorer: ScoringModel) -> ScoreBounds:
    """The score table the screens bound pairs with, for the shipped model."""
    return ScoreBounds(scorer)


@pytest.fixture(scope="module")
def open_engine() -> Callable[[Settings], AbstractContextManager[Any]]:
    """Opens engines for the command line's `open_engine` hook, sharing one embedding model
    across a test module (loading it is most of a command's start-up)."""
    from indexers.bio import BioEmbedder
    from service.matching.engine import Engine as ServiceEngine

    embedder = BioEmbedder()

    @contextmanager
    def opener(settings: Settings) -> Iterator[Any]:
        engine = ServiceEngine.open(settings, embedder=embedder)
        try:
            yield engine
        finally:
            engine.close()

    return opener


@pytest.fixture
def signer(tmp_path: Path) -> EvidenceSigner:
    """The service's evidence and audit signing key, in the test's own folder."""
    return EvidenceSigner(tmp_path / "evidence-signing.key")
