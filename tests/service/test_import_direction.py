"""The service's packages depend on each other in one direction only.

Every import of every module under `service/` is read from its source (imports inside
functions and `TYPE_CHECKING` blocks included, since those are dependencies too), each module
is assigned its unit, and each import between units must be one the direction table allows.
The table allows no cycle, and the test checks that too, so a cycle cannot be let in by
widening the table.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

# Which units each unit may import. A unit is a package of service (or a top-level module),
# except the engine: `service.matching.engine` coordinates the feature packages that hang off
# ingest and check (it builds the watchlist and the cases), so it is a unit above them, while
# the rest of `service.matching` (matcher, profile sides, index sync) is below them.
LOWER = frozenset({"core", "store", "indexes", "auth", "records"})
DIRECTIONS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "records": frozenset({"core"}),
    "store": frozenset({"core"}),
    "indexes": frozenset({"core"}),
    "auth": frozenset({"core", "store"}),
    "migrations": frozenset({"core", "store"}),
    "matching": LOWER,
    "evidence": LOWER | {"matching"},
    "cases": LOWER | {"matching", "evidence"},
    "watchlist": LOWER | {"matching"},
    "engine": LOWER | {"matching", "evidence", "cases", "watchlist"},
    "scans": LOWER | {"matching", "engine"},
    "web": LOWER | {"matching", "evidence", "cases", "watchlist", "engine", "scans"},
    "api": LOWER | {"matching", "evidence", "cases", "watchlist", "engine", "scans", "web"},
    "cli": LOWER | {"matching", "evidence", "cases", "watchlist", "engine", "scans", "api"},
    "service": frozenset(),  # the package's own __init__
}

# Imports against the table that are known and owned outside this table's packages; each
# must still exist (so a fixed one is taken off the list) and says what would end it.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("service.store.keys", "service.auth.roles"): (
        "the key table names the Role type: Role belongs in core (or store)"
    ),
    ("service.records", "service.scans.upload"): (
        "reading record files reuses the upload's line splitter: it belongs in core or records"
    ),
}

ENGINE = "service.matching.engine"


def unit_of(module: str) -> str:
    if module == ENGINE or module.startswith(ENGINE + "."):
        return "engine"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "service"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package=package)


def imports_in(source: str, *, package: str) -> Iterator[str]:
    """Every service module named by an import in `source` (a module of `package`), wherever
    in the file the import is: top level, in a function, under `if TYPE_CHECKING`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from service.x import y` may import the module service.x.y: count both.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name == "service" or name.startswith("service."):
                yield name


def known_modules() -> set[str]:
    return {module_name(path) for path in SERVICE.rglob("*.py")}


def resolve(name: str, modules: set[str]) -> str | None:
    """The service module an imported name is (an attribute import names its module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges() -> set[tuple[str, str]]:
    modules = known_modules()
    edges = set()
    for path in SERVICE.rglob("*.py"):
        source = module_name(path)
        for name in imported_modules(path):
            target = resolve(name, modules)
            if target is not None and target != source:
                edges.add((source, target))
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as the path around it, or None when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for after in sorted(graph.get(node, ())):
            if state.get(after) == 1:
                return [*path[path.index(after) :], after]
            if after not in state and (found := visit(after)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_unit_is_in_the_table() -> None:
    units = {unit_of(module) for module in known_modules()}
    assert units <= DIRECTIONS.keys(), f"add {sorted(units - DIRECTIONS.keys())} to DIRECTIONS"


def test_the_table_has_no_cycle() -> None:
    assert find_cycle({unit: set(allowed) for unit, allowed in DIRECTIONS.items()}) is None


def test_imports_follow_the_direction_table() -> None:
    wrong = sorted(
        f"{source} imports {target} ({unit_of(source)} -> {unit_of(target)})"
        for source, target in import_edges()
        if unit_of(source) != unit_of(target)
        and unit_of(target) not in DIRECTIONS[unit_of(source)]
        and (source, target) not in KNOWN_EXCEPTIONS
    )
    assert wrong == []


def test_no_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in import_edges():
        if unit_of(source) != unit_of(target) and (source, target) not in KNOWN_EXCEPTIONS:
            graph.setdefault(unit_of(source), set()).add(unit_of(target))
    assert find_cycle(graph) is None


@pytest.mark.parametrize("edge", sorted(KNOWN_EXCEPTIONS))
def test_known_exceptions_are_still_needed(edge: tuple[str, str]) -> None:
    assert edge in import_edges(), f"{edge[0]} no longer imports {edge[1]}: drop the exception"


def test_the_check_finds_imports_in_functions_and_type_checking_blocks() -> None:
    # A guard for the reader itself: the imports a cycle most often hides behind.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from service.matching.engine import Engine\n"
        "def later():\n"
        "    import service.cases.service\n"
        "    from ..store import Store\n"
    )
    found = set(imports_in(source, package="service.scans"))
    assert {"service.matching.engine", "service.cases.service", "service.store"} <= found
