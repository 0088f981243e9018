"""Evidence bundles and the audit log: verify them, show the signing key, list entries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from models.errors import InvalidInputError
from service.cli.common import (
    EXIT_VERIFICATION_FAILED,
    DataDirOption,
    JsonFlag,
    audit_signer,
    err_console,
    fail_cleanly,
    open_store,
    print_json,
    say,
    setup,
)
from service.core.errors import EXIT_OK

evidence_app = typer.Typer(
    name="evidence", help="Check evidence bundles; show the signing key.", no_args_is_help=True
)
audit_app = typer.Typer(
    name="audit", help="Read and check the tamper-evident audit log.", no_args_is_help=True
)


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
    match. Exit 0 when all match, 5 when anything does not, 2 when it cannot be read."""
    from dataclasses import asdict

    from service.evidence.bundle import verify_bundle_file
    from service.evidence.signing import load_public_key

    setup(ctx, None, make_data_dir=False)
    with fail_cleanly(err_console()):
        expected = None
        if public_key is not None:
            try:
                expected = load_public_key(public_key.read_bytes())
            except OSError as exc:
                raise InvalidInputError(f"--public-key {public_key}: {exc.strerror}") from None
        report = verify_bundle_file(bundle, expected_key=expected)
    if as_json:
        print_json({**asdict(report), "ok": report.ok})
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
    raise typer.Exit(EXIT_OK if report.ok else EXIT_VERIFICATION_FAILED)


@evidence_app.command("public-key")
def evidence_public_key(
    ctx: typer.Context, as_json: JsonFlag = False, data_dir: DataDirOption = None
) -> None:
    """Print the signing key's public half (PEM) and fingerprint; creates the key if none."""
    from service.evidence.signing import EvidenceSigner

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()):
        signer = EvidenceSigner(settings.resolved_evidence_key_file)
        pem, fingerprint = signer.public_key_pem, signer.fingerprint
    if as_json:
        # As GET /v1/evidence/public-key answers.
        print_json({"algorithm": "Ed25519", "public_key_pem": pem, "fingerprint": fingerprint})
        return
    typer.echo(pem.rstrip())
    typer.echo(fingerprint)


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
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """Check the audit log's hash chain and every entry's signature: names every edited,
    removed, moved or re-signed entry, and the first entry that fails. Exit 0 when it holds,
    5 when it does not."""
    from service.cases.audit import verify_chain
    from service.evidence.signing import load_public_key
    from service.store import AuditStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()):
        keys = []
        for path in public_keys or []:
            try:
                keys.append(load_public_key(path.read_bytes()))
            except OSError as exc:
                raise InvalidInputError(f"--public-key {path}: {exc.strerror}") from None
        signer = audit_signer(settings)
        if not public_keys:
            service_key = signer.existing_public_key()
            if service_key is None:
                say(
                    f"NOTE no signing key at {signer.path}: signatures cannot be checked "
                    "(give the service's with --public-key)",
                    as_json=as_json,
                )
            else:
                keys.append(service_key)
        if signed_from is None:
            signed_from = signer.signing_began()
        with open_store(settings) as store:
            report = verify_chain(
                AuditStore(store, signer=signer).entries(),
                public_keys=keys,
                expected_head=head,
                signed_from=signed_from,
            )
    exit_status = EXIT_OK if report.ok else EXIT_VERIFICATION_FAILED
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "signed": report.signed,
                "unsigned": list(report.unsigned) if report.unsigned else None,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "expected_head_found": report.anchor_found,
                "first_failure": report.first_failure,
                "problems": report.problems,
            }
        )
        raise typer.Exit(exit_status)
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
    raise typer.Exit(exit_status)


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest N entries.")] = 50,
    as_json: JsonFlag = False,
    data_dir: DataDirOption = None,
) -> None:
    """The newest entries of the audit log: time, who, action, target, details."""
    from service.store import AuditStore

    settings = setup(ctx, data_dir)
    with fail_cleanly(err_console()), open_store(settings) as store:
        entries = AuditStore(store, signer=audit_signer(settings)).tail(limit=limit)
    for entry in entries:
        if as_json:
            print_json(entry.document())
        else:
            typer.echo(
                f"{entry.seq}\t{entry.at}\t{entry.actor}\t{entry.action}\t{entry.target}\t"
                f"{entry.details}"
            )
