"""API keys: only the store is opened (no model), so these answer at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from service.cli.common import (
    DataDirOption,
    JsonFlag,
    err_console,
    fail_cleanly,
    open_store,
    print_json,
    setup,
)

if TYPE_CHECKING:
    from datetime import datetime

    from service.store import KeyRow


keys_app = typer.Typer(
    name="keys",
    help="Create, list and revoke the API keys of the HTTP API.",
    no_args_is_help=True,
)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    role: Annotated[
        str,
        typer.Option("--role", help="individual, platform, investigator or admin."),
    ],
    name: Annotated[str, typer.Option("--name", help="A unique name for the key's holder.")],
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a key; it is printed once, alone on the last line (or as the JSON's "key"), and
    never stored."""
    from service.auth.keys import create_key
    from service.store import KeyStore

    settings = setup(ctx, data_dir)
    console = err_console()
    with fail_cleanly(console), open_store(settings) as store:
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
    if as_json:
        print_json({**_key_document(row), "key": created.key})
        return
    typer.echo(created.key)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per key, one per line.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """List the keys: name, role, the key's first characters, created, last used, revoked."""
    from service.store import KeyStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        rows = KeyStore(store).list()
    if as_json:
        for row in rows:
            print_json(_key_document(row))
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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key: running servers refuse it from their next request."""
    from service.store import KeyStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        row = KeyStore(store).revoke(name)
    if as_json:
        print_json(_key_document(row))
        return
    typer.echo(f"revoked key {row.name!r} (role {row.role}) at {_when(row.revoked_at)}")


def _key_document(row: KeyRow) -> dict[str, Any]:
    """What may be shown of a key: never the key, nor its hash."""
    return {
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
