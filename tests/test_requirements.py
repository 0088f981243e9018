"""Under `CI=true` a skip fails the run unless tests/requirements.py allows it; elsewhere the
same tests skip, with their reasons."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PROBES = {
    "test_probe.py": """
import pytest

from tests.requirements import SHARED_DATA_ABSENT


def test_allowed() -> None:
    pytest.skip(f"{SHARED_DATA_ABSENT} at /nowhere")


@pytest.mark.skipif(True, reason="PostgreSQL not reachable at 127.0.0.1:5432")
def test_marked() -> None:
    pass


@pytest.fixture
def browser() -> None:
    pytest.skip("no chromium: install Debian's package")


def test_in_a_fixture(browser: None) -> None:
    pass


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail() -> None:
    raise AssertionError
""",
    "test_whole_module.py": """
import pytest

pytest.importorskip("clonefinder_no_such_module", reason="an extra is not installed")


def test_never_collected() -> None:
    pass
""",
}


def _run_probes(folder: Path, *names: str, ci: str | None) -> tuple[int, str]:
    for name in names:
        (folder / name).write_text(PROBES[name], encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    command += ["-q", "-rA", "--rootdir", str(folder), *(str(folder / name) for name in names)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def _summary(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_off_ci_a_missing_requirement_skips(tmp_path: Path) -> None:
    code, output = _run_probes(tmp_path, *PROBES, ci=None)
    assert code == 0, output
    assert re.search(r"\b4 skipped, 1 xfailed\b", _summary(output)), output


def test_under_ci_only_the_listed_skips_pass(tmp_path: Path) -> None:
    code, output = _run_probes(tmp_path, "test_probe.py", ci="true")
    assert code == 1, output
    summary = _summary(output)
    # The skipif mark's and the fixture's fail at setup; the shared data's may skip.
    assert re.search(r"\b1 skipped, 1 xfailed, 2 errors\b", summary), output
    for reason in ("PostgreSQL not reachable", "no chromium"):
        assert (
            f"skipped under CI=true, where nothing the tests need may be missing: {reason}"
            in output
        )


def test_under_ci_a_module_that_skips_whole_is_a_collection_error(tmp_path: Path) -> None:
    code, output = _run_probes(tmp_path, "test_whole_module.py", ci="true")
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "ERROR test_whole_module.py" in output
    assert "an extra is not installed" in output
