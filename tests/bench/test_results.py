"""Benchmark results carry their provenance, and the README quotes only figures they hold.

Every figure under the README's "## Benchmarks" must be found in a result file in
`bench/results/` of its own subsection: the files whose benchmark (`bench.X`) or path the
subsection names, so that a figure cannot pass on a number of another benchmark. A figure
matches a recorded value when it is that value rounded to the digits shown (1381.2 as 1,381;
0.9266 as 0.927). Where the README writes a unit, the value must be of that kind: a figure in
% is a recorded fraction times 100 (0.0024 as 0.24%); one in ms a value recorded in ms, or in
seconds times 1,000; one in s or min a value recorded in seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.provenance import PACKAGES, save_result

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "bench" / "results"
QUALITY = "Quality (`python -m bench.quality`)"

# Phrases of the Benchmarks part whose numbers are settings or descriptions, not measured
# figures, each with the reason. Quoted exactly (whitespace aside), so that an entry whose
# phrase has left the README fails `test_each_setting_is_quoted` instead of lingering.
SETTINGS: dict[str, str] = {
    "24 GiB machine": "the machine's memory: where the figures were measured",
    "30% with a 96x96 JPEG avatar": "bench.generate's avatar share and size (its defaults)",
    "the 30% with an avatar": "bench.generate's avatar share",
    "avatar bytes for 30%": "bench.generate's avatar share",
    "768 as float16": "a 384-dimension vector in float16: arithmetic on the format",
    "128 pixels a side": "the size indexers.avatar decodes a JPEG to for its hashes",
    "up to 2,000,000 postings": "NgramIndex's limit on the postings it reads (wide_postings)",
    "sharing 4 of 8 grams before a long one sharing 4 of 20": "an example of Dice ranking",
    "400 to 12,800": "the name pool's bounds (matcher.NAME_POOL_MIN, NAME_POOL_MAX)",
    "(3,906 here)": "five eighths of the recorded pool: the rule applied, not measured",
    "at 100,000 profiles reads 625": "name_pool(100,000): the pool rule applied, not measured",
    "4 bytes an id": "the position table's 32-bit entries: the format",
    "sizes from 48 to 200 pixels and JPEG qualities from 60 to 95": "bench.avatar_search's "
    "distractor sizes and JPEG qualities",
    "its 32 candidates": "service.matching.matcher.AVATAR_CANDIDATES",
    "7 views, each compared with the other's 7": "indexers.avatar.VIEWS",
    "(15, the local server": "PostgreSQL's major version",
}

NUMBER = re.compile(r"(?<![\w@#.,])(\d{1,3}(?:,\d{3})+(?!\d)|\d+)((?:\.\d+)*)")
UNIT = re.compile(r"\s?(%|ms\b|min\b|s\b)")
TARGET = re.compile(r"[≥≤]\s*$")
SECONDS_KEY = re.compile(r"(?:^|_)(?:s|seconds)$")
MS_KEY = re.compile(r"(?:^|_)ms(?:_|$)")
# A number in a key's name is recorded too: the size of a timed query (get_many_200_ids_s).
KEY_NUMBER = re.compile(r"(?:^|_)(\d+)(?=_|$)")
RANGE_LABEL = re.compile(r"^\d+(?:\.\d+)?-\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class Figure:
    """A number as the README shows it, with its subsection and the words around it."""

    section: str
    shown: str
    value: float
    decimals: int
    unit: str
    context: str


@dataclass(frozen=True)
class Recorded:
    """A number in a result file, with the keys it sits under (they give its unit)."""

    keys: tuple[str, ...]
    value: float

    @property
    def seconds(self) -> bool:
        return bool(self.keys) and bool(SECONDS_KEY.search(self.keys[-1]))

    @property
    def milliseconds(self) -> bool:
        return any(MS_KEY.search(key) for key in self.keys)


def benchmarks_part(readme: str) -> str:
    """README text from "## Benchmarks" up to the next "## " heading."""
    start = readme.index("\n## Benchmarks\n") + 1
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else len(readme)]


def subsections(part: str) -> dict[str, str]:
    """The part's "### " subsections by heading (without the "### "); "" is the intro."""
    chunks = re.split(r"^### (.*)$", part.split("\n", 1)[1], flags=re.M)
    sections = {"": chunks[0]}
    sections.update(zip(chunks[1::2], chunks[2::2], strict=True))
    return sections


def _without_targets(table: list[str]) -> list[str]:
    """A table's rows as text, less the cells of a "target" column (goals, not results)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    skipped = {i for i, cell in enumerate(rows[0]) if cell.lower() == "target"}
    return [" | ".join(c for i, c in enumerate(row) if i not in skipped) for row in rows]


def _prose(section: str) -> str:
    """The section's words, with code, target cells and quoted settings taken out."""
    section = re.sub(r"```.*?```", " ", section, flags=re.S)
    lines: list[str] = []
    table: list[str] = []
    for line in [*section.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        if table:
            lines.extend(_without_targets(table))
            table = []
        lines.append(line)
    text = re.sub(r"\s+", " ", re.sub(r"`[^`]*`", " ", "\n".join(lines)))
    for phrase in SETTINGS:
        text = text.replace(re.sub(r"\s+", " ", phrase), " ")
    return text


def figures(section_name: str, section: str) -> list[Figure]:
    """Every measured figure in a subsection's text.

    Left out, as not measured: numbers inside code spans (commands, options, constants), in
    headings, in a table's "target" column or after ≥/≤ (goals), glued to letters (p50,
    float16, recall@10, 10th, 96x96), in compound words (8-bit, 3-grams, 5,000-profile),
    version numbers (0.3.3), years (four digits from 1900 to 2100 with no thousands separator:
    the README writes counts with one), and the phrases quoted in `SETTINGS`.
    """
    text = _prose(section)
    found = []
    for match in NUMBER.finditer(text):
        whole, fraction = match.group(1), match.group(2)
        after = text[match.end() : match.end() + 2]
        if fraction.count(".") > 1 or TARGET.search(text, max(0, match.start() - 3), match.start()):
            continue
        if after[:1].isalpha() and not (after[0] == "x" and not after[1:2].isalnum()):
            continue
        if after[:1] == "-" and after[1:2].isalpha():
            continue
        number = float(whole.replace(",", "") + fraction)
        if not fraction and 1900 <= number <= 2100 and "," not in whole:
            continue
        unit = UNIT.match(text, match.end())
        found.append(
            Figure(
                section=section_name,
                shown=match.group(0),
                value=number,
                decimals=len(fraction) - 1 if fraction else 0,
                unit=unit.group(1) if unit else "",
                context=text[max(0, match.start() - 50) : match.end() + 30].strip(),
            )
        )
    return found


def _numbers(node: Any, keys: tuple[str, ...] = ()) -> Iterator[Recorded]:
    """Every number in a result (numeric keys and numbers in key names too), less provenance."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "provenance":
                continue
            if re.fullmatch(r"\d+(?:\.\d+)?", k):
                yield Recorded(keys, float(k))
            else:
                yield from (Recorded(keys, float(n)) for n in KEY_NUMBER.findall(k))
            yield from _numbers(v, (*keys, k))
    elif isinstance(node, list):
        for item in node:
            yield from _numbers(item, keys)
    elif isinstance(node, bool):
        return
    elif isinstance(node, int | float):
        yield Recorded(keys, float(node))
    elif isinstance(node, str) and RANGE_LABEL.match(node):
        # Labels such as a score band ("0.6-0.7") are recorded as text.
        yield from (Recorded(keys, float(n)) for n in node.split("-"))


def matches(figure: Figure, recorded: Recorded) -> bool:
    """The figure is the recorded value rounded to the digits shown, in the unit shown."""
    tolerance = 0.5 * 10.0**-figure.decimals + 1e-9
    value = recorded.value
    if figure.unit == "%":
        candidates = [value * 100]
    elif figure.unit == "ms":
        candidates = [value] if recorded.milliseconds else []
        candidates += [value * 1000] if recorded.seconds else []
    elif figure.unit == "s":
        candidates = [value] if recorded.seconds else []
    elif figure.unit == "min":
        candidates = [value / 60] if recorded.seconds else []
    else:
        candidates = [value]
    return any(abs(c - figure.value) <= tolerance for c in candidates)


def result_files() -> list[Path]:
    return sorted(RESULTS.rglob("*.json"))


def _command_module(result: dict[str, Any]) -> str | None:
    command = result.get("provenance", {}).get("command", "")
    found = re.search(r"-m (bench\.\w+)", command)
    return found.group(1) if found else None


def sources(section: str, files: list[Path]) -> list[Recorded]:
    """The numbers of the result files a section names, by benchmark module or by path."""
    numbers: list[Recorded] = []
    for path in files:
        result = json.loads(path.read_text(encoding="utf-8"))
        module = _command_module(result)
        relative = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else ""
        named_module = module is not None and re.search(rf"\b{re.escape(module)}\b", section)
        if named_module or (relative and relative in section):
            numbers.extend(_numbers(result))
    return numbers


def unsourced(section_name: str, section: str, files: list[Path]) -> list[Figure]:
    """The section's figures that no result file it names holds."""
    recorded = sources(f"### {section_name}\n{section}", files)
    return [f for f in figures(section_name, section) if not any(matches(f, r) for r in recorded)]


def _report(missing: list[Figure]) -> str:
    return "figures with no result file holding them:\n" + "\n".join(
        f"  [{f.section or 'intro'}] {f.shown}{f.unit}: ...{f.context}..." for f in missing
    )


def _sections() -> dict[str, str]:
    return subsections(benchmarks_part(README.read_text(encoding="utf-8")))


def test_save_result_records_provenance(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "result.json"
    returned = save_result(
        out, {"rate": 1381.2, "provenance": "stale"}, module="bench.speed", argv=["--profiles", "7"]
    )
    text = out.read_text(encoding="utf-8")
    saved = json.loads(text)
    assert text.endswith("}\n") and text.startswith('{\n  "rate"')
    assert saved == returned
    assert saved["rate"] == 1381.2
    provenance = saved["provenance"]
    assert provenance["command"] == "python -m bench.speed --profiles 7"
    assert re.fullmatch(r"[0-9a-f]{4,40}|unknown", provenance["commit"])
    assert provenance["dirty"] in (True, False, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", provenance["date"])
    assert provenance["cores"]["cpu_count"] >= 1
    assert provenance["python"].count(".") == 2
    assert set(provenance["versions"]) == set(PACKAGES)
    assert provenance["versions"]["numpy"]  # installed in every environment of the project
    assert "scoring_model" in provenance
    assert set(provenance["data"]) == {"dir", "profiles", "images"}


def test_save_result_fingerprints_the_shared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (data / "profiles").mkdir(parents=True)
    (data / "profiles" / "cresci2015-users.csv").write_text("id,name\n1,a\n", encoding="utf-8")
    (data / "images" / "sub").mkdir(parents=True)
    (data / "images" / "sub" / "a.jpg").write_bytes(b"x" * 10)
    monkeypatch.setenv("CLONEFINDER_SHARED_DATA", str(data))
    first = save_result(tmp_path / "a.json", {}, module="bench.x", argv=[])["provenance"]["data"]
    assert first["images"]["files"] == 1
    assert len(first["profiles"]["sha256"]) == 64
    (data / "images" / "b.jpg").write_bytes(b"y")
    second = save_result(tmp_path / "b.json", {}, module="bench.x", argv=[])["provenance"]["data"]
    assert second["images"]["sha256"] != first["images"]["sha256"]
    assert second["profiles"] == first["profiles"]
    monkeypatch.setenv("CLONEFINDER_SHARED_DATA", str(tmp_path / "absent"))
    absent = save_result(tmp_path / "c.json", {}, module="bench.x", argv=[])["provenance"]["data"]
    assert absent["profiles"] is None and absent["images"] is None


@pytest.mark.parametrize("path", result_files(), ids=lambda p: p.name)
def test_each_result_file_records_its_provenance(path: Path) -> None:
    provenance = json.loads(path.read_text(encoding="utf-8")).get("provenance")
    assert isinstance(provenance, dict), f"{path.name} has no provenance"
    for field in ("date", "commit", "command"):
        assert provenance.get(field), f"{path.name}: provenance lacks {field}"
    assert provenance["command"].startswith("python -m bench.")


def test_each_setting_is_quoted() -> None:
    part = re.sub(r"\s+", " ", benchmarks_part(README.read_text(encoding="utf-8")))
    for phrase in SETTINGS:
        assert re.sub(r"\s+", " ", phrase) in part, f"no longer in the README: {phrase!r}"


def test_each_subsection_names_a_result_file() -> None:
    for name, section in _sections().items():
        if name:
            assert sources(f"### {name}\n{section}", result_files()), name


def test_readme_benchmark_figures_come_from_result_files() -> None:
    missing = [
        figure
        for name, section in _sections().items()
        if name != QUALITY
        for figure in unsourced(name, section, result_files())
    ]
    assert not missing, _report(missing)


def test_readme_quality_figures_come_from_result_files() -> None:
    section = _sections()[QUALITY]
    missing = unsourced(QUALITY, section, result_files())
    assert not missing, _report(missing)


def test_an_invented_figure_is_reported(tmp_path: Path) -> None:
    save_result(
        tmp_path / "speed.json",
        {"check": {"p50_ms": 16.4, "p99_ms": 21.1}, "cold_start_s": 5.3, "recall": 0.9266},
        module="bench.speed",
        argv=[],
    )
    files = sorted(tmp_path.glob("*.json"))
    name = "Speed (`python -m bench.speed`)"
    honest = (
        "| check p50 / p99 | 16.4 ms / 21.1 ms | ≤ 20 ms |\n\n"
        "Cold start 5.3 s (5,300 ms), recall 92.7% or 0.927 (`--checks 300`).\n"
    )
    assert len(figures(name, honest)) == 6 and not unsourced(name, honest, files)
    invented = honest + "Ingest runs at 2,345 profiles/s; a check takes 23.8 ms (16.4 s cold).\n"
    assert [(f.shown, f.unit) for f in unsourced(name, invented, files)] == [
        ("2,345", ""),
        ("23.8", "ms"),
        ("16.4", "s"),  # recorded in ms: the unit shown must be the unit measured
    ]


def test_an_invented_figure_in_the_readme_is_reported() -> None:
    name, section = next((n, s) for n, s in _sections().items() if n.startswith("Speed"))
    tampered = section + "\nA warm check over HTTP takes 14.2 ms at p50.\n"
    assert [f.shown for f in unsourced(name, tampered, result_files())] == ["14.2"]
