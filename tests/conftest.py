"""Shared fixtures: a real `clonefinder serve` process for tests of the HTTP API; and under
`CI=true`, every skip not listed in tests/requirements.py made a failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.requirements import IN_CI, allowed_in_ci

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 90.0

# The session server's limits are small so that 413 answers are cheap to provoke.
SERVER_MAX_BODY_BYTES = 2_000_000
SERVER_MAX_RECORDS = 50
SERVER_MAX_IMAGES = 10
SERVER_RATE_LIMIT_PER_MINUTE = 1_000_000


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    data_dir: Path
    log_path: Path
    max_body_bytes: int
    max_records: int
    admin_key: str  # written by the server at first start to DATA_DIR/admin.key

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate as the admin key the server created."""
        return {"Authorization": f"Bearer {self.admin_key}"}

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(encoding="utf-8", errors="replace")
            pytest.fail(f"server exited with {process.returncode} before it was ready:\n{log}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    log = log_path.read_text(encoding="utf-8", errors="replace")
    pytest.fail(f"server not ready after {SERVER_START_TIMEOUT_S:.0f} s:\n{log}")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    return message.removeprefix("Skipped: ")


def _fail_a_skip_ci_does_not_allow(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not allowed_in_ci(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, where nothing the tests need may be missing: {reason}\n"
            "(the skips CI allows are listed in tests/requirements.py)"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_a_skip_ci_does_not_allow(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield  # a module that skips as a whole (`importorskip` at its top)
    _fail_a_skip_ci_does_not_allow(report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _shared_model_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One ONNX export for the whole session: every server process started by a test
    inherits this, instead of exporting the model again into its own fresh data dir."""
    folder = tmp_path_factory.mktemp("model-cache")
    os.environ.setdefault("CLONEFINDER_MODEL_CACHE_DIR", str(folder))


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`python -m service.cli serve` on a free port with a fresh data dir, for the session."""
    root = tmp_path_factory.mktemp("api-server")
    data_dir = root / "data"
    log_path = root / "server.log"
    port = _free_port()
    env = {
        **os.environ,
        "CLONEFINDER_AVATAR_FETCH_ALLOW_PRIVATE": "1",
        "CLONEFINDER_MAX_BODY_BYTES": str(SERVER_MAX_BODY_BYTES),
        "CLONEFINDER_MAX_RECORDS_PER_REQUEST": str(SERVER_MAX_RECORDS),
        # Keys: a limit no test reaches (tests/service/test_auth.py runs its own tiny one),
        # and few images per request so that 413 is cheap to provoke.
        "CLONEFINDER_RATE_LIMIT_PER_MINUTE": str(SERVER_RATE_LIMIT_PER_MINUTE),
        "CLONEFINDER_RATE_LIMIT_BURST": str(SERVER_RATE_LIMIT_PER_MINUTE),
        "CLONEFINDER_MAX_IMAGES_PER_REQUEST": str(SERVER_MAX_IMAGES),
        # Webhooks: retries and polling in tens of milliseconds, so deliveries settle fast.
        "CLONEFINDER_WEBHOOK_RETRY_BASE_S": "0.05",
        "CLONEFINDER_WEBHOOK_POLL_INTERVAL_S": "0.1",
    }
    env.pop("CLONEFINDER_DATA_DIR", None)
    command = [sys.executable, "-m", "service.cli", "serve"]
    command += ["--data-dir", str(data_dir), "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, url, log_path)
        key_file = data_dir / "admin.key"
        admin_key = key_file.read_text(encoding="utf-8").strip() if key_file.exists() else ""
        yield RunningServer(
            url, data_dir, log_path, SERVER_MAX_BODY_BYTES, SERVER_MAX_RECORDS, admin_key
        )
    finally:
        stop_process(process)
