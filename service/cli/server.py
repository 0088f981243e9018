"""Long-running processes: the HTTP API and the bulk scan workers."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Annotated

import typer

from models.errors import ConfigurationError
from service.cli.common import (
    DataDirOption,
    app,
    err_console,
    fail_cleanly,
    setup,
)

logger = logging.getLogger(__name__)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the bundled demo profiles if the store is empty.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Run the HTTP API (docs at /docs)."""
    import uvicorn

    from service.api.app import create_app

    settings = setup(ctx, data_dir, level=logging.INFO)
    logger.info("data dir: %s", settings.data_dir.resolve())
    # The port is taken before the model and indexes load, so a busy port fails at once.
    with fail_cleanly(err_console()):
        listening = _listen(host, port)
    # The app's lifespan opens and closes the engine: uvicorn re-raises SIGTERM after a
    # graceful shutdown, so code after the server's run would not run.
    # uvicorn believes X-Forwarded-For from loopback unless told otherwise, which would let
    # anyone behind a local proxy choose their client address: only the configured proxies.
    config = uvicorn.Config(
        create_app(settings, load_demo=demo),
        host=host,
        port=port,
        log_config=None,
        forwarded_allow_ips=[str(network) for network in settings.trusted_proxies],
    )
    uvicorn.Server(config).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a ConfigurationError that says how to choose another."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} on {host} is in use; choose another with --port {port + 1}"
        elif exc.errno == errno.EACCES:
            reason = f"port {port} needs more privileges; choose one above 1023 with --port"
        else:
            reason = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise ConfigurationError(reason) from exc
    listening.set_inheritable(True)
    return listening


@app.command()
def worker(ctx: typer.Context, data_dir: DataDirOption = None) -> None:
    """Do bulk scan jobs from the store until stopped (SIGTERM or Ctrl-C).

    Any number of workers may run against one store, on this machine or others (with
    CLONEFINDER_DATABASE_URL); each takes chunks of the queued jobs. A stopped worker finishes
    the chunk in hand; a killed one's chunk is redone by another once its lease runs out.
    """
    import signal

    from service.matching.engine import Engine
    from service.scans.worker import ScanWorker

    settings = setup(ctx, data_dir, level=logging.INFO)
    with fail_cleanly(err_console()):
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
