"""A `clonefinder serve` process of a test's own, with its own data dir and settings.

The session's `api_server` (tests/conftest.py) serves most API tests; a test that needs other
settings (a tiny rate limit) or must not leave data in the shared store (fuzzing) starts one
of these. `restart()` is a second start on the same data dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO_ROOT, _free_port, _wait_until_ready, stop_process


class ServerProcess:
    def __init__(self, root: Path, *, env: dict[str, str]) -> None:
        self.data_dir = root / "data"
        self.log_path = root / "server.log"
        self.env = {**os.environ, **env}
        self.env.pop("CLONEFINDER_DATA_DIR", None)
        self.base_url = ""
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text(encoding="ascii").strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def start(self) -> None:
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "service.cli", "serve"]
        command += ["--data-dir", str(self.data_dir), "--port", str(port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        _wait_until_ready(self._process, self.base_url, self.log_path)
        self.starts += 1

    def stop(self) -> None:
        if self._process is None:
            return
        stop_process(self._process)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def server_process(root: Path, *, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A started server that is stopped on exit, whatever happened."""
    server = ServerProcess(root, env=env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
