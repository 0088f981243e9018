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

from models.errors import CloneFinderError, NotFoundError
from service.core.errors import exit_code
from service.core.observability.logs import configure_logging
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
    pretty_exceptions_show_locals=False,
)

# Exit statuses beyond those of service.core.errors (0 ok, 1 some records rejected, 2 unusable
# input, 3 unusable store or setting): a script must tell a missing case or key, and a bundle or
# audit log that does not verify, from records that were rejected.
EXIT_NOT_FOUND = 4
EXIT_VERIFICATION_FAILED = 5

DEFAULT_DATA_DIR = Path("clonefinder-data")
DATA_DIR_ENV = "CLONEFINDER_DATA_DIR"

# A command's own --data-dir wins over the one given before the command, which wins over the
# environment; the environment variable is read once, by the root option.
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder of the embedded store and indexes (default: the --data-dir before the "
        f"command, else ${DATA_DIR_ENV}, else ./{DEFAULT_DATA_DIR}).",
        file_okay=False,
        show_default=False,
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


def package_version() -> str:
    """The installed package's version: pyproject.toml's, read from the package metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clonefinder")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"clonefinder {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar=DATA_DIR_ENV,
            help="Folder of the embedded store and indexes, for every command.",
            file_okay=False,
            show_default=f"./{DEFAULT_DATA_DIR}",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    ctx.obj["data_dir"] = data_dir


JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout; messages go to stderr."),
]


def print_json(value: Any) -> None:
    from fastapi.encoders import jsonable_encoder

    typer.echo(json.dumps(jsonable_encoder(value), ensure_ascii=False))


def say(message: str, *, as_json: bool) -> None:
    """A message for a person: on stdout as before, or on stderr where stdout carries JSON."""
    typer.echo(message, err=as_json)


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
    data_dir: Path | None,
    *,
    level: int = logging.WARNING,
    make_data_dir: bool = True,
) -> Settings:
    """Logging and the settings of a command; `data_dir` is the command's own --data-dir."""
    obj = ctx.ensure_object(dict)
    data_dir = data_dir or obj.get("data_dir") or DEFAULT_DATA_DIR
    logging.basicConfig(
        level=logging.DEBUG if obj.get("verbose") else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if make_data_dir:
        data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    # JSON lines where a log collector reads stderr, plain text on a terminal.
    configure_logging(settings.log_format)
    return settings


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
        raise typer.Exit(cli_exit_code(exc)) from None


def cli_exit_code(exc: CloneFinderError) -> int:
    """The exit status of a command stopped by `exc`."""
    return EXIT_NOT_FOUND if isinstance(exc, NotFoundError) else exit_code(exc)
