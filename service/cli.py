"""The `clonefinder` command line (interface.md section 2).

Commands build `Settings` once and open the engine only when they need it: loading the
embedding model takes seconds, so `--help` and unreadable input files answer at once. Logging
is configured here, never in library code.
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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from models.errors import CloneFinderError, InvalidInputError, NotFoundError
from service.core.errors import EXIT_OK, EXIT_SOME_REJECTED, exit_code
from service.core.settings import Settings
from service.records import read_records

if TYPE_CHECKING:
    from datetime import datetime

    from service.evidence.signing import EvidenceSigner
    from service.matching.engine import Engine
    from service.store import Store

logger = logging.getLogger(__name__)

MAX_REASONS_SHOWN = 50

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


@app.command()
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .json file of profiles.")],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Upsert every profile of FILE; exit 0 if all were kept, 1 if some were rejected."""
    settings = _setup(ctx, data_dir)
    console = _err_console()
    with _fail_cleanly(console):
        records = read_records(file, max_record_bytes=settings.max_record_bytes)
        total = _count(file) if console.is_terminal else None
        with _open_engine(ctx, settings) as engine, _progress(console, "ingesting", total) as tick:
            report = engine.ingest(records, base_dir=file.parent.resolve(), progress=tick)
    typer.echo(
        f"ingested {report.created}, updated {report.updated}, rejected {report.rejected} "
        f"(of {len(report.outcomes)} records in {file})"
    )
    rejected = [outcome for outcome in report.outcomes if outcome.status == "rejected"]
    for outcome in rejected[:MAX_REASONS_SHOWN]:
        message = str((outcome.error or {}).get("message", "rejected"))
        if not message.startswith(outcome.where):
            message = f"{outcome.where}: {message}"
        typer.echo(f"  {message}")
    if len(rejected) > MAX_REASONS_SHOWN:
        typer.echo(f"  ... and {len(rejected) - MAX_REASONS_SHOWN} more")
    raise typer.Exit(EXIT_SOME_REJECTED if rejected else EXIT_OK)


@app.command()
def check(
    ctx: typer.Context,
    platform: Annotated[str | None, typer.Option(help="Platform slug of the identity.")] = None,
    handle: Annotated[str | None, typer.Option(help="Handle of the identity.")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    bio: Annotated[str | None, typer.Option(help="Bio text.")] = None,
    avatar: Annotated[
        Path | None, typer.Option(help="A local avatar image.", dir_okay=False)
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="A profile record: inline JSON or a .json file.")
    ] = None,
    top_k: TopKOption = 10,
    min_score: MinScoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result record as JSON.")] = (
        False
    ),
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Find the likely impersonators of one identity (any of the options will do)."""
    settings = _setup(ctx, data_dir)
    console = _err_console()
    with _fail_cleanly(console):
        record, base_dir = _query_record(
            profile=profile, platform=platform, handle=handle, name=name, bio=bio, avatar=avatar
        )
        with _open_engine(ctx, settings) as engine:
            result = engine.check(record, top_k=top_k, min_score=min_score, base_dir=base_dir)
            threshold = engine.possible_clone_threshold if min_score is None else min_score
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
        return
    _print_result(result.model_dump(mode="json"), threshold)


@app.command()
def scan(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .json file of profiles.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the result records.")],
    top_k: TopKOption = 10,
    min_score: MinScoreOption = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Run the scan as a job on this clonefinder server (its URL) instead of here.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="CLONEFINDER_API_KEY", help="The API key for --server."),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Check every profile of FILE; one result record per input, in order, to OUT (JSON Lines)."""
    settings = _setup(ctx, data_dir)
    console = _err_console()
    if server is not None:
        _scan_on_server(
            console, file, out, server=server, key=key, top_k=top_k, min_score=min_score
        )
    scanned = flagged = bad = 0
    with _fail_cleanly(console):
        records = read_records(file, max_record_bytes=settings.max_record_bytes)
        if out.resolve() == file.resolve():
            raise InvalidInputError(f"--out {out} would overwrite the input file")
        total = _count(file) if console.is_terminal else None
        with (
            _open_engine(ctx, settings) as engine,
            _progress(console, "scanning", total) as tick,
            _open_output(out) as sink,
        ):
            results = engine.scan(
                records,
                top_k=top_k,
                min_score=min_score,
                base_dir=file.parent.resolve(),
                progress=tick,
            )
            for record in results:
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                scanned += 1
                if record.get("error"):
                    bad += 1
                    error = record["error"]
                    logger.debug("%s: %s", error.get("where"), error.get("message"))
                elif record.get("matches"):
                    flagged += 1
    typer.echo(
        f"scanned {scanned} profiles: {flagged} with possible clones, {bad} rejected; "
        f"results in {out}"
    )
    raise typer.Exit(EXIT_SOME_REJECTED if bad else EXIT_OK)


@app.command()
def reindex(ctx: typer.Context, data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Rebuild every index from the store (the store is the source of truth)."""
    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_engine(ctx, settings) as engine:
        count = engine.reindex()
    typer.echo(f"reindexed {count} profiles in {settings.data_dir}")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the bundled demo profiles if the store is empty.")
    ] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Run the HTTP API (docs at /docs)."""
    import uvicorn

    from service.api.app import create_app

    settings = _setup(ctx, data_dir, level=logging.INFO)
    logger.info("data dir: %s", settings.data_dir.resolve())
    # The app's lifespan opens and closes the engine: uvicorn re-raises SIGTERM after a
    # graceful shutdown, so code after `uvicorn.run` would not run.
    # uvicorn believes X-Forwarded-For from loopback unless told otherwise, which would let
    # anyone behind a local proxy choose their client address: only the configured proxies.
    uvicorn.run(
        create_app(settings, load_demo=demo),
        host=host,
        port=port,
        log_config=None,
        forwarded_allow_ips=[str(network) for network in settings.trusted_proxies],
    )


# --- bulk scans: workers, and scans through a server ----------------------------------------


@app.command()
def worker(ctx: typer.Context, data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Do bulk scan jobs from the store until stopped (SIGTERM or Ctrl-C).

    Any number of workers may run against one store, on this machine or others (with
    CLONEFINDER_DATABASE_URL); each takes chunks of the queued jobs. A stopped worker finishes
    the chunk in hand; a killed one's chunk is redone by another once its lease runs out.
    """
    import signal

    from service.matching.engine import Engine
    from service.scans.worker import ScanWorker

    settings = _setup(ctx, data_dir, level=logging.INFO)
    with _fail_cleanly(_err_console()):
        # The server owns the saved index files; a worker follows the store in memory.
        engine = Engine.open(settings, save_indexes=False)
        # Watchlist alerts' webhook deliveries are sent from workers too, in background threads.
        deliveries = engine.watchlist.start_deliveries()
        try:
            scan_worker = ScanWorker(engine, settings)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: scan_worker.stop())
            scan_worker.run()
        finally:
            deliveries.stop()
            engine.close()


def _scan_on_server(
    console: Console,
    file: Path,
    out: Path,
    *,
    server: str,
    key: str | None,
    top_k: int,
    min_score: float | None,
) -> None:
    """`scan --server`: upload FILE, follow the job with a progress bar, write its results to
    OUT in input order; exits like a local scan."""
    from service.scans.client import remote_scan

    with _fail_cleanly(console):
        read_records(file)  # refuse an unreadable file before anything is sent
        if out.resolve() == file.resolve():
            raise InvalidInputError(f"--out {out} would overwrite the input file")
        with _open_output(out) as sink, _job_progress(console) as tick:
            summary = remote_scan(
                file,
                sink,
                server=server,
                key=key,
                options={"top_k": top_k, "min_score": min_score},
                progress=tick,
            )
    typer.echo(
        f"scanned {summary.lines} profiles on {server} (job {summary.job_id}): "
        f"{summary.flagged} with possible clones, {summary.errors} rejected; results in {out}"
    )
    raise typer.Exit(EXIT_SOME_REJECTED if summary.errors else EXIT_OK)


@contextmanager
def _job_progress(console: Console) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar of a server's job (records done of the total) on a terminal."""
    if not console.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("scanning on the server"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("scanning", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


# --- API keys: only the store is opened (no model), so these answer at once ----------------

keys_app = typer.Typer(
    name="keys",
    help="Create, list and revoke the API keys of the HTTP API.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    role: Annotated[
        str,
        typer.Option("--role", help="individual, platform, investigator or admin."),
    ],
    name: Annotated[str, typer.Option("--name", help="A unique name for the key's holder.")],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Create a key; it is printed once, alone on the last line, and never stored."""
    from service.auth.keys import create_key
    from service.store import KeyStore

    settings = _setup(ctx, data_dir)
    console = _err_console()
    with _fail_cleanly(console), _open_store(settings) as store:
        created = create_key(KeyStore(store), name=name, role=role)
    row = created.row
    # The note goes to stderr, the key alone to stdout: `KEY=$(clonefinder keys create ...)`.
    console.print(
        f"created key {row.name!r} (role {row.role}, starts {row.prefix}); it is shown only "
        "now, store it safely:",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(created.key)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """List the keys: name, role, the key's first characters, created, last used, revoked."""
    from service.store import KeyStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        rows = KeyStore(store).list()
    if as_json:
        for row in rows:
            shown = {
                "name": row.name,
                "role": row.role,
                "prefix": row.prefix,
                "created_at": row.created_at.isoformat(),
                "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            }
            typer.echo(json.dumps(shown, ensure_ascii=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    if not rows:
        console.print(
            "no keys yet: `clonefinder keys create --role ROLE --name NAME`", markup=False
        )
        return
    table = Table()
    for column in ("name", "role", "starts", "created", "last used", "revoked"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            row.name,
            row.role,
            row.prefix + "...",
            _when(row.created_at),
            _when(row.last_used_at),
            _when(row.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The key's name (see `keys list`).")],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Revoke a key: running servers refuse it from their next request."""
    from service.store import KeyStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        row = KeyStore(store).revoke(name)
    typer.echo(f"revoked key {row.name!r} (role {row.role}) at {_when(row.revoked_at)}")


# --- cases, evidence and the audit log -----------------------------------------------------

case_app = typer.Typer(
    name="case",
    help="Cases: a victim, the accounts that impersonate it, captures and evidence exports.",
    no_args_is_help=True,
)
app.add_typer(case_app, name="case")
evidence_app = typer.Typer(
    name="evidence", help="Check evidence bundles; show the signing key.", no_args_is_help=True
)
app.add_typer(evidence_app, name="evidence")
audit_app = typer.Typer(
    name="audit", help="Read and check the tamper-evident audit log.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CaseId = Annotated[int, typer.Argument(min=1, help="The case's id (see `case list`).")]


def _operator() -> Any:
    import getpass

    from service.cases.service import Operator

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return Operator.local(user)


def _print_json(value: Any) -> None:
    from fastapi.encoders import jsonable_encoder

    typer.echo(json.dumps(jsonable_encoder(value), ensure_ascii=False))


@case_app.command("create")
def case_create(
    ctx: typer.Context,
    platform: Annotated[str, typer.Option(help="The victim's platform.")],
    handle: Annotated[str, typer.Option(help="The victim's handle (a stored profile).")],
    title: Annotated[str | None, typer.Option(help="A title (default: from the victim).")] = None,
    notes: Annotated[str | None, typer.Option(help="Notes.")] = None,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Open a case for a victim, a stored profile named by platform and handle."""
    from service.cases.service import case_document

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_engine(ctx, settings) as engine:
        case = engine.cases.create(
            _operator(), platform=platform, handle=handle, title=title, notes=notes
        )
    if as_json:
        _print_json(case_document(case))
        return
    typer.echo(f"opened case {case.id}: {case.title}")


@case_app.command("list")
def case_list(
    ctx: typer.Context, as_json: JsonFlag = False, data_dir: DataDirOption = DEFAULT_DATA_DIR
) -> None:
    """List every case: id, status, victim, title."""
    from service.cases.service import case_document
    from service.store import CaseStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        rows = CaseStore(store, signer=_audit_signer(settings)).cases(key_id=None)
    if as_json:
        for row in rows:
            _print_json(case_document(row))
        return
    if not rows:
        typer.echo("no cases yet: `clonefinder case create --platform P --handle H`")
    for row in rows:
        typer.echo(
            f"{row.id}\t{row.status}\t{row.victim_platform}/{row.victim_handle}\t{row.title}"
        )


@case_app.command("show")
def case_show(
    ctx: typer.Context,
    case_id: CaseId,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Show a case, its items and their captures."""
    from service.cases.service import case_document, item_document
    from service.store import CaseStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        cases = CaseStore(store, signer=_audit_signer(settings))
        case = cases.case(case_id, key_id=None)
        if case is None:
            raise NotFoundError(f"no case {case_id}")
        captures: dict[int, list[Any]] = {}
        for capture in cases.captures(case_id):
            captures.setdefault(capture.item_id, []).append(capture)
        items = [item_document(i, captures.get(i.id, [])) for i in cases.items(case_id)]
    if as_json:
        _print_json({**case_document(case), "items": items})
        return
    typer.echo(f"case {case.id}: {case.title}")
    typer.echo(f"  victim {case.victim_platform}/{case.victim_handle}, status {case.status}")
    if case.notes:
        typer.echo(f"  notes: {case.notes}")
    for item in items:
        latest = item["captures"][-1] if item["captures"] else {}
        typer.echo(
            f"  item {item['id']}: {item['platform']}/{item['handle']} score "
            f"{item['score']:.3f} {item['label']}, status {item['status']}, "
            f"{len(item['captures'])} capture(s), latest {latest.get('captured_at')} "
            f"SHA-256 {latest.get('sha256')}"
        )


@case_app.command("add")
def case_add(
    ctx: typer.Context,
    case_id: CaseId,
    platform: Annotated[str | None, typer.Option(help="The account's platform.")] = None,
    handle: Annotated[str | None, typer.Option(help="The account's handle.")] = None,
    from_check: Annotated[
        bool, typer.Option("--from-check", help="Add every match of a check of the victim.")
    ] = False,
    top_k: TopKOption = 10,
    min_score: MinScoreOption = None,
    scan: Annotated[
        str | None, typer.Option("--scan", help="A scan job's id: add its result line's accounts.")
    ] = None,
    line: Annotated[
        int | None, typer.Option("--line", min=0, help="The scan's result line (0 is the first).")
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Add accounts to a case, each captured as it is now (again if already in the case)."""
    from service.cases.service import AddItems

    settings = _setup(ctx, data_dir)
    request = AddItems(
        platform=platform,
        handle=handle,
        from_check=from_check,
        top_k=top_k,
        min_score=min_score,
        scan_id=scan,
        scan_line=line,
    )
    with _fail_cleanly(_err_console()), _open_engine(ctx, settings) as engine:
        added = engine.cases.add(_operator(), case_id, request)
    if not added:
        typer.echo("nothing to add: the check found no match")
    for entry in added:
        content = entry.capture.content()
        verb = "added" if entry.new_item else "captured again"
        typer.echo(
            f"{verb} item {entry.item.id}: {entry.item.platform}/{entry.item.handle} score "
            f"{content['score']:.3f} {content['label']}, capture {entry.capture.id} SHA-256 "
            f"{entry.capture.sha256}"
        )


@case_app.command("capture")
def case_capture(
    ctx: typer.Context,
    case_id: CaseId,
    item_id: Annotated[int, typer.Argument(min=1, help="The item's id.")],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Capture an item again, as it is now; earlier captures stay as they were."""
    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_engine(ctx, settings) as engine:
        captured = engine.cases.capture(_operator(), case_id, item_id)
    typer.echo(
        f"captured item {item_id} again: capture {captured.capture.id} SHA-256 "
        f"{captured.capture.sha256}"
    )


@case_app.command("update")
def case_update(
    ctx: typer.Context,
    case_id: CaseId,
    item: Annotated[
        int | None, typer.Option("--item", min=1, help="Change this item, not the case.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="open, reported, taken_down or closed.")
    ] = None,
    notes: Annotated[str | None, typer.Option(help="New notes (they replace the old).")] = None,
    title: Annotated[str | None, typer.Option(help="A new title (cases only).")] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Change the notes or status of a case or of one of its items."""
    from service.cases.service import update_case, update_item
    from service.store import CaseStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        cases = CaseStore(store, signer=_audit_signer(settings))
        if item is None:
            case = update_case(cases, _operator(), case_id, title=title, notes=notes, status=status)
            typer.echo(f"case {case.id}: status {case.status}")
        else:
            if title is not None:
                raise InvalidInputError("--title belongs to a case, not an item")
            row = update_item(cases, _operator(), case_id, item, notes=notes, status=status)
            typer.echo(f"case {case_id} item {row.id}: status {row.status}")


@case_app.command("export")
def case_export(
    ctx: typer.Context,
    case_id: CaseId,
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="bundle (a signed ZIP), pdf, csv or json.")
    ] = "bundle",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Export a case's evidence; recorded in the audit log."""
    from service.evidence import EXPORT_FORMATS

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()):
        if fmt not in EXPORT_FORMATS:
            raise InvalidInputError(f"--format must be one of {', '.join(EXPORT_FORMATS)}")
        with _open_engine(ctx, settings) as engine:
            export = engine.cases.export(_operator(), case_id, fmt)  # type: ignore[arg-type]
        try:
            out.write_bytes(export.data)
        except OSError as exc:
            raise InvalidInputError(f"{out}: cannot be written: {exc.strerror or exc}") from None
    typer.echo(f"wrote {out} ({len(export.data)} bytes, SHA-256 {export.sha256})")


@evidence_app.command("verify")
def evidence_verify(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle (.zip).", dir_okay=False)],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The service's public key (PEM) to require, instead of the bundle's own.",
            dir_okay=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every digest and both signatures of a bundle; name each file that does not
    match. Exit 0 when all match, 1 when anything does not, 2 when it cannot be read."""
    from dataclasses import asdict

    from service.evidence.bundle import verify_bundle_file
    from service.evidence.signing import load_public_key

    _setup(ctx, DEFAULT_DATA_DIR, make_data_dir=False)
    with _fail_cleanly(_err_console()):
        expected = None
        if public_key is not None:
            try:
                expected = load_public_key(public_key.read_bytes())
            except OSError as exc:
                raise InvalidInputError(f"--public-key {public_key}: {exc.strerror}") from None
        report = verify_bundle_file(bundle, expected_key=expected)
    if as_json:
        _print_json({**asdict(report), "ok": report.ok})
    else:
        for problem in report.problems:
            typer.echo(f"MISMATCH {problem}")
        typer.echo(
            f"{'OK' if report.ok else 'FAILED'}: {bundle}: {report.files_checked} files and "
            f"{report.captures_checked} captures checked; signed by "
            f"{report.key_fingerprint or 'an unreadable key'}"
        )
        if report.ok and public_key is None:
            typer.echo(
                "compare that fingerprint with GET /v1/evidence/public-key of the service "
                "(or pass --public-key)"
            )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_REJECTED)


@evidence_app.command("public-key")
def evidence_public_key(ctx: typer.Context, data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Print the signing key's public half (PEM) and fingerprint; creates the key if none."""
    from service.evidence.signing import EvidenceSigner

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()):
        signer = EvidenceSigner(settings.resolved_evidence_key_file)
        typer.echo(signer.public_key_pem.rstrip())
        typer.echo(signer.fingerprint)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="A hash recorded earlier (a bundle manifest's audit_head): must still be there.",
        ),
    ] = None,
    public_keys: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="A public key (PEM) entries may be signed with; repeat it for earlier keys. "
            "Default: the service's signing key.",
            dir_okay=False,
        ),
    ] = None,
    signed_from: Annotated[
        int | None,
        typer.Option(
            "--signed-from",
            min=1,
            help="The entry the log is signed from, as an earlier check printed it: an "
            "unsigned entry from there on fails. Default: as recorded beside the signing key "
            "when it began signing.",
        ),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Check the audit log's hash chain and every entry's signature: names every edited,
    removed, moved or re-signed entry, and the first entry that fails. Exit 0 when it holds,
    1 when it does not."""
    from service.cases.audit import verify_chain
    from service.evidence.signing import load_public_key
    from service.store import AuditStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()):
        keys = []
        for path in public_keys or []:
            try:
                keys.append(load_public_key(path.read_bytes()))
            except OSError as exc:
                raise InvalidInputError(f"--public-key {path}: {exc.strerror}") from None
        signer = _audit_signer(settings)
        if not public_keys:
            service_key = signer.existing_public_key()
            if service_key is None:
                typer.echo(
                    f"NOTE no signing key at {signer.path}: signatures cannot be checked "
                    "(give the service's with --public-key)"
                )
            else:
                keys.append(service_key)
        if signed_from is None:
            signed_from = signer.signing_began()
        with _open_store(settings) as store:
            report = verify_chain(
                AuditStore(store, signer=signer).entries(),
                public_keys=keys,
                expected_head=head,
                signed_from=signed_from,
            )
    for problem in report.problems:
        typer.echo(f"BROKEN {problem}")
    if report.unsigned is not None:
        first, last = report.unsigned
        covered = (
            "the signed entry after them covers them through its hash"
            if last < report.head_seq
            else "no signature covers them yet: the next entry will"
        )
        typer.echo(f"UNSIGNED entries {first}-{last}: written before the log was signed; {covered}")
    summary = f"{report.entries} entries"
    if report.unsigned is None and report.entries:
        summary += ", signed from entry 1"
    elif report.unsigned is not None and report.unsigned[1] < report.head_seq:
        summary += f", signed from entry {report.unsigned[1] + 1}"
    if report.first_failure is not None:
        summary += f", the first that fails is entry {report.first_failure}"
    typer.echo(
        f"{'OK' if report.ok else 'FAILED'}: {summary}; head {report.head_seq} {report.head_hash}"
    )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_REJECTED)


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest N entries.")] = 50,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """The newest entries of the audit log: time, who, action, target, details."""
    from service.store import AuditStore

    settings = _setup(ctx, data_dir)
    with _fail_cleanly(_err_console()), _open_store(settings) as store:
        entries = AuditStore(store, signer=_audit_signer(settings)).tail(limit=limit)
    for entry in entries:
        if as_json:
            _print_json(entry.document())
        else:
            typer.echo(
                f"{entry.seq}\t{entry.at}\t{entry.actor}\t{entry.action}\t{entry.target}\t"
                f"{entry.details}"
            )


def _audit_signer(settings: Settings) -> EvidenceSigner:
    """The key that signs audit entries (the evidence key); it is read, or created, only when
    an entry is first written."""
    from service.evidence.signing import EvidenceSigner

    return EvidenceSigner(settings.resolved_evidence_key_file)


@contextmanager
def _open_store(settings: Settings) -> Iterator[Store]:
    from service.store import Store

    store = Store.open(settings.resolved_database_url)
    try:
        yield store
    finally:
        store.close()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def main() -> None:
    """Entry point of the `clonefinder` console script."""
    app()


# --- helpers -------------------------------------------------------------------------------


def _setup(
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


def _open_engine(ctx: typer.Context, settings: Settings) -> AbstractContextManager[Engine]:
    obj = ctx.ensure_object(dict)
    opener: EngineOpener = obj.get("open_engine") or _default_opener
    return opener(settings)


def _err_console() -> Console:
    return Console(stderr=True)


@contextmanager
def _fail_cleanly(console: Console) -> Iterator[None]:
    """Turn a domain error into its message on stderr and the mapped exit status."""
    try:
        yield
    except CloneFinderError as exc:
        console.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None


@contextmanager
def _progress(
    console: Console, label: str, total: int | None
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (the callback takes records done so far); nothing otherwise."""
    if not console.is_terminal:
        yield None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


def _count(file: Path) -> int:
    # A second pass only on a terminal, where a bar with a total is worth it.
    return sum(1 for _ in read_records(file))


@contextmanager
def _open_output(out: Path) -> Iterator[Any]:
    try:
        handle = out.open("w", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{out}: cannot be written: {exc.strerror or exc}") from None
    with handle:
        yield handle


def _query_record(
    *,
    profile: str | None,
    platform: str | None,
    handle: str | None,
    name: str | None,
    bio: str | None,
    avatar: Path | None,
) -> tuple[dict[str, Any], Path | None]:
    """The check's raw record: `--profile` first, then the single options over it."""
    record: dict[str, Any] = {}
    base_dir: Path | None = None
    if profile is not None:
        record, base_dir = _load_profile(profile)
    for key, value in (
        ("platform", platform),
        ("handle", handle),
        ("display_name", name),
        ("bio", bio),
    ):
        if value is not None:
            record[key] = value
    if avatar is not None:
        if not avatar.is_file():
            raise InvalidInputError(f"--avatar {avatar}: no such file")
        record["avatar_path"] = str(avatar.resolve())
        base_dir = base_dir or Path.cwd()
    if not record:
        raise InvalidInputError(
            "nothing to check: give --platform/--handle, --name, --bio, --avatar or --profile"
        )
    return record, base_dir


def _load_profile(value: str) -> tuple[dict[str, Any], Path | None]:
    text = value.strip()
    base_dir: Path | None = None
    if not text.startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise InvalidInputError(f"--profile {value}: neither inline JSON nor a readable file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"--profile {value}: cannot be read: {exc}") from None
        base_dir = path.parent.resolve()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--profile: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InvalidInputError("--profile: must be one JSON object")
    return record, base_dir


def _print_result(result: dict[str, Any], threshold: float) -> None:
    console = Console()
    if not console.is_terminal:
        # No window to fit when piped: a wide table keeps handles and scores on one line.
        console = Console(width=160)
    query = result.get("query") or {}
    who = "/".join(str(query[k]) for k in ("platform", "handle") if query.get(k)) or "the query"
    matches = result.get("matches") or []
    if not matches:
        console.print(f"no account scored {threshold:.2f} or more against {who}", markup=False)
        return
    table = Table(title=f"likely impersonators of {who}")
    for column in ("#", "platform", "handle", "display name", "score", "label", "copy"):
        table.add_column(column, no_wrap=column != "display name")
    table.add_column("reasons", overflow="fold", ratio=1)
    for rank, match in enumerate(matches, start=1):
        candidate = match.get("profile") or {}
        table.add_row(
            str(rank),
            str(candidate.get("platform", "")),
            str(candidate.get("handle", "")),
            str(candidate.get("display_name") or ""),
            f"{match['score']:.3f}",
            str(match.get("label", "")),
            str(match.get("likely_impersonator", "")),
            "; ".join(match.get("reasons", [])[:3]),
        )
    console.print(table)


if __name__ == "__main__":
    main()
