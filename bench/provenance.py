"""Where a benchmark figure came from: every result file records the run that made it.

A figure in the README is only as good as what can be said about its run: when, on which
commit (and whether the tree had uncommitted changes), with which command, on how many cores,
with which versions of the libraries that set the speed, which scoring model and which shared
data. `save_result` writes a benchmark's report as JSON with a `"provenance"` object holding
all of that, so each figure can be traced back and rerun; `tests/bench/test_results.py` checks
that every result file has one and that the README quotes only figures the files hold.

Everything here is cheap and imports nothing heavy: git and file metadata, package versions
from their installed metadata, the scoring model's version from `models/weights.json`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# The libraries whose versions move the figures (the vector index, the model runtime, the
# hashing and the string similarities), recorded as installed; null where one is not.
PACKAGES = ("numpy", "faiss-cpu", "sentence-transformers", "torch", "imagehash", "rapidfuzz")
PROFILES_CSV = Path("profiles") / "cresci2015-users.csv"
IMAGES = Path("images")


def shared_data_dir() -> Path:
    """The shared data folder: $CLONEFINDER_SHARED_DATA, else ../shared/data beside the repo.

    The same rule as `training.pairset.default_data_dir`, repeated rather than imported so that
    saving a result never imports the training package.
    """
    env = os.environ.get("CLONEFINDER_SHARED_DATA")
    if env:
        return Path(env)
    return REPO_ROOT / ".." / "shared" / "data"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _model_version() -> str | None:
    try:
        weights = json.loads((REPO_ROOT / "models" / "weights.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = weights.get("version") if isinstance(weights, dict) else None
    return str(version) if version is not None else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_identity(folder: Path) -> dict[str, Any]:
    """A cheap fingerprint of the shared data: the CSV's digest, the images' names and sizes.

    The images are not read: a digest over their sorted (relative path, size) pairs tells two
    folders apart at the cost of a directory walk.
    """
    csv_path = folder / PROFILES_CSV
    profiles: dict[str, Any] | None = None
    if csv_path.is_file():
        profiles = {"path": PROFILES_CSV.as_posix(), "sha256": _file_sha256(csv_path)}
    images: dict[str, Any] | None = None
    if (folder / IMAGES).is_dir():
        files = sorted(
            (path.relative_to(folder / IMAGES).as_posix(), path.stat().st_size)
            for path in (folder / IMAGES).rglob("*")
            if path.is_file()
        )
        digest = hashlib.sha256()
        for name, size in files:
            digest.update(f"{name}\t{size}\n".encode())
        images = {"path": IMAGES.as_posix(), "files": len(files), "sha256": digest.hexdigest()}
    return {"dir": str(folder.resolve()), "profiles": profiles, "images": images}


def _main_module() -> str:
    # A benchmark runs as `python -m bench.X`: its module's name is on `__main__`'s spec.
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def provenance(*, module: str | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The record of this run: date, commit, command, cores, versions, model and data.

    `module` is the benchmark's module (default: the one run with `python -m`); `argv` its
    arguments (default: this process's).
    """
    commit = _git("rev-parse", "--short", "HEAD")
    changes = _git("status", "--porcelain") if commit else None
    affinity = getattr(os, "sched_getaffinity", None)
    arguments = list(sys.argv[1:] if argv is None else argv)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or "unknown",
        "dirty": bool(changes) if changes is not None else None,
        "command": shlex.join(["python", "-m", module or _main_module(), *arguments]),
        "cores": {
            "cpu_count": os.cpu_count(),
            "usable": len(affinity(0)) if affinity is not None else None,
        },
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {name: _package_version(name) for name in PACKAGES},
        "scoring_model": _model_version(),
        "data": _data_identity(shared_data_dir()),
    }


def save_result(
    path: Path,
    report: dict[str, Any],
    *,
    module: str | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write `report` to `path` as JSON (indent 2) with this run's `"provenance"`; return it.

    The report's own keys come first, unchanged; a `"provenance"` it already holds is
    replaced, since the file now describes this run.
    """
    saved = {k: v for k, v in report.items() if k != "provenance"}
    saved["provenance"] = provenance(module=module, argv=argv)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return saved
