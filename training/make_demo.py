# ruff: noqa: E501 - the demo tables read best one person a line
"""Write the small demo corpus bundled with the service (`service/demo/`).

    python -m training.make_demo

Invented people (no real person's data ships with the product), generated avatars, and a few
impersonators made with the same clone transformations the training set uses, so that a first
`clonefinder check --platform twitter --handle maya_okafor` on a fresh install finds something.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.synthetic_images import default_avatar, generate_image
from training.transforms import encode_jpeg, transform_avatar

DEMO_DIR = Path(__file__).resolve().parents[1] / "service" / "demo"

PEOPLE = [
    ("maya_okafor", "Maya Okafor", "Climate scientist at the coast lab. Tides, storms, data.", 2009, 48200, True),
    ("lucas.ferreira", "Lucas Ferreira", "Chef. Lisbon. Fermenting everything in sight.", 2012, 9100, False),
    ("annika_berg", "Annika Berg", "Illustrator of children's books and very small dogs.", 2010, 15300, False),
    ("dr_samir_haddad", "Dr Samir Haddad", "Cardiologist. Views my own. Heart health explained simply.", 2014, 77000, True),
    ("yuki.tanabe", "Yuki Tanabe", "Product designer. Tokyo -> Berlin. Type nerd.", 2013, 3200, False),
    ("carla_mendes", "Carla Mendes", "Running coach. Marathon PB 2:58. Plans for beginners.", 2011, 21400, False),
    ("jonas_weber", "Jonas Weber", "Jazz pianist. Tour dates on my site.", 2008, 6100, False),
    ("priya.raman", "Priya Raman", "Data journalist. Charts about housing and transport.", 2015, 12800, False),
    ("tom_oconnell", "Tom O'Connell", "Secondary school maths teacher. Puzzles every Friday.", 2016, 950, False),
    ("elena_petrova", "Елена Петрова", "Переводчик и поэт. Translator and poet.", 2012, 4300, False),
    ("maya_okafor_art", "Maya Okafor", "Ceramics and glaze experiments. Studio in Leeds.", 2018, 640, False),
    ("jsmith_builds", "John Smith", "Carpenter. Custom furniture and repairs.", 2017, 210, False),
    ("john.smith.music", "John Smith", "Folk singer-songwriter from Cork.", 2013, 1800, False),
]  # fmt: skip

# (original handle, clone handle, clone display name, bio edit, avatar transforms)
CLONES = [
    ("maya_okafor", "maya_0kafor", "Maya Οkafor", " DM for promo 💰", ["avatar:jpeg", "avatar:crop", "avatar:resize"]),
    ("maya_okafor", "realmayaokafor", "Maya Okafor ✔", "", ["avatar:flip", "avatar:colour"]),
    ("dr_samir_haddad", "dr_samir_hadadd", "Dr Samir Haddad", " Follow back!", ["avatar:circle", "avatar:jpeg"]),
    ("carla_mendes", "carlamendes_official", "Carla Mendes", None, ["avatar:frame", "avatar:resize"]),
]  # fmt: skip


def main() -> None:
    rng = random.Random(2026)
    avatars = DEMO_DIR / "avatars"
    avatars.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, object]] = {}
    originals: dict[str, bytes] = {}
    for seed, (handle, name, bio, year, followers, verified) in enumerate(PEOPLE, start=900_000):
        image = generate_image(seed, size=200, style="face")
        data = encode_jpeg(image, quality=80)
        originals[handle] = data
        (avatars / f"{handle}.jpg").write_bytes(data)
        records[handle] = {
            "platform": "twitter",
            "handle": handle,
            "display_name": name,
            "bio": bio,
            "avatar_path": f"avatars/{handle}.jpg",
            "created_at": f"{year}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T09:00:00Z",
            "followers_count": followers,
            "verified": verified,
            "profile_url": f"https://twitter.example/{handle}",
        }
    for original, handle, name, bio_edit, transforms in CLONES:
        source = records[original]
        data = transform_avatar(originals[original], transforms, rng)
        (avatars / f"{handle}.jpg").write_bytes(data)
        records[handle] = {
            "platform": "twitter",
            "handle": handle,
            "display_name": name,
            "bio": "" if bio_edit is None else f"{source['bio']}{bio_edit}",
            "avatar_path": f"avatars/{handle}.jpg",
            "created_at": f"2024-0{rng.randint(1, 9)}-0{rng.randint(1, 9)}T03:00:00Z",
            "followers_count": rng.randint(3, 90),
            "verified": False,
        }
    crowd = encode_jpeg(default_avatar("silhouette", size=200), quality=80)
    (avatars / "default.jpg").write_bytes(crowd)
    for i in range(6):
        handle = f"user{48213 + 977 * i}"
        records[handle] = {
            "platform": "twitter",
            "handle": handle,
            "display_name": rng.choice(["Sam", "Alex", "Kim", "Lee", "Jo", "Max"]) + f" {i}",
            "avatar_path": "avatars/default.jpg",
            "followers_count": rng.randint(0, 40),
        }
    lines = [json.dumps(r, ensure_ascii=False) for r in records.values()]
    (DEMO_DIR / "profiles.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} demo profiles to {DEMO_DIR}")


if __name__ == "__main__":
    main()
