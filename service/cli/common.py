"""What every command shares: the root app, common options, settings, opening the engine or
the store, turning domain errors into exit statuses. Logging is configured here, never in
library code.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from models.errors import CloneFinderError
from service.core.errors import exit_code
from service.core.settings import Settings

if TYPE_CHECKING:
    from service.evidence.signing import EvidenceSigner
    from service.matching.engine import Engine
    from service.store import Store


# Tests (and embedders) may pass `obj={"open_engine": callable}` to share one loaded engine
# between commands; the callable takes the Settings and returns a context manager.
EngineOpener = Callable[[Settings], AbstractContextManager["Engine"]]

app = typer.Typer(
    name="clonefinder",
    help="Find the social-media accounts that impersonate real people.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="CLONEFINDER_DATA_DIR",
        help="Folder of the embedded store and indexes.",
        file_okay=False,
    ),
]
TopKOption = Annotated[int, typer.Option("--top-k", min=1, max=100, help="Most matches per query.")]
MinScoreOption = Annotated[
    float | None,
    typer.Option(
        "--min-score",
        min=0.0,
        max=1.0,
        help="Least score reported (default: the possible_clone threshold; 0 ranks everything).",
    ),
]
DEFAULT_DATA_DIR = Path("clonefinder-data")


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def print_json(value: Any) -> None:
    from fastapi.encoders import jsonable_encoder

    typer.echo(json.dumps(jsonable_encoder(value), ensure_ascii=False))


def audit_signer(settings: Settings) -> EvidenceSigner:
    """The key that signs audit entries (the evidence key); it is read, or created, only when
    an entry is first written."""
    from service.evidence.signing import EvidenceSigner

    return EvidenceSigner(settings.resolved_evidence_key_file)


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    from service.store import Store

    store = Store.open(settings.resolved_database_url)
    try:
        yield store
    finally:
        store.close()


def setup(
    ctx: typer.Context,
    data_dir: Path,
    *,
    level: int = logging.WARNING,
    make_data_dir: bool = True,
) -> Settings:
    obj = ctx.ensure_object(dict)
    logging.basicConfig(
        level=logging.DEBUG if obj.get("verbose") else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if make_data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(data_dir=data_dir)


@contextmanager
def _default_opener(settings: Settings) -> Iterator[Engine]:
    from service.matching.engine import Engine

    engine = Engine.open(settings)
    try:
        yield engine
    finally:
        engine.close()


def open_engine(ctx: typer.Context, settings: Settings) -> AbstractContextManager[Engine]:
    obj = ctx.ensure_object(dict)
    opener: EngineOpener = obj.get("open_engine") or _default_opener
    return opener(settings)


def err_console() -> Console:
    return Console(stderr=True)


@contextmanager
def fail_cleanly(console: Console) -> Iterator[None]:
    """Turn a domain error into its message on stderr and the mapped exit status."""
    try:
        yield
    except CloneFinderError as exc:
        console.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
