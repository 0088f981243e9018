"""A person's own accounts in a check: kept apart, compared as the person, and "is this you?"."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageOps

from indexers.bio import BioEmbedder
from models.errors import CloneFinderError, InvalidInputError
from models.result import Result
from service.auth.roles import PAGE_PROFILE_ACCESS, PUBLIC_ACCESS, PUBLIC_PROFILE_FIELDS
from service.core.settings import Settings
from service.matching.engine import DEMO_DIR, Engine
from service.matching.own_accounts import (
    MAX_OWN_ACCOUNTS,
    OwnAccount,
    own_accounts_of,
    parse_mine,
    parse_own_accounts,
)
from tests.images import b64, jpeg_bytes, photo
from tests.support import items, strangers

MAYA_TWITTER = OwnAccount("twitter", "maya_okafor")
# Maya checking her Instagram on the demo, with her photo.
MAYA_INSTAGRAM = {
    "platform": "instagram",
    "handle": "mayaokafor.science",
    "display_name": "Maya Okafor",
    "avatar_base64": base64.b64encode((DEMO_DIR / "avatars" / "maya_okafor.jpg").read_bytes())
    .decode("ascii"),
}  # fmt: skip

# Ines's Twitter is a lab account: no name, handle, bio or photo in common with her Instagram.
INES_INSTAGRAM = {
    "platform": "instagram",
    "handle": "ines.duarte.photo",
    "display_name": "Ines Duarte",
    "bio": "Street photography in Porto, mostly at night.",
    "avatar_base64": b64(jpeg_bytes(photo(41))),
}
INES_TWITTER = {
    "platform": "twitter",
    "handle": "tidelines_lab",
    "display_name": "Tidelines Lab",
    "bio": "Storm surge measurements from the coast lab, posted every morning.",
    "avatar_base64": b64(jpeg_bytes(photo(42))),
    "created_at": "2010-04-01T09:00:00Z",
    "followers_count": 9100,
}
INES_TWITTER_CLONE = {
    "platform": "twitter",
    "handle": "tideIines_lab",  # a capital I for the l
    "display_name": "Tidelines Lab",
    "bio": INES_TWITTER["bio"] + " DM for promo",
    "avatar_base64": b64(jpeg_bytes(ImageOps.mirror(photo(42).resize((96, 96))), quality=60)),
    "created_at": "2024-05-01T09:00:00Z",
    "followers_count": 3,
}
INES_TWITTER_ACCOUNT = OwnAccount("twitter", "tidelines_lab")


def handles(result: Result) -> list[str]:
    return [m.profile["handle"] for m in result.matches]


def match_of(result: Result, handle: str) -> Any:
    return next(m for m in result.matches if m.profile["handle"] == handle)


# -- the declaration, as a check's body and the command line give it -----------------------


def test_own_accounts_are_read_folded_and_named_once() -> None:
    parsed = parse_own_accounts(
        [
            {"platform": "Twitter", "handle": "@maya_okafor"},
            {"platform": "twitter", "handle": "MAYA_OKAFOR"},
            {"platform": "tiktok", "handle": " maya.okafor "},
        ]
    )
    assert parsed == (OwnAccount("twitter", "maya_okafor"), OwnAccount("tiktok", "maya.okafor"))
    assert parse_own_accounts(None) == ()
    assert parse_mine("mastodon:maya@scholar.social") == OwnAccount(
        "mastodon", "maya@scholar.social"
    )
    assert own_accounts_of(["twitter:maya_okafor", "twitter:Maya_Okafor"]) == (MAYA_TWITTER,)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"platform": "twitter"}, "own_accounts"),
        (["twitter:maya"], "own_accounts[0]"),
        ([{"platform": "twitter"}], "own_accounts[0].handle"),
        ([{"platform": "twitter", "handle": "ok"}, {"platform": "", "handle": "x"}],
         "own_accounts[1].platform"),
        ([{"platform": "twit ter", "handle": "x"}], "own_accounts[0].platform"),
        ([{"platform": "twitter", "handle": "two words"}], "own_accounts[0].handle"),
        ([{"platform": "twitter", "handle": "x", "url": "https://x"}], "own_accounts[0]"),
        ([{"platform": "twitter", "handle": f"h{i}"} for i in range(MAX_OWN_ACCOUNTS + 1)],
         "own_accounts"),
    ],
)  # fmt: skip
def test_a_bad_declaration_names_its_entry_and_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_own_accounts(raw)
    assert caught.value.details[0]["field"] == field
    assert f"field '{field}'" in caught.value.message


@pytest.mark.parametrize("value", ["maya_okafor", "twitter:", ":maya"])
def test_a_bad_mine_says_how_to_write_it(value: str) -> None:
    with pytest.raises(InvalidInputError, match="--mine"):
        parse_mine(value)


# -- checks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The demo corpus, and Ines's accounts with a clone of her Twitter among strangers."""
    folder: Path = tmp_path_factory.mktemp("own-accounts")
    engine = Engine.open(Settings(data_dir=folder / "data"), embedder=BioEmbedder())
    assert engine.load_demo() > 0
    report = engine.ingest(items([INES_TWITTER, INES_TWITTER_CLONE, *strangers(20)]))
    assert report.rejected == 0
    yield engine
    engine.close()


@pytest.mark.slow
def test_a_declared_account_is_apart_and_the_clones_stay(engine: Engine) -> None:
    result = engine.check(MAYA_INSTAGRAM, own_accounts=[MAYA_TWITTER])

    assert [(a.platform, a.handle, a.found) for a in result.own_accounts] == [
        ("twitter", "maya_okafor", True)
    ]
    stored = result.own_accounts[0].profile
    assert stored is not None and stored["verified"] is True
    assert "maya_okafor" not in handles(result)
    for clone in ("maya_0kafor", "realmayaokafor"):
        match = match_of(result, clone)
        assert match.label == "likely_clone"
        assert not match.may_be_yours
    # Her verified Twitter of 2009 says which side is the copy, as her new Instagram cannot.
    assert match_of(result, "maya_0kafor").likely_impersonator == "candidate"


def test_a_check_by_name_and_photo_finds_the_lookalike_clone_as_one_by_handle_does(
    engine: Engine,
) -> None:
    """Without a handle, the clone that spells her name with a Greek O is still a finding."""
    by_handle = engine.check(MAYA_INSTAGRAM)
    by_face = engine.check(
        {"display_name": "Maya Okafor", "avatar_base64": MAYA_INSTAGRAM["avatar_base64"]}
    )
    for result in (by_handle, by_face):
        assert match_of(result, "maya_0kafor").label == "likely_clone"
    assert match_of(by_face, "maya_0kafor").score == pytest.approx(
        match_of(by_handle, "maya_0kafor").score, abs=0.05
    )


@pytest.mark.slow
def test_an_undeclared_account_that_looks_like_the_original_may_be_yours(engine: Engine) -> None:
    result = engine.check(MAYA_INSTAGRAM)

    assert result.own_accounts == []
    hers = match_of(result, "maya_okafor")
    assert hers.may_be_yours
    assert hers.likely_impersonator == "query"
    # Same photo and a name that looks the same, but newer: a clone, not another of hers.
    assert not match_of(result, "realmayaokafor").may_be_yours
    assert not match_of(result, "maya_0kafor").may_be_yours
    # On the platform she checks, an account cannot be another of hers.
    twitter_check = engine.check({**MAYA_INSTAGRAM, "platform": "twitter", "handle": "maya_new"})
    assert not match_of(twitter_check, "maya_okafor").may_be_yours


@pytest.mark.slow
def test_a_clone_of_an_own_account_is_found_through_it(engine: Engine) -> None:
    alone = engine.check(INES_INSTAGRAM)
    assert "tideIines_lab" not in handles(alone)

    result = engine.check(INES_INSTAGRAM, own_accounts=[INES_TWITTER_ACCOUNT])
    clone = match_of(result, "tideIines_lab")
    assert clone.label == "likely_clone"
    assert clone.likely_impersonator == "candidate"
    # Its reasons are those of the account it copies, not of the Instagram checked.
    assert any("look-alike" in reason for reason in clone.reasons)
    assert clone.signals["display_name"] == 1.0
    assert "tidelines_lab" not in handles(result)


@pytest.mark.slow
def test_an_unstored_account_is_listed_as_not_found(engine: Engine) -> None:
    result = engine.check(
        MAYA_INSTAGRAM, own_accounts=[OwnAccount("tiktok", "maya.okafor"), MAYA_TWITTER]
    )
    assert [(a.handle, a.found, a.profile) for a in result.own_accounts][0] == (
        "maya.okafor",
        False,
        None,
    )
    assert result.own_accounts[1].found is True


@pytest.mark.slow
def test_callers_who_may_not_read_by_name_only_keep_their_accounts_out(engine: Engine) -> None:
    public = engine.check(MAYA_INSTAGRAM, own_accounts=[MAYA_TWITTER], access=PUBLIC_ACCESS)
    assert [(a.handle, a.found, a.profile) for a in public.own_accounts] == [
        ("maya_okafor", None, None)
    ]
    assert "maya_okafor" not in handles(public)
    # Nothing of the stored account is compared for them: its clone is not found through it.
    ines = engine.check(INES_INSTAGRAM, own_accounts=[INES_TWITTER_ACCOUNT], access=PUBLIC_ACCESS)
    assert "tideIines_lab" not in handles(ines)

    local_page = engine.check(
        MAYA_INSTAGRAM, own_accounts=[MAYA_TWITTER], access=PAGE_PROFILE_ACCESS["local"]
    )
    profile = local_page.own_accounts[0].profile
    assert profile is not None and set(profile) <= PUBLIC_PROFILE_FIELDS
    assert profile["handle"] == "maya_okafor"


@pytest.mark.slow
@pytest.mark.parametrize("min_score", [None, 0.0])
def test_a_batch_with_own_accounts_answers_as_single_checks(
    engine: Engine, min_score: float | None
) -> None:
    queries: list[Any] = [
        MAYA_INSTAGRAM,
        MAYA_INSTAGRAM,
        INES_INSTAGRAM,
        {"platform": "twitter"},  # nothing to look for: its error in its place
        {"platform": "twitter", "handle": "maya_okafor"},
    ]
    own: list[list[OwnAccount]] = [
        [MAYA_TWITTER],
        [],
        [INES_TWITTER_ACCOUNT, OwnAccount("tiktok", "ines")],
        [MAYA_TWITTER],
        [OwnAccount("twitter", "maya_okafor_art")],
    ]
    batch = engine.check_many(queries, top_k=5, min_score=min_score, own_accounts=own)
    for query, mine, outcome in zip(queries, own, batch, strict=True):
        try:
            alone: Any = engine.check(query, top_k=5, min_score=min_score, own_accounts=mine)
        except CloneFinderError as exc:
            alone = exc
        if isinstance(alone, CloneFinderError):
            assert isinstance(outcome, CloneFinderError)
            assert (outcome.code, outcome.message) == (alone.code, alone.message)
        else:
            assert not isinstance(outcome, CloneFinderError)
            assert outcome.model_dump() == alone.model_dump()
    assert isinstance(batch[0], Result) and isinstance(batch[1], Result)
    assert "maya_okafor" not in handles(batch[0])
    assert "maya_okafor" in handles(batch[1])


def test_the_evidence_of_a_check_leaves_the_persons_own_accounts_out(engine: Engine) -> None:
    """A person's report of their check never lists their own account as a copy."""
    from service.cases.service import Operator
    from service.store.audit import Actor

    operator = Operator(actor=Actor("test"), owner_key_id=None, scope=None)

    def exported(**options: Any) -> str:
        export = engine.cases.export_check(operator, MAYA_INSTAGRAM, "csv", **options)
        return export.data.decode("utf-8")

    assert "maya_okafor," in exported()
    declared = exported(own_accounts=[MAYA_TWITTER])
    assert "maya_okafor," not in declared
    assert "maya_0kafor" in declared
