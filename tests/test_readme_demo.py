"""Every figure and label the README quotes for the demo corpus is what the demo's checks
return: each is read from the README's own text, so a stale figure fails here."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexers.bio import BioEmbedder
from models.result import Match, Result
from service.core.settings import Settings
from service.evidence.plain_words import label_words
from service.matching.engine import DEMO_DIR, Engine
from service.matching.own_accounts import OwnAccount

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """A README section's text, from its heading to the next heading of any level."""
    found = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", README, flags=re.S | re.M)
    assert found, f"the README has no section {title!r}"
    return found.group(1)


def quoted(pattern: str, text: str) -> re.Match[str]:
    """The README's sentence that `pattern` reads (whitespace: any, line breaks included)."""
    found = re.search(pattern.replace(" ", r"\s+"), text, flags=re.S)
    assert found, f"the README no longer says: {pattern}"
    return found


def shown_on_page(score: float) -> str:
    """The page's figure for a score: cut, not rounded, to two places (app.js `scoreShown`)."""
    return f"{math.floor(score * 100) / 100:.2f}"


def match_of(result: Result, handle: str) -> Match:
    found = [m for m in result.matches if m.profile["handle"] == handle]
    assert found, f"{handle} is not among {[m.profile['handle'] for m in result.matches]}"
    return found[0]


def result_example() -> dict[str, Any]:
    """The result record the README shows."""
    block = re.search(r"```json\n(.*?)```", section("Result records and labels"), flags=re.S)
    assert block, "the result record example is gone"
    example: dict[str, Any] = json.loads(block.group(1))
    return example


def with_photo(platform: str, handle: str, name: str, photo: Path) -> dict[str, Any]:
    data = photo.read_bytes()
    return {
        "platform": platform,
        "handle": handle,
        "display_name": name,
        "avatar_base64": base64.b64encode(data).decode("ascii"),
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The bundled demo, loaded as `clonefinder serve --demo` loads it."""
    folder = tmp_path_factory.mktemp("readme-demo")
    engine = Engine.open(Settings(data_dir=folder / "data"), embedder=BioEmbedder())
    assert engine.load_demo() > 0
    yield engine
    engine.close()


def test_the_result_record_example_is_the_demos_first_match(demo: Engine) -> None:
    example = result_example()
    result = demo.check(example["query"])

    first = example["matches"][0]
    got = result.matches[0].model_dump(mode="json")
    shown = {name: value for name, value in first["profile"].items() if name != "..."}
    assert {name: got["profile"].get(name) for name in shown} == shown
    for name in ("score", "label", "signals", "reasons", "likely_impersonator"):
        assert got[name] == first[name], name


def test_the_namesake_is_left_out_and_ranked_as_the_readme_says(demo: Engine) -> None:
    query = result_example()["query"]
    namesake = quoted(
        r"first match for `(?P<query>[\w.]+)`. Its namesake `(?P<handle>[\w.]+)`, with her own "
        r"photo and bio, is not among the default results: .*? `--min-score 0` lists her as "
        r"`(?P<label>\w+)`",
        section("Result records and labels"),
    )
    assert namesake["query"] == query["handle"]
    assert namesake["handle"] not in [m.profile["handle"] for m in demo.check(query).matches]
    ranked = demo.check(query, min_score=0)
    assert match_of(ranked, namesake["handle"]).label == namesake["label"]


def test_your_own_accounts_figures(demo: Engine) -> None:
    text = section("Your own accounts")
    asked = quoted(
        r'On the demo, `(?P<platform>\w+)/(?P<handle>[\w.]+)` "(?P<name>[^"]+)" with her photo '
        r"finds the verified `(?P<own_platform>\w+)/(?P<own_handle>[\w.]+)` with `may_be_yours`; "
        r"with `--mine (?P<mine>\w+:[\w.]+)` it is listed apart, and `(?P<first>[\w.]+)` and "
        r"`(?P<second>[\w.]+)` remain `(?P<label>\w+)`",
        text,
    )
    # "Her photo": the one her stored account wears.
    photo = DEMO_DIR / "avatars" / f"{asked['own_handle']}.jpg"
    query = with_photo(asked["platform"], asked["handle"], asked["name"], photo)
    assert asked["mine"] == f"{asked['own_platform']}:{asked['own_handle']}"
    own = OwnAccount(asked["own_platform"], asked["own_handle"])

    alone = demo.check(query)
    original = match_of(alone, asked["own_handle"])
    assert original.may_be_yours and original.profile["verified"] is True
    named = demo.check(query, own_accounts=[own])
    assert [(a.platform, a.handle, a.found) for a in named.own_accounts] == [
        (own.platform, own.handle, True)
    ]
    assert asked["own_handle"] not in [m.profile["handle"] for m in named.matches]
    for clone in (asked["first"], asked["second"]):
        assert match_of(named, clone).label == asked["label"], clone

    sides = quoted(
        r"`(?P<clone>[\w.]+)` comes out `(?P<with_twitter>\w+)` against her verified Twitter of "
        r"(?P<year>\d{4}), where her new Instagram alone said `(?P<alone>\w+)`",
        text,
    )
    assert match_of(named, sides["clone"]).likely_impersonator == sides["with_twitter"]
    assert match_of(alone, sides["clone"]).likely_impersonator == sides["alone"]
    assert original.profile["created_at"].startswith(sides["year"])


def test_the_web_page_figures(demo: Engine) -> None:
    text = section("Web page")
    line = quoted(
        r'"How sure clonefinder is that this account copies you: (?P<words>[a-z ]+) '
        r'\((?P<figure>\d\.\d\d) of 1\)" on the demo\'s first card for '
        r"`(?P<platform>\w+)/(?P<handle>[\w.]+)`",
        text,
    )
    first = demo.check({"platform": line["platform"], "handle": line["handle"]}).matches[0]
    assert (label_words(first.label), shown_on_page(first.score)) == (
        line["words"],
        line["figure"],
    )

    path = quoted(
        r'On the demo, `(?P<platform>\w+)/(?P<handle>[\w.]+)` "(?P<name>[^"]+)" with her photo '
        r"\(`(?P<photo>[^`]+)`\) is asked about `(?P<own_platform>\w+)/(?P<own_handle>[\w.]+)`; "
        r"with it named \(or after \*\*Yes\*\*\), it is under Your accounts and the page shows "
        r"(?P<shown>(?:`[\w.]+`(?:,| and)? )+)each "
        r'"(?P<words>[a-z ]+) \((?P<figure>\d\.\d\d) of 1\)"',
        text,
    )
    query = with_photo(path["platform"], path["handle"], path["name"], REPO / path["photo"])
    own = OwnAccount(path["own_platform"], path["own_handle"])
    asked = [m.profile["handle"] for m in demo.check(query).matches if m.may_be_yours]
    assert asked == [own.handle]
    named = demo.check(query, own_accounts=[own])
    assert [a.handle for a in named.own_accounts if a.found] == [own.handle]
    shown = re.findall(r"`([\w.]+)`", path["shown"])
    assert sorted(m.profile["handle"] for m in named.matches) == sorted(shown)
    for match in named.matches:
        assert not match.may_be_yours
        assert (label_words(match.label), shown_on_page(match.score)) == (
            path["words"],
            path["figure"],
        ), match.profile["handle"]
