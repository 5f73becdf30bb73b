"""Emoji with their English names (`--data builtin:emoji`): a small real image-caption set that
installs offline, for CLIP (Radford et al., 2021) and DALL-E-style text-to-image (Ramesh et al.,
2021) at CPU scale.

Images: Google's Noto Color Emoji font as Debian ships it (`fonts-noto-color-emoji`,
`/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf`: colour bitmaps at one strike of 109
pixels per em), drawn by Pillow (`embedded_color=True`, shaped by libraqm so ZWJ sequences,
flags and keycaps become one glyph), cropped to the glyph's box, padded to a square, resized
(Lanczos, alpha premultiplied) and composited on white: uint8 (3, S, S), S = 32 by default.
Names: every fully-qualified emoji of the `emoji` package (its copy of Unicode's emoji-test.txt
and CLDR's English names); the caption is the name without colons and underscores, lower-cased
("grinning face", "waving hand medium skin tone"; a flag is "flag of <place>"). An emoji the
font cannot draw as one glyph (newer than the font, or a sequence it lacks) renders empty or
as several glyphs and is skipped; a skin-tone variant the font draws exactly like another
emoji of its group is skipped too; both counts are logged.

Splits keep each emoji's skin-tone variants together (the group is the name with its skin-tone
words removed), so a test caption's emoji was never seen in training in any skin tone: about
10% of the groups are the test split (fixed: scores from different seeds compare), 10% valid
(chosen by the seed among the rest), 80% train; a group's split is drawn from its name alone
(a hash), so a newer `emoji` package adds emoji without moving the others.

The drawn images are written once to `${ATTNLAB_CACHE:-~/.cache/attnlab}/emoji-v1/KEY.npz`
(atomic write) with the emoji they show, KEY hashing the format version, the `emoji` package's
version, the font file's size, Pillow's version and the image size, so any of them changing
draws them again; captions and groups are made from the names at every load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

from attnlab.data.spoken_words import cache_root
from attnlab.errors import ConfigError, DataError, MissingFileError
from attnlab.serialization import atomic_write

log = logging.getLogger(__name__)

VERSION = 1  # bump when the rendering changes in a way the cache key does not show
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_PACKAGE = "fonts-noto-color-emoji"
FONT_SIZE = 109  # the font's one bitmap strike (pixels per em); other sizes are refused
TEST_FRACTION = 0.1  # of the groups
VALID_FRACTION = 0.1
TEST_SEED = 0  # the test groups are fixed whatever the run's seed
_SKIN_TONE = re.compile(r"_(?:(?:medium-)?(?:light|dark)|medium)_skin_tone")
_REGIONAL = range(0x1F1E6, 0x1F200)  # regional indicator letters: a pair is a flag
_TAG_FLAG = 0x1F3F4  # black flag + tag letters: England, Scotland, Wales
_TAGS = range(0xE0020, 0xE0080)


@dataclass(frozen=True)
class EmojiSet:
    """Every drawable fully-qualified emoji, in caption order."""

    images: np.ndarray  # (N, 3, S, S) uint8, on white
    texts: list[str]  # the emoji themselves
    captions: list[str]
    groups: list[str]  # the caption without skin tones: what a split keeps together
    path: Path | None  # the cache file it was read from


def _emoji_package():
    try:
        import emoji
    except ImportError as error:
        raise MissingFileError("builtin:emoji takes its names from the `emoji` package, which "
                               "is not installed; pip install emoji") from error
    return emoji


def caption_of(text: str, name: str) -> str:
    """':waving_hand_medium_skin_tone:' -> 'waving hand medium skin tone'; a flag's name
    (':Åland_Islands:') -> 'flag of åland islands'."""
    words = " ".join(name.strip(":").replace("_", " ").split()).lower()
    codes = [ord(c) for c in text]
    if codes[0] in _REGIONAL or codes[0] == _TAG_FLAG and any(c in _TAGS for c in codes):
        return f"flag of {words}"
    return words


def group_of(text: str, name: str) -> str:
    """The caption of `name` without its skin-tone words: one emoji in every skin tone."""
    return caption_of(text, _SKIN_TONE.sub("", name))


def emoji_entries() -> list[tuple[str, str, str]]:
    """(emoji, caption, group) of every fully-qualified emoji of the `emoji` package, sorted by
    caption (a base before its skin tones)."""
    emoji = _emoji_package()
    qualified = emoji.STATUS["fully_qualified"]
    entries = [(text, caption_of(text, data["en"]), group_of(text, data["en"]))
               for text, data in emoji.EMOJI_DATA.items() if data["status"] == qualified]
    return sorted(entries, key=lambda e: (e[1], e[0]))


def _font() -> ImageFont.FreeTypeFont:
    if not FONT.is_file():
        raise MissingFileError(f"builtin:emoji needs {FONT} (Debian's {FONT_PACKAGE} package); "
                               f"install it with `sudo apt-get install {FONT_PACKAGE}` (or "
                               "`make packages`)")
    try:
        return ImageFont.truetype(str(FONT), size=FONT_SIZE)
    except OSError as error:
        raise DataError(f"{FONT}: not a readable font ({error}); reinstall it with `sudo "
                        f"apt-get install --reinstall {FONT_PACKAGE}`") from None


def render_emoji(text: str, font: ImageFont.FreeTypeFont, image_size: int
                 ) -> np.ndarray | None:
    """(3, S, S) uint8: `text` drawn as one colour glyph, cropped, padded square, resized and
    composited on white; None when the font draws nothing or more than one glyph for it."""
    one = font.getlength("\N{GRINNING FACE}")
    if font.getlength(text) > 1.5 * one:  # shaped into several glyphs: no ligature for it
        return None
    side = int(2 * one)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((side // 4, side // 4), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:  # nothing drawn (.notdef is empty in this font)
        return None
    glyph = canvas.crop(box)
    square = Image.new("RGBA", (max(glyph.size),) * 2, (0, 0, 0, 0))
    square.paste(glyph, ((square.width - glyph.width) // 2, (square.height - glyph.height) // 2))
    small = square.resize((image_size, image_size), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", small.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, small).convert("RGB")
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()  # (3, S, S)


def render_set(entries: list[tuple[str, str, str]], image_size: int) -> EmojiSet:
    """The EmojiSet of `entries` (from emoji_entries), drawn now; skips are logged."""
    if image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size}")
    font = _font()
    start = time.perf_counter()
    kept: list[tuple[np.ndarray, tuple[str, str, str]]] = []
    seen: dict[str, list[bytes]] = {}
    empty = same = 0
    for entry in entries:
        image = render_emoji(entry[0], font, image_size)
        if image is None:
            empty += 1
            continue
        drawn = seen.setdefault(entry[2], [])
        if image.tobytes() in drawn:  # a skin tone the font draws like another of its group
            same += 1
            continue
        drawn.append(image.tobytes())
        kept.append((image, entry))
    log.info("emoji: %d of %d drawn at %dx%d in %.1f s; %d skipped as not drawable by %s, %d "
             "as drawn like another of their group", len(kept), len(entries), image_size,
             image_size, time.perf_counter() - start, empty, FONT.name, same)
    if not kept:
        raise DataError(f"{FONT}: none of {len(entries)} emoji could be drawn; reinstall "
                        f"{FONT_PACKAGE}")
    texts, captions, groups = (list(column) for column in zip(*(k[1] for k in kept), strict=True))
    return EmojiSet(np.stack([k[0] for k in kept]), texts, captions, groups, None)


def cache_path(image_size: int, limit: int | None = None) -> Path:
    emoji = _emoji_package()
    key = json.dumps({"version": VERSION, "emoji": emoji.__version__,
                      "font_bytes": FONT.stat().st_size if FONT.is_file() else None,
                      "pillow": PIL.__version__, "image_size": image_size, "limit": limit},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / f"emoji-v{VERSION}" / f"{digest}.npz"


def emoji_set(image_size: int = 32, *, limit: int | None = None) -> EmojiSet:
    """Every drawable fully-qualified emoji at `image_size` (the first `limit` in caption
    order when given: tests), drawn on first use and read from the cache after that."""
    _font()  # a missing font is named before anything else
    path = cache_path(image_size, limit)
    if not path.is_file():
        drawn = render_set(emoji_entries()[:limit], image_size)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=drawn.images, texts=np.array(drawn.texts))

        atomic_write(path, write)
    with np.load(path) as data:
        images, texts = data["images"], data["texts"].tolist()
    named = {text: (caption, group) for text, caption, group in emoji_entries()}
    # captions and groups follow the naming rules of this version, not the cached file's
    return EmojiSet(images, texts, [named[t][0] for t in texts], [named[t][1] for t in texts],
                    path)


def _uniform(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by (seed, name): a group's draw never depends on the others."""
    digest = hashlib.sha256(f"{seed}\t{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_split(groups: list[str], seed: int) -> dict[str, list[int]]:
    """split -> rows, by group: a group is test with probability TEST_FRACTION (drawn by
    TEST_SEED: fixed), else valid with VALID_FRACTION / (1 - TEST_FRACTION) (drawn by `seed`),
    else train; each group's draw depends on its name alone, so a newer `emoji` package adds
    groups without moving the others. At least one group each."""
    names = sorted(set(groups))
    if len(names) < 3:
        raise DataError(f"emoji: {len(names)} group(s); a split by group needs 3")
    u_test = {name: _uniform(TEST_SEED, f"test\t{name}") for name in names}
    u_valid = {name: _uniform(seed, f"valid\t{name}") for name in names}
    test = {name for name in names if u_test[name] < TEST_FRACTION}
    test = test or {min(names, key=u_test.get)}
    rest = [name for name in names if name not in test]
    valid = {name for name in rest if u_valid[name] < VALID_FRACTION / (1 - TEST_FRACTION)}
    if not valid or len(valid) == len(rest):
        valid = {min(rest, key=u_valid.get)}
    rows: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, group in enumerate(groups):
        rows["test" if group in test else "valid" if group in valid else "train"].append(i)
    return rows


def _code_points(text: str) -> str:
    return " ".join(f"U+{ord(c):04X}" for c in text)


def emoji_splits(image_size: int = 32, seed: int = 0, *, limit: int | None = None
                 ) -> dict[str, dict]:
    """split -> {"images" (N, 3, S, S) uint8, "captions", "sources" ("emoji:U+1F600"),
    "groups"}: `builtin:emoji`, split by group."""
    found = emoji_set(image_size, limit=limit)
    splits = {}
    for split, rows in group_split(found.groups, seed).items():
        splits[split] = {"images": found.images[rows],
                         "captions": [found.captions[i] for i in rows],
                         "sources": [f"emoji:{_code_points(found.texts[i])}" for i in rows],
                         "groups": [found.groups[i] for i in rows]}
    return splits
