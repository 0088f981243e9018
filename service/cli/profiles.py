"""Profiles: ingest, check, scan (here or on a server) and reindex."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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

from models.errors import InvalidInputError
from service.cli.common import (
    DataDirOption,
    JsonFlag,
    MinScoreOption,
    TopKOption,
    app,
    err_console,
    fail_cleanly,
    open_engine,
    print_json,
    setup,
)
from service.core.errors import EXIT_OK, EXIT_SOME_REJECTED
from service.matching.own_accounts import MAX_OWN_ACCOUNTS, own_accounts_of
from service.records import read_records

logger = logging.getLogger(__name__)

MAX_REASONS_SHOWN = 50


@app.command()
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv or .json file of profiles.")],
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Upsert every profile of FILE; exit 0 if all were kept, 1 if some were rejected."""
    settings = setup(ctx, data_dir)
    console = err_console()
    with fail_cleanly(console):
        records = read_records(file, max_record_bytes=settings.max_record_bytes)
        total = _count(file) if console.is_terminal else None
        with open_engine(ctx, settings) as engine, _progress(console, "ingesting", total) as tick:
            report = engine.ingest(records, base_dir=file.parent.resolve(), progress=tick)
    rejected = [outcome for outcome in report.outcomes if outcome.status == "rejected"]
    exit_status = EXIT_SOME_REJECTED if rejected else EXIT_OK
    if as_json:
        print_json(
            {
                "file": str(file),
                "records": len(report.outcomes),
                "created": report.created,
                "updated": report.updated,
                "rejected": report.rejected,
                "rejections": [
                    {
                        "where": outcome.where,
                        "platform": outcome.platform,
                        "handle": outcome.handle,
                        "error": outcome.error,
                    }
                    for outcome in rejected
                ],
            }
        )
        raise typer.Exit(exit_status)
    typer.echo(
        f"ingested {report.created}, updated {report.updated}, rejected {report.rejected} "
        f"(of {len(report.outcomes)} records in {file})"
    )
    for outcome in rejected[:MAX_REASONS_SHOWN]:
        message = str((outcome.error or {}).get("message", "rejected"))
        if not message.startswith(outcome.where):
            message = f"{outcome.where}: {message}"
        typer.echo(f"  {message}")
    if len(rejected) > MAX_REASONS_SHOWN:
        typer.echo(f"  ... and {len(rejected) - MAX_REASONS_SHOWN} more")
    raise typer.Exit(exit_status)


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
    mine: Annotated[
        list[str] | None,
        typer.Option(
            "--mine",
            metavar="PLATFORM:HANDLE",
            help=f"One of the person's own accounts (repeatable, at most {MAX_OWN_ACCOUNTS}): "
            "never a match, and compared as the person too.",
        ),
    ] = None,
    top_k: TopKOption = 10,
    min_score: MinScoreOption = None,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Find the likely impersonators of one identity (any of the options will do)."""
    settings = setup(ctx, data_dir)
    console = err_console()
    with fail_cleanly(console):
        record, base_dir = _query_record(
            profile=profile, platform=platform, handle=handle, name=name, bio=bio, avatar=avatar
        )
        own_accounts = own_accounts_of(mine or [])
        if len(own_accounts) > MAX_OWN_ACCOUNTS:
            raise InvalidInputError(
                f"--mine: at most {MAX_OWN_ACCOUNTS} accounts, got {len(own_accounts)}"
            )
        with open_engine(ctx, settings) as engine:
            result = engine.check(
                record,
                top_k=top_k,
                min_score=min_score,
                base_dir=base_dir,
                own_accounts=own_accounts,
            )
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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Check every profile of FILE; one result record per input, in order, to OUT (JSON Lines)."""
    settings = setup(ctx, data_dir)
    console = err_console()
    if server is not None:
        _scan_on_server(
            console,
            file,
            out,
            server=server,
            key=key,
            top_k=top_k,
            min_score=min_score,
            as_json=as_json,
        )
    scanned = flagged = bad = 0
    with fail_cleanly(console):
        records = read_records(file, max_record_bytes=settings.max_record_bytes)
        if out.resolve() == file.resolve():
            raise InvalidInputError(f"--out {out} would overwrite the input file")
        total = _count(file) if console.is_terminal else None
        with (
            open_engine(ctx, settings) as engine,
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
    if as_json:
        print_json(_scan_summary(scanned=scanned, flagged=flagged, rejected=bad, out=out))
    else:
        typer.echo(
            f"scanned {scanned} profiles: {flagged} with possible clones, {bad} rejected; "
            f"results in {out}"
        )
    raise typer.Exit(EXIT_SOME_REJECTED if bad else EXIT_OK)


@app.command()
def reindex(ctx: typer.Context, as_json: JsonFlag = False, data_dir: DataDirOption = None) -> None:
    """Rebuild every index from the store (the store is the source of truth)."""
    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_engine(ctx, settings) as engine:
        count = engine.reindex()
    if as_json:
        print_json({"profiles": count, "data_dir": str(settings.data_dir)})
        return
    typer.echo(f"reindexed {count} profiles in {settings.data_dir}")


def _scan_summary(
    *, scanned: int, flagged: int, rejected: int, out: Path, **remote: str
) -> dict[str, Any]:
    """The --json summary of a scan; `remote` names the server and job of `scan --server`."""
    return {
        "scanned": scanned,
        "flagged": flagged,
        "rejected": rejected,
        "out": str(out),
        **remote,
    }


def _scan_on_server(
    console: Console,
    file: Path,
    out: Path,
    *,
    server: str,
    key: str | None,
    top_k: int,
    min_score: float | None,
    as_json: bool,
) -> None:
    """`scan --server`: upload FILE, follow the job with a progress bar, write its results to
    OUT in input order; exits like a local scan."""
    from service.scans.client import remote_scan

    with fail_cleanly(console):
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
    if as_json:
        print_json(
            _scan_summary(
                scanned=summary.lines,
                flagged=summary.flagged,
                rejected=summary.errors,
                out=out,
                server=server,
                job_id=summary.job_id,
            )
        )
    else:
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
    own = result.get("own_accounts") or []
    if own:
        named = ", ".join(
            f"{account['platform']}/{account['handle']}"
            + ("" if account.get("found") else " (not stored)")
            for account in own
        )
        console.print(f"your own accounts, compared too and never listed: {named}", markup=False)
        who += " and your own accounts"
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
    yours = [match for match in matches if match.get("may_be_yours")]
    for match in yours:
        candidate = match.get("profile") or {}
        console.print(
            f"{candidate.get('platform')}/{candidate.get('handle')} may be yours: the very same "
            "photo and name, and it looks like the original. If it is, add "
            f"--mine {candidate.get('platform')}:{candidate.get('handle')}",
            markup=False,
        )
