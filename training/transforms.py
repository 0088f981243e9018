"""Clone transformations: how impersonators alter a copied name, handle, bio and avatar.

Each transform takes the original value and a seeded `random.Random`, and returns the altered
value with the tag it is recorded under (e.g. "name:cyrillic", "avatar:flip"), so that a
benchmark can report recall per transformation. A transform that cannot apply to a value (no
`l` to turn into `1`) returns None; callers pick another. The tag lists below are the complete
vocabulary, which the tests use to check that a corpus exercises every kind.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

NAME_TRANSFORMS: tuple[str, ...] = (
    "name:exact",
    "name:case",
    "name:decoration",
    "name:cyrillic",
    "name:greek",
    "name:I_for_l",
    "name:0_for_o",
    "name:rn_for_m",
)
LOOKALIKE_NAME_TRANSFORMS: tuple[str, ...] = NAME_TRANSFORMS[3:]
HANDLE_TRANSFORMS: tuple[str, ...] = (
    "handle:underscore",
    "handle:digit",
    "handle:year",
    "handle:affix",
    "handle:double_letter",
    "handle:drop_letter",
    "handle:l_to_1",
    "handle:l_to_I",
    "handle:o_to_0",
    "handle:separator",
)
AVATAR_TRANSFORMS: tuple[str, ...] = (
    "avatar:jpeg",
    "avatar:resize",
    "avatar:crop",
    "avatar:flip",
    "avatar:frame",
    "avatar:colour",
    "avatar:grey",
    "avatar:sepia",
    "avatar:rotate",
    "avatar:circle",
    "avatar:text_strip",
)
BIO_TRANSFORMS: tuple[str, ...] = (
    "bio:verbatim",
    "bio:truncated",
    "bio:promo",
    "bio:word_changed",
    "bio:empty",
)
CONTEXT_TRANSFORMS: tuple[str, ...] = (
    "context:no_created_at",
    "context:bought_followers",
    "context:cross_platform",
    "context:aged_account",
)

CYRILLIC = {
    "a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у",
    "A": "А", "E": "Е", "O": "О", "P": "Р", "C": "С", "X": "Х", "B": "В", "H": "Н",
    "K": "К", "M": "М", "T": "Т",
}  # fmt: skip
GREEK = {
    "o": "ο", "a": "α", "v": "ν", "O": "Ο", "A": "Α", "B": "Β", "E": "Ε", "H": "Η",
    "I": "Ι", "K": "Κ", "M": "Μ", "N": "Ν", "P": "Ρ", "T": "Τ", "X": "Χ", "Z": "Ζ",
}  # fmt: skip
DECORATIONS: tuple[str, ...] = (
    "{} ✔", "{} ✔️", "{} ✅", "{} (official)", "{} backup", "{} 🌸", "✨ {} ✨", "Official {}",
    "{} 🇺🇸", "{} 💫", "{} [backup]", "{} ™",
)  # fmt: skip
PROMO_LINES: tuple[str, ...] = (
    "DM for promo 💰",
    "Follow back!",
    "Follow me for more 🔥",
    "New account, follow me here",
    "Backup account",
    "Check the link below 👇",
    "DM me for collabs",
    "#followback #teamfollowback",
)
HANDLE_AFFIXES: tuple[tuple[str, str], ...] = (
    ("real", ""), ("", "real"), ("the", ""), ("official", ""), ("", "official"), ("its", ""),
    ("iam", ""), ("", "_real"), ("", "_official"), ("real_", ""), ("", "tv"), ("", "hq"),
)  # fmt: skip
HANDLE_LIMITS = {"twitter": 15, "instagram": 30}
_SWAP_WORDS = ("new", "real", "official", "my", "the", "best", "love", "life", "world")


def _replace_some(text: str, table: dict[str, str], rng: random.Random) -> str | None:
    positions = [i for i, ch in enumerate(text) if ch in table]
    if not positions:
        return None
    chosen = set(rng.sample(positions, rng.randint(1, len(positions))))
    return "".join(table[ch] if i in chosen else ch for i, ch in enumerate(text))


def transform_name(name: str, tag: str, rng: random.Random) -> str | None:
    """The display name altered as `tag` says, or None where the tag cannot apply."""
    kind = tag.removeprefix("name:")
    if kind == "exact":
        return name
    if kind == "case":
        options = [v for v in (name.upper(), name.lower(), name.title()) if v != name]
        return rng.choice(options) if options else None
    if kind == "decoration":
        return rng.choice(DECORATIONS).format(name)
    if kind == "cyrillic":
        return _replace_some(name, CYRILLIC, rng)
    if kind == "greek":
        return _replace_some(name, GREEK, rng)
    if kind == "I_for_l":
        return _replace_some(name, {"l": "I"}, rng)
    if kind == "0_for_o":
        return _replace_some(name, {"o": "0", "O": "0"}, rng)
    if kind == "rn_for_m":
        return _replace_some(name, {"m": "rn"}, rng)
    raise ValueError(f"unknown name transform {tag!r}")


def _fit(prefix: str, base: str, suffix: str, limit: int) -> str:
    # Impersonators shorten the copied handle, not their addition, when a platform caps length.
    room = max(limit - len(prefix) - len(suffix), 1)
    return prefix + base[:room] + suffix


def transform_handle(handle: str, tag: str, rng: random.Random, *, platform: str) -> str | None:
    """The handle altered as `tag` says (within the platform's length limit), or None."""
    limit = HANDLE_LIMITS.get(platform, 30)
    kind = tag.removeprefix("handle:")
    interior = list(range(1, len(handle)))
    letters = [i for i, ch in enumerate(handle) if ch.isalpha()]
    out: str | None
    if kind == "underscore":
        if rng.random() < 0.5 and interior:
            i = rng.choice(interior)
            out = (handle[:i] + "_" + handle[i:])[:limit]
        else:
            out = (
                _fit("", handle, "_", limit) if rng.random() < 0.7 else _fit("_", handle, "", limit)
            )
    elif kind == "digit":
        out = _fit("", handle, str(rng.randint(1, 99)), limit)
    elif kind == "year":
        year = rng.randint(1965, 2008)
        out = _fit("", handle, str(year) if rng.random() < 0.5 else f"{year % 100:02d}", limit)
    elif kind == "affix":
        pre, suf = rng.choice(HANDLE_AFFIXES)
        out = _fit(pre, handle, suf, limit)
    elif kind == "double_letter":
        if not letters:
            return None
        i = rng.choice(letters)
        out = (handle[: i + 1] + handle[i] + handle[i + 1 :])[:limit]
    elif kind == "drop_letter":
        inner = [i for i in letters if 0 < i < len(handle) - 1]
        if len(handle) < 4 or not inner:
            return None
        i = rng.choice(inner)
        out = handle[:i] + handle[i + 1 :]
    elif kind in ("l_to_1", "l_to_I", "o_to_0"):
        src, dst = {"l_to_1": ("lL", "1"), "l_to_I": ("l", "I"), "o_to_0": ("oO", "0")}[kind]
        out = _replace_some(handle, {ch: dst for ch in src}, rng)
    elif kind == "separator":
        if "_" in handle or "." in handle:
            sep = "." if platform == "instagram" and rng.random() < 0.5 else ""
            out = (
                re.sub(r"[_.]", sep, handle, count=1)
                if sep or rng.random() < 0.6
                else (re.sub(r"([_.])", r"\1\1", handle, count=1)[:limit])
            )
        elif platform == "instagram" and interior:
            i = rng.choice(interior)
            out = handle[:i] + "." + handle[i:]
        else:
            return None
    else:
        raise ValueError(f"unknown handle transform {tag!r}")
    if not out or out.casefold() == handle.casefold():
        return None
    return out


def transform_bio(bio: str, tag: str, rng: random.Random) -> str | None:
    """The bio altered as `tag` says, or None where the tag cannot apply (an empty bio)."""
    kind = tag.removeprefix("bio:")
    if kind == "empty":
        return ""
    if not bio.strip():
        return None
    if kind == "verbatim":
        return bio
    if kind == "truncated":
        words = bio.split()
        if len(words) < 4:
            return None
        keep = max(2, int(len(words) * rng.uniform(0.4, 0.85)))
        return " ".join(words[:keep]) + ("…" if rng.random() < 0.4 else "")
    if kind == "promo":
        line = rng.choice(PROMO_LINES)
        return f"{bio}\n{line}" if rng.random() < 0.5 else f"{bio} {line}"
    if kind == "word_changed":
        words = bio.split(" ")
        if len(words) < 3:
            return None
        i = rng.randrange(len(words))
        action = rng.random()
        if action < 0.4:
            words[i] = rng.choice(_SWAP_WORDS)
        elif action < 0.7:
            del words[i]
        else:
            words.insert(i, rng.choice(_SWAP_WORDS))
        out = " ".join(words)
        return out if out != bio else None
    raise ValueError(f"unknown bio transform {tag!r}")


# --- avatars -------------------------------------------------------------------------------


def _resize(img: Image.Image, rng: random.Random) -> Image.Image:
    side = rng.randint(48, 200)
    return img.resize((side, side), Image.Resampling.BILINEAR)


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    cut_w, cut_h = int(w * rng.uniform(0.03, 0.10)), int(h * rng.uniform(0.03, 0.10))
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    return img.crop((left, top, w - (cut_w - left), h - (cut_h - top)))


def _frame(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    border = max(1, int(min(w, h) * rng.uniform(0.03, 0.10)))
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (230, 180, 40), (200, 30, 60)])
    framed = ImageOps.expand(img, border=border, fill=colour)
    return framed.resize((w, h), Image.Resampling.BILINEAR)


def _colour(img: Image.Image, rng: random.Random) -> Image.Image:
    enhancers = [ImageEnhance.Color, ImageEnhance.Contrast, ImageEnhance.Brightness]
    for enhancer in rng.sample(enhancers, rng.randint(1, 3)):
        factor = rng.uniform(0.65, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, 1.4)
        img = enhancer(img).enhance(factor)
    return img


def _grey(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


def _sepia(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(img), black=(40, 26, 13), white=(255, 240, 192))


def _rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.uniform(1.0, 5.0) * rng.choice([-1, 1])
    return img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))


def _circle(img: Image.Image, rng: random.Random) -> Image.Image:
    background = Image.new("RGB", img.size, rng.choice([(255, 255, 255), (0, 0, 0), (21, 32, 43)]))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, img.width - 1, img.height - 1), fill=255)
    background.paste(img, (0, 0), mask)
    return background


def _text_strip(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.copy()
    w, h = img.size
    top = h - h // 6
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, top, w, h), fill=rng.choice([(0, 0, 0), (255, 255, 255), (220, 20, 60)]))
    text = rng.choice(["FOLLOW BACK", "fan page", "OFFICIAL", "backup", "DM me"])
    draw.text((w * 0.1, top + 2), text, fill=(128, 128, 128))
    return img


def _flip(img: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(img)


_AVATAR_OPS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "avatar:resize": _resize,
    "avatar:crop": _crop,
    "avatar:flip": _flip,
    "avatar:frame": _frame,
    "avatar:colour": _colour,
    "avatar:grey": _grey,
    "avatar:sepia": _sepia,
    "avatar:rotate": _rotate,
    "avatar:circle": _circle,
    "avatar:text_strip": _text_strip,
}
# Applied in this order whatever was chosen: edit at full size, then shrink, then encode.
_AVATAR_ORDER = (
    "avatar:crop", "avatar:rotate", "avatar:flip", "avatar:colour", "avatar:grey",
    "avatar:sepia", "avatar:frame", "avatar:text_strip", "avatar:circle", "avatar:resize",
)  # fmt: skip


def encode_jpeg(img: Image.Image, *, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB image, as platforms re-encode every upload."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def transform_avatar(jpeg: bytes, tags: Sequence[str], rng: random.Random) -> bytes:
    """The avatar (JPEG bytes) altered by every tag in `tags`, re-encoded as JPEG.

    "avatar:jpeg" means a re-encode at quality 40-90; without it the copy is encoded at the
    platforms' usual 85.
    """
    unknown = [t for t in tags if t not in AVATAR_TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown avatar transforms {unknown}")
    with Image.open(io.BytesIO(jpeg)) as opened:
        img = opened.convert("RGB")
    for tag in _AVATAR_ORDER:
        if tag in tags:
            img = _AVATAR_OPS[tag](img, rng)
    quality = rng.randint(40, 90) if "avatar:jpeg" in tags else 85
    return encode_jpeg(img, quality=quality)
