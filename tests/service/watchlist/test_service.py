"""Watchlists in the engine: every ingest is checked against the protected identities."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import ImageOps

from indexers.bio import BioEmbedder
from indexers.compare import compare
from models.errors import InvalidInputError, InvalidRecordError, NotFoundError
from service.auth.roles import Caller
from service.core.settings import Settings
from service.matching.engine import Engine
from service.matching.profile_sides import side_of_row
from service.store import Store
from service.watchlist.service import AlertQuery, RegisterRequest, Watchlist, _entry_side
from tests.images import b64, jpeg_bytes, photo
from tests.support import jane

pytestmark = pytest.mark.slow

# Keys that may name a stored profile to protect it (an individual key sends the identity).
ALICE = Caller(key_id=11, name="alice", role="platform")
BOB = Caller(key_id=12, name="bob", role="platform")
ADMIN = Caller(key_id=1, name="admin", role="admin")


@pytest.fixture(scope="module")
def embedder() -> BioEmbedder:
    settings = Settings()
    return BioEmbedder(
        settings.embedding_model,
        backend=settings.embedding_backend,
        cache_dir=settings.model_cache_dir,
    )


@pytest.fixture
def engine(tmp_path: Path, embedder: BioEmbedder) -> Iterator[Engine]:
    engine = Engine.open(Settings(data_dir=tmp_path / "data"), embedder=embedder)
    yield engine
    engine.close()


BIO = "Marine biologist in Lisbon. Writing about octopus intelligence and coral reefs."


def clone(**overrides: Any) -> dict[str, Any]:
    copied = ImageOps.mirror(photo(1).resize((64, 64)))
    record = {
        "platform": "twitter",
        "handle": "jane_doe_official",
        "display_name": "Jаne Doe ✔",  # Cyrillic а
        "bio": BIO + " DM for promo",
        "avatar_base64": b64(jpeg_bytes(copied, quality=50)),
        "created_at": "2019-08-01T10:00:00Z",
        "followers_count": 12,
    }
    return {**record, **overrides}


def stranger(i: int) -> dict[str, Any]:
    names = ["Mark Smith", "Luca Rossi", "Aiko Tanaka", "Omar Haddad", "Eva Novak"]
    return {
        "platform": "twitter",
        "handle": f"user{i}",
        "display_name": names[i % len(names)],
        "bio": f"Football, cooking and {['jazz', 'chess', 'maths'][i % 3]}.",
        "avatar_base64": b64(jpeg_bytes(photo(100 + i, size=96))),
    }


def ingest(engine: Engine, *records: dict[str, Any]) -> None:
    report = engine.ingest([(f"index {i}", r) for i, r in enumerate(records)])
    assert report.rejected == 0, report.outcomes


def alerts(engine: Engine, caller: Caller = ALICE, **query: Any) -> list[Any]:
    return engine.watchlist.alerts(caller, AlertQuery(**query)).alerts


def register(engine: Engine, identity: dict[str, Any], caller: Caller = ALICE, **options: Any):  # type: ignore[no-untyped-def]
    return engine.watchlist.register(caller, RegisterRequest(identity=identity, **options))


def test_a_clone_ingested_later_alerts_with_the_score_a_check_gives(engine: Engine) -> None:
    ingest(engine, jane(), *[stranger(i) for i in range(6)])
    entry = register(engine, {"platform": "twitter", "handle": "JaneDoe"}).entry
    assert entry.identity["display_name"] == "Jane Doe"
    assert entry.identity["avatar_sha256"] and "avatar_base64" not in entry.identity
    assert entry.threshold == engine.scorer.thresholds.likely_clone  # the default
    assert alerts(engine) == []  # profiles ingested before the entry do not alert

    ingest(engine, clone(), stranger(7))
    (alert,) = alerts(engine)
    assert alert.entry_id == entry.id and alert.key_id == ALICE.key_id
    assert alert.profile["handle"] == "jane_doe_official"
    assert "avatar_base64" not in alert.profile

    (match,) = [
        m
        for m in engine.check({"platform": "twitter", "handle": "janedoe"}).matches
        if m.profile["handle"] == "jane_doe_official"
    ]
    assert (alert.score, alert.label) == (match.score, match.label)
    assert alert.signals == match.signals
    assert alert.reasons == match.reasons
    assert alert.likely_impersonator == match.likely_impersonator == "candidate"


def test_the_same_clone_alerts_once_and_the_identity_itself_never(engine: Engine) -> None:
    ingest(engine, jane())
    register(engine, {"platform": "twitter", "handle": "janedoe"})
    ingest(engine, clone())
    ingest(engine, clone())  # the same again
    ingest(engine, clone(bio=BIO + " Follow for more"))  # an update of the clone
    ingest(engine, jane(followers_count=5401))  # the protected profile itself, updated
    ingest(engine, jane(platform="instagram"))  # the same person elsewhere: a match, alerts
    assert sorted((a.profile["platform"], a.profile["handle"]) for a in alerts(engine)) == [
        ("instagram", "janedoe"),
        ("twitter", "jane_doe_official"),
    ]


def test_a_record_that_is_not_stored_can_be_protected(engine: Engine) -> None:
    identity = {k: v for k, v in jane().items() if k not in ("platform", "handle")}
    entry = register(engine, identity).entry
    assert entry.identity["display_name"] == "Jane Doe" and "platform" not in entry.identity
    ingest(engine, stranger(1), clone())
    assert [a.profile["handle"] for a in alerts(engine)] == ["jane_doe_official"]


def test_a_match_below_the_entry_threshold_does_not_alert(engine: Engine) -> None:
    ingest(engine, jane())
    strict = register(engine, {"platform": "twitter", "handle": "janedoe"}, threshold=1.0).entry
    usual = register(engine, {"platform": "twitter", "handle": "janedoe"}).entry
    ingest(engine, clone())  # scores at most 0.999: no pair is certain
    assert [a.entry_id for a in alerts(engine)] == [usual.id]
    assert alerts(engine, entry_id=strict.id) == []


def test_an_erased_entry_alerts_no_more(engine: Engine) -> None:
    ingest(engine, jane())
    entry = register(engine, {"platform": "twitter", "handle": "janedoe"}).entry
    engine.watchlist.delete(ALICE, entry.id)
    ingest(engine, clone())
    assert alerts(engine, ADMIN) == []
    with pytest.raises(NotFoundError):
        engine.watchlist.entry(ALICE, entry.id)


def test_entries_and_alerts_belong_to_their_key(engine: Engine) -> None:
    ingest(engine, jane())
    mine = register(engine, {"platform": "twitter", "handle": "janedoe"}, caller=ALICE).entry
    ingest(engine, clone())
    (alert,) = alerts(engine, ALICE)

    assert engine.watchlist.entries(BOB) == []
    assert alerts(engine, BOB) == []
    for call in (
        lambda: engine.watchlist.entry(BOB, mine.id),
        lambda: engine.watchlist.delete(BOB, mine.id),
        lambda: engine.watchlist.acknowledge(BOB, alert.id),
        lambda: engine.watchlist.deliveries(BOB, alert.id),
        lambda: engine.watchlist.alerts(BOB, AlertQuery(entry_id=mine.id)),
    ):
        with pytest.raises(NotFoundError):
            call()
    # "watchlist.all" sees every key's.
    assert [e.id for e in engine.watchlist.entries(ADMIN)] == [mine.id]
    assert engine.watchlist.acknowledge(ADMIN, alert.id).acknowledged_at is not None
    assert engine.watchlist.entry(ALICE, mine.id) == mine


def test_an_entry_added_by_another_process_is_checked_from_the_next_ingest(
    engine: Engine,
) -> None:
    ingest(engine, jane(), stranger(1))  # the engine has loaded its (empty) watchlist
    other_store = Store.open(engine.settings.resolved_database_url)
    try:
        other = Watchlist(
            store=other_store,
            embedder=engine.embedder,
            avatars=engine.avatars,
            scorer=engine.scorer,
            matcher=engine.matcher,
            settings=engine.settings,
        )
        other.register(
            ALICE, RegisterRequest(identity={"platform": "twitter", "handle": "janedoe"})
        )
    finally:
        other_store.close()
    ingest(engine, clone())
    assert [a.profile["handle"] for a in alerts(engine)] == ["jane_doe_official"]


def test_what_cannot_be_registered_says_why(engine: Engine) -> None:
    ingest(engine, jane())
    with pytest.raises(NotFoundError, match="no stored profile twitter/nobody"):
        register(engine, {"platform": "twitter", "handle": "nobody"})
    with pytest.raises(InvalidRecordError, match="needs a display name"):
        register(engine, {"location": "Lisbon"})
    with pytest.raises(InvalidRecordError) as bad_field:
        register(engine, {"display_name": "Jane", "followers_count": -1})
    assert bad_field.value.field == "followers_count"
    floor = engine.scorer.thresholds.possible_clone
    with pytest.raises(InvalidInputError, match="threshold"):
        register(engine, {"platform": "twitter", "handle": "janedoe"}, threshold=floor - 0.01)
    with pytest.raises(InvalidInputError, match="webhook_url"):
        register(
            engine, {"platform": "twitter", "handle": "janedoe"}, webhook_url="ftp://example.com"
        )
    with pytest.raises(InvalidRecordError, match="avatar_path"):
        register(engine, {"display_name": "Jane", "avatar_path": "/etc/passwd"})
    assert engine.watchlist.entries(ADMIN) == []


def test_a_failing_watchlist_check_never_fails_the_ingest(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(engine, jane())
    register(engine, {"platform": "twitter", "handle": "janedoe"})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.watchlist, "_check", broken)
    report = engine.ingest([("index 0", clone())])
    assert report.created == 1
    assert engine.get_profile("twitter", "jane_doe_official").handle == "jane_doe_official"


def test_the_screen_keeps_every_pair_the_model_would_alert_on(engine: Engine) -> None:
    """Against every pair scored one by one, as a check would: the same alerts, no fewer."""
    rng = random.Random(7)
    first = ["Jane", "John", "Maria", "Omar", "Aiko", "Luca", "Eva", "Ben", "Sara", "Tom"]
    last = ["Doe", "Smith", "Garcia", "Haddad", "Tanaka", "Rossi", "Novak", "Carter"]
    topics = ["octopus", "jazz", "chess", "bread", "cycling", "poetry", "robots", "tea"]
    people = [
        {
            "display_name": f"{first[i % 10]} {last[(i * 3) % 8]}",
            "handle": f"{first[i % 10]}{last[(i * 3) % 8]}".lower(),
            "bio": f"Writing about {topics[i % 8]} and {topics[(i * 5 + 1) % 8]} since {1990 + i}.",
            "seed": 10 + i,
        }
        for i in range(20)
    ]

    def copy_of(person: dict[str, Any], n: int) -> dict[str, Any]:
        """A record that copies some of a person's fields, with the usual disguises."""
        name = person["display_name"]
        out: dict[str, Any] = {"platform": "twitter", "handle": f"{person['handle']}_{n}"}
        if rng.random() < 0.8:
            out["display_name"] = rng.choice([name, name.replace("a", "а"), name.upper()])
        if rng.random() < 0.5:
            out["bio"] = person["bio"] + rng.choice(["", " DM for promo"])
        if rng.random() < 0.6:
            image = photo(person["seed"], size=96)
            if rng.random() < 0.5:
                image = ImageOps.mirror(image)
            out["avatar_base64"] = b64(jpeg_bytes(image, quality=rng.choice([50, 90])))
        return out

    floor = engine.scorer.thresholds.possible_clone
    entries = []
    for person in people[:12]:
        identity = {
            "display_name": person["display_name"],
            "bio": person["bio"],
            "avatar_base64": b64(jpeg_bytes(photo(person["seed"], size=96))),
        }
        entries.append(register(engine, identity, threshold=floor).entry)

    incoming = [copy_of(rng.choice(people), n) for n in range(40)]
    ingest(engine, *incoming)
    found = {(a.entry_id, a.profile["handle"]) for a in alerts(engine, ADMIN, limit=500)}

    rows = [engine.store.get("twitter", r["handle"]) for r in incoming]
    assert all(rows)
    expected = set()
    for entry in entries:
        side = _entry_side(entry)
        _, popularity = engine.matcher.neighbourhood(side, exclude_id=None)
        evidence = compare(side, [side_of_row(r) for r in rows if r], popularity=popularity)
        for row, verdict in zip(rows, engine.scorer.score(evidence), strict=True):
            if row is not None and verdict.score >= entry.threshold:
                expected.add((entry.id, row.handle))
    # The corpus has clones and near misses, so the comparison means something.
    assert 5 <= len(expected) < 40
    assert found == expected
    # And the screen is a screen: most pairs never reach the pairwise comparison.
    snapshot = engine.watchlist._current_entries()
    screened = snapshot.screen([side_of_row(r) for r in rows if r], bounds=engine.matcher.bounds)
    assert sum(len(kept) for kept in screened.values()) < len(entries) * len(rows) / 2


def test_the_same_watch_asked_again_returns_the_first_entry(engine: Engine) -> None:
    ingest(engine, jane())
    named = {"platform": "twitter", "handle": "janedoe"}
    first = register(engine, named)
    assert first.existing is False and first.page_token
    again = register(engine, {"platform": "Twitter", "handle": "@JaneDoe"})
    assert again.existing and again.entry.id == first.entry.id
    assert again.page_token is None and again.webhook_secret is None
    # Without platform and handle, the same name (folded) and photo are the same identity.
    face = {"display_name": "Jane Doe", "avatar_base64": jane()["avatar_base64"]}
    by_face = register(engine, face)
    assert register(engine, {**face, "display_name": "JANE  DOE"}).entry.id == by_face.entry.id
    assert not register(engine, {**face, "display_name": "Jane Roe"}).existing
    # Another key, threshold or webhook is another watch.
    assert not register(engine, named, caller=BOB).existing
    assert not register(engine, named, threshold=0.9).existing

    ingest(engine, clone())
    alerted = [a.entry_id for a in alerts(engine, ALICE)]
    assert alerted.count(first.entry.id) == 1  # not once per time the watch was asked
