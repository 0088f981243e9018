"""`make demo`: the port and address are the caller's to choose, and a busy port is said at
once, with what to do, before the model is loaded."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_serves_on_the_host_and_port_given() -> None:
    planned = make("-n", "demo", "HOST=127.0.0.2", "PORT=8123").stdout
    serve = next(line for line in planned.splitlines() if "clonefinder serve" in line)
    assert "--demo" in serve
    assert "--host '127.0.0.2'" in serve and "--port '8123'" in serve


def test_demo_on_a_busy_port_says_so_and_names_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = make("demo", f"PORT={port}")
    assert answer.returncode != 0
    assert f"port {port} on 127.0.0.1 is in use" in answer.stderr
    assert f"make demo PORT={port + 1}" in answer.stderr
    # Refused before the server started: it logs its data folder first thing.
    assert "data dir" not in answer.stderr + answer.stdout
