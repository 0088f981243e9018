"""What the tests need from their machine, and the only skips allowed in CI.

Off CI, a test whose machine lacks something (PostgreSQL, chromium, poppler, the Noto fonts, a
Milvus server, the shared data) skips with a reason that says what is missing, so a fresh clone
on a laptop still runs the rest. Under `CI=true`, where `.ci/run` installs or starts all of it,
a skip fails its test unless its reason starts with one of `ALLOWED_IN_CI`: tests/conftest.py
holds every skip to this, however it was written (`skipif`, `pytest.skip`, `importorskip`), so
nothing missing can pass as green.
"""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# Reasons of skips that CI may report, each a prefix of the skip's reason.
SHARED_DATA_ABSENT = "shared data absent"

ALLOWED_IN_CI: dict[str, str] = {
    SHARED_DATA_ABSENT: (
        "../shared/data sits beside the project, not in it, and a checkout without it must "
        "still pass on the data the tests make themselves (see that folder's README)"
    ),
}


def allowed_in_ci(reason: str) -> bool:
    """Whether a skip with this reason may pass a CI run."""
    return reason.startswith(tuple(ALLOWED_IN_CI))
