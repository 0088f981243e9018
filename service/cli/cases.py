"""Cases: open them, add and capture accounts, update and export them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from models.errors import InvalidInputError, NotFoundError
from service.cli.common import (
    DataDirOption,
    JsonFlag,
    MinScoreOption,
    TopKOption,
    audit_signer,
    err_console,
    fail_cleanly,
    open_engine,
    open_store,
    print_json,
    setup,
)

case_app = typer.Typer(
    name="case",
    help="Cases: a victim, the accounts that impersonate it, captures and evidence exports.",
    no_args_is_help=True,
)

CaseId = Annotated[int, typer.Argument(min=1, help="The case's id (see `case list`).")]


def _operator() -> Any:
    import getpass

    from service.cases.service import Operator

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return Operator.local(user)


@case_app.command("create")
def case_create(
    ctx: typer.Context,
    platform: Annotated[str, typer.Option(help="The victim's platform.")],
    handle: Annotated[str, typer.Option(help="The victim's handle (a stored profile).")],
    title: Annotated[str | None, typer.Option(help="A title (default: from the victim).")] = None,
    notes: Annotated[str | None, typer.Option(help="Notes.")] = None,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Open a case for a victim, a stored profile named by platform and handle."""
    from service.cases.service import case_document

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_engine(ctx, settings) as engine:
        case = engine.cases.create(
            _operator(), platform=platform, handle=handle, title=title, notes=notes
        )
    if as_json:
        print_json(case_document(case))
        return
    typer.echo(f"opened case {case.id}: {case.title}")


@case_app.command("list")
def case_list(
    ctx: typer.Context, as_json: JsonFlag = False, data_dir: DataDirOption = None
) -> None:
    """List every case: id, status, victim, title."""
    from service.cases.service import case_document
    from service.store import CaseStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        rows = CaseStore(store, signer=audit_signer(settings)).cases(key_id=None)
    if as_json:
        for row in rows:
            print_json(case_document(row))
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
    data_dir: DataDirOption = None,
) -> None:
    """Show a case, its items and their captures."""
    from service.cases.service import case_document, item_document
    from service.store import CaseStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        cases = CaseStore(store, signer=audit_signer(settings))
        case = cases.case(case_id, key_id=None)
        if case is None:
            raise NotFoundError(f"no case {case_id}")
        captures: dict[int, list[Any]] = {}
        for capture in cases.captures(case_id):
            captures.setdefault(capture.item_id, []).append(capture)
        items = [item_document(i, captures.get(i.id, [])) for i in cases.items(case_id)]
    if as_json:
        print_json({**case_document(case), "items": items})
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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Add accounts to a case, each captured as it is now (again if already in the case)."""
    from service.cases.service import AddItems, capture_document

    settings = setup(ctx, data_dir)
    request = AddItems(
        platform=platform,
        handle=handle,
        from_check=from_check,
        top_k=top_k,
        min_score=min_score,
        scan_id=scan,
        scan_line=line,
    )
    with fail_cleanly(err_console()), open_engine(ctx, settings) as engine:
        added = engine.cases.add(_operator(), case_id, request)
    if as_json:
        # As the HTTP API answers POST /v1/cases/{id}/items.
        print_json(
            {
                "added": [
                    {
                        "item_id": entry.item.id,
                        "new_item": entry.new_item,
                        "platform": entry.item.platform,
                        "handle": entry.item.handle,
                        "capture": capture_document(entry.capture),
                    }
                    for entry in added
                ]
            }
        )
        return
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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Capture an item again, as it is now; earlier captures stay as they were."""
    from service.cases.service import capture_document

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_engine(ctx, settings) as engine:
        captured = engine.cases.capture(_operator(), case_id, item_id)
    if as_json:
        print_json(capture_document(captured.capture))
        return
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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Change the notes or status of a case or of one of its items."""
    from service.cases.service import case_document, item_document, update_case, update_item
    from service.store import CaseStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        cases = CaseStore(store, signer=audit_signer(settings))
        if item is None:
            case = update_case(cases, _operator(), case_id, title=title, notes=notes, status=status)
            if as_json:
                print_json(case_document(case))
            else:
                typer.echo(f"case {case.id}: status {case.status}")
        else:
            if title is not None:
                raise InvalidInputError("--title belongs to a case, not an item")
            row = update_item(cases, _operator(), case_id, item, notes=notes, status=status)
            if as_json:
                print_json(item_document(row, cases.captures(case_id, item_id=row.id)))
            else:
                typer.echo(f"case {case_id} item {row.id}: status {row.status}")


@case_app.command("export")
def case_export(
    ctx: typer.Context,
    case_id: CaseId,
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[
        str, typer.Option("--format", help="bundle (a signed ZIP), pdf, csv or json.")
    ] = "bundle",
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export a case's evidence; recorded in the audit log."""
    from service.evidence import EXPORT_FORMATS

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()):
        if fmt not in EXPORT_FORMATS:
            raise InvalidInputError(f"--format must be one of {', '.join(EXPORT_FORMATS)}")
        with open_engine(ctx, settings) as engine:
            export = engine.cases.export(_operator(), case_id, fmt)  # type: ignore[arg-type]
        try:
            out.write_bytes(export.data)
        except OSError as exc:
            raise InvalidInputError(f"{out}: cannot be written: {exc.strerror or exc}") from None
    if as_json:
        print_json(
            {
                "case_id": case_id,
                "format": fmt,
                "out": str(out),
                "bytes": len(export.data),
                "sha256": export.sha256,
            }
        )
        return
    typer.echo(f"wrote {out} ({len(export.data)} bytes, SHA-256 {export.sha256})")
