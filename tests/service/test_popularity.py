"""How common a photo is, judged by unrelated identities: a victim's many clones keep the photo
the victim's own, while a default silhouette or a stock photo worn by strangers says nothing.

The same rule holds wherever pairs are scored: a check, a clusters scan and the watchlist.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageOps

from indexers import text
from indexers.bio import BioEmbedder
from service.auth.roles import Caller
from service.core.settings import Settings
from service.matching.engine import Engine
from service.scans.clusters import find_clusters
from service.watchlist.service import AlertQuery, RegisterRequest
from tests.images import b64, jpeg_bytes, photo

pytestmark = pytest.mark.slow

CLONES = 30
SILHOUETTE_WEARERS = 2000
STOCK_WEARERS = 200
# A key that may name a stored profile to protect it (an individual key sends the identity).
OWNER = Caller(key_id=5, name="owner", role="platform")
FIRST = ("Amara", "Bruno", "Chen", "Dalia", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun",
         "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sven",
         "Tariq")  # fmt: skip
LAST = ("Abebe", "Berg", "Castillo", "Dube", "Eriksen", "Fofana", "Gruber", "Horvat", "Ito",
        "Jovanovic", "Kaya", "Lindqvist", "Mbeki", "Nakamura", "Olsen", "Popescu", "Quispe",
        "Reyes", "Sato", "Toure", "Ulloa", "Varga", "Wojcik", "Yilmaz", "Zapata")  # fmt: skip


def silhouette() -> Image.Image:
    """A platform's default avatar: a grey figure on a grey ground."""
    image = Image.new("RGB", (400, 400), (204, 214, 221))
    draw = ImageDraw.Draw(image)
    draw.ellipse((128, 72, 272, 216), fill=(245, 248, 250))
    draw.ellipse((56, 240, 344, 480), fill=(245, 248, 250))
    return image


def stranger(i: int, avatar: Image.Image, *, prefix: str) -> dict[str, Any]:
    """An unrelated person of their own name and handle, wearing `avatar`."""
    rng = random.Random(f"{prefix}{i}")
    first, last = rng.choice(FIRST), rng.choice(LAST)
    middle = rng.choice(string.ascii_uppercase)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(6, 10)))
    return {
        "platform": "twitter",
        "handle": f"{prefix}_{word}",
        "display_name": f"{first} {middle}. {last}",
        "avatar_base64": b64(jpeg_bytes(avatar, quality=80 + i % 15)),
    }


def victim() -> dict[str, Any]:
    return {
        "platform": "instagram",
        "handle": "marisol.quintero",
        "display_name": "Marisol Quintero",
        "avatar_base64": b64(jpeg_bytes(photo(4242))),
        "created_at": "2012-05-01T10:00:00Z",
        "followers_count": 250_000,
    }


def clone(i: int) -> dict[str, Any]:
    """A bot farm's copy: the victim's photo (re-encoded, resized, sometimes mirrored) and name,
    under a handle of its own."""
    image = photo(4242).resize((200 + 5 * i, 200 + 5 * i))
    if i % 3 == 0:
        image = ImageOps.mirror(image)
    return {
        "platform": "instagram",
        "handle": f"{['mari', 'sol', 'mq', 'quin'][i % 4]}_{i:02d}_{'xyz'[i % 3]}daily",
        "display_name": "Marisol Quintero" if i % 2 else "Marisol Quintero ✨",
        "avatar_base64": b64(jpeg_bytes(image, quality=60 + i)),
        "created_at": f"2023-0{1 + i % 9}-01T10:00:00Z",
        "followers_count": i,
    }


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder: Path = tmp_path_factory.mktemp("popularity")
    engine = Engine.open(Settings(data_dir=folder / "data"), embedder=BioEmbedder())
    stock = photo(777)
    records = [victim(), *(clone(i) for i in range(CLONES))]
    records += [stranger(i, silhouette(), prefix="s") for i in range(SILHOUETTE_WEARERS)]
    records += [stranger(i, stock, prefix="k") for i in range(STOCK_WEARERS)]
    report = engine.ingest([(f"record {i}", r) for i, r in enumerate(records)])
    assert report.rejected == 0
    yield engine
    engine.close()


def clone_handles() -> set[str]:
    return {clone(i)["handle"] for i in range(CLONES)}


def test_a_victim_cloned_thirty_times_sees_every_clone_flagged(engine: Engine) -> None:
    result = engine.check({"platform": "instagram", "handle": "marisol.quintero"}, top_k=50)
    flagged = {m.profile["handle"] for m in result.matches if m.label == "likely_clone"}
    assert flagged == clone_handles()
    reasons = " ".join(result.matches[0].reasons)
    assert "copy this identity" in reasons
    assert "counts for little" not in reasons


@pytest.mark.parametrize(
    ("avatar", "prefix", "wearer"),
    [(silhouette, "s", 17), (lambda: photo(777), "k", 23)],
    ids=["default silhouette", "stock photo"],
)
def test_a_photo_worn_by_strangers_flags_none_of_them(
    engine: Engine, avatar: Any, prefix: str, wearer: int
) -> None:
    query = stranger(wearer, avatar(), prefix=prefix)
    ranked = engine.check(
        {"platform": "twitter", "handle": query["handle"]}, top_k=50, min_score=0.0
    ).matches
    wearing = [m for m in ranked if (m.signals["avatar"] or 0) >= 0.875]  # within 4 bits
    assert wearing, "the wearers are candidates, just not clones"
    for match in wearing:
        shared = re.search(r"shared by (\d+) unrelated accounts", " ".join(match.reasons))
        assert shared and int(shared.group(1)) >= 20
    assert [m for m in ranked if m.label == "likely_clone"] == []
    # Among 2,000 strangers a few share a full name (or its look-alike: "Dalia I. Eriksen"
    # and "Dalia L. Eriksen") by chance; only those are worth a look.
    leads = [m for m in ranked if m.label == "possible_clone"]
    name = text.normalize_name(query["display_name"])
    assert all(text.normalize_name(m.profile["display_name"]) == name for m in leads)


def test_a_clusters_scan_groups_the_clones_and_leaves_the_strangers(engine: Engine) -> None:
    copies = [clone(i) | {"handle": f"fresh_copy_{i}"} for i in range(3)]
    wearers = [stranger(5000 + i, silhouette(), prefix="new") for i in range(3)]
    wearers += [stranger(6000 + i, photo(777), prefix="new") for i in range(3)]
    uploads = copies + wearers
    clusters = find_clusters(engine, [(f"upload {i}", r) for i, r in enumerate(uploads)])
    grouped = {m["handle"] for c in clusters for m in c.get("members", [])}
    assert {c["handle"] for c in copies} | {"marisol.quintero"} <= grouped
    assert grouped.isdisjoint(w["handle"] for w in wearers)


def test_the_watchlist_alerts_on_a_new_clone_and_not_on_a_new_stranger(engine: Engine) -> None:
    entry = engine.watchlist.register(
        OWNER, RegisterRequest(identity={"platform": "instagram", "handle": "marisol.quintero"})
    ).entry
    engine.ingest(
        [
            ("late clone", clone(CLONES) | {"handle": "marisol_q_late"}),
            ("late stranger", stranger(9000, silhouette(), prefix="late")),
            ("late stock", stranger(9001, photo(777), prefix="late")),
        ]
    )
    alerted = {
        alert.profile["handle"]
        for alert in engine.watchlist.alerts(OWNER, AlertQuery(entry_id=entry.id)).alerts
    }
    assert alerted == {"marisol_q_late"}
