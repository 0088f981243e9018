"""The `clonefinder` command line (interface.md section 2).

Commands build `Settings` once and open the engine only when they need it: loading the
embedding model takes seconds, so `--help` and unreadable input files answer at once. Each
command group is a module of this package; this one puts them together under one `app`.
"""

from __future__ import annotations

# Importing the modules of the top-level commands registers them on `app`, in this order.
from service.cli import profiles, server  # noqa: F401
from service.cli.cases import case_app
from service.cli.common import app
from service.cli.evidence import audit_app, evidence_app
from service.cli.keys import keys_app

app.add_typer(keys_app, name="keys")
app.add_typer(case_app, name="case")
app.add_typer(evidence_app, name="evidence")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Entry point of the `clonefinder` console script."""
    app()


__all__ = ["app", "main"]
