"""Alembic environment for the clonefinder store.

`Store.open` runs the migrations programmatically and hands over its own connection in
`config.attributes["connection"]` (inside a transaction that also serialises concurrent first
starts). The `alembic` command line works too, with `alembic.ini` in this folder and the URL
from `CLONEFINDER_DATABASE_URL` or the ini's `sqlalchemy.url`.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from service.store.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = os.environ.get("CLONEFINDER_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set CLONEFINDER_DATABASE_URL or sqlalchemy.url in alembic.ini")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


# Only the command line configures logging; a library caller keeps its own.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
