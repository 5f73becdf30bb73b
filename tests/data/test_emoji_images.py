"""builtin:emoji: English names as captions, glyphs drawn on white, a split that keeps an
emoji's skin tones together (no test caption's emoji in train), the cache, the missing font.
Rendering is tested on a slice of the set (`limit`), so each test stays short."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.data import emoji_images
from attnlab.data.captions import load_captioned
from attnlab.data.emoji_images import (
    FONT,
    FONT_PACKAGE,
    caption_of,
    emoji_entries,
    emoji_splits,
    group_of,
    render_emoji,
)
from attnlab.errors import MissingFileError

emoji = pytest.importorskip("emoji", reason="the `emoji` package is not installed "
                            "(pip install emoji)")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason=f"Debian package {FONT_PACKAGE} is "
                                "not installed (make packages)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    return tmp_path


def test_captions_and_groups_from_english_names():
    assert caption_of("\N{GRINNING FACE}", ":grinning_face:") == "grinning face"
    wave = "\N{WAVING HAND SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}"
    assert caption_of(wave, ":waving_hand_medium_skin_tone:") == "waving hand medium skin tone"
    assert group_of(wave, ":waving_hand_medium_skin_tone:") == "waving hand"
    assert group_of("x", ":handshake_medium-light_skin_tone_dark_skin_tone:") == "handshake"
    assert group_of("x", ":man_dark_skin_tone_blond_hair:") == "man blond hair"
    assert caption_of("\U0001F1E6\U0001F1FD", ":Åland_Islands:") == "flag of åland islands"
    entries = emoji_entries()
    assert len(entries) > 3500  # every fully-qualified emoji
    assert [e[1] for e in entries] == sorted(e[1] for e in entries)
    assert ("\N{GRINNING FACE}", "grinning face", "grinning face") in entries
    assert not any(":" in c or "_" in c for _, c, _ in entries)


@needs_font
def test_render_draws_one_glyph_on_white():
    font = emoji_images._font()
    face = render_emoji("\N{GRINNING FACE}", font, 32)
    assert face.shape == (3, 32, 32) and face.dtype == np.uint8
    assert (face[:, 0, 0] == 255).all()  # a white corner
    assert (face[0] > 200).sum() > 100 and (face[2] < 100).sum() > 100  # a yellow face
    # the glyph fills the square: ink reaches two opposite sides
    ink = (face < 250).any(axis=0)
    assert ink[:, 0].any() or ink[0].any()
    assert render_emoji("\U0010FFFD", font, 32) is None  # nothing drawn: skipped
    assert render_emoji("\N{GRINNING FACE}\N{GRINNING FACE}", font, 32) is None  # two glyphs


@needs_font
def test_split_keeps_each_emoji_in_one_split(cache):
    splits = emoji_splits(32, seed=0, limit=400)
    assert {s: tuple(p["images"].shape[1:]) for s, p in splits.items()} == {
        s: (3, 32, 32) for s in ("train", "valid", "test")}
    groups = {s: set(p["groups"]) for s, p in splits.items()}
    captions = {s: set(p["captions"]) for s, p in splits.items()}
    assert not groups["train"] & groups["test"] and not groups["valid"] & groups["test"]
    assert not groups["train"] & groups["valid"]
    assert not captions["train"] & captions["test"]
    total = sum(len(g) for g in groups.values())
    assert 0.05 < len(groups["test"]) / total < 0.15
    tones = [c for c in splits["train"]["captions"] if "skin tone" in c]
    assert tones, "the slice should hold skin-tone variants"
    first = splits["test"]["sources"][0]
    assert first.startswith("emoji:U+")
    text = "".join(chr(int(code[2:], 16)) for code in first[len("emoji:"):].split())
    assert caption_of(text, emoji.EMOJI_DATA[text]["en"]) == splits["test"]["captions"][0]
    # the test split is fixed; valid follows the seed
    other = emoji_splits(32, seed=1, limit=400)
    assert other["test"]["captions"] == splits["test"]["captions"]
    assert other["valid"]["captions"] != splits["valid"]["captions"]


@needs_font
def test_rendered_set_is_cached(cache):
    first = emoji_images.emoji_set(16, limit=60)
    assert first.path.is_file() and first.path.is_relative_to(cache)
    assert first.images.shape[1:] == (3, 16, 16)
    again = emoji_images.emoji_set(16, limit=60)
    assert again.path == first.path and np.array_equal(again.images, first.images)
    assert again.captions == first.captions
    assert emoji_images.emoji_set(16, limit=61).path != first.path  # the key follows the set


@needs_font
def test_load_captioned_builtin_emoji(cache, monkeypatch):
    real = emoji_images.emoji_set
    monkeypatch.setattr(emoji_images, "emoji_set", lambda size, limit=None: real(size, limit=200))
    splits = load_captioned("builtin:emoji")
    assert splits["train"].images.shape[1:] == (3, 32, 32)
    assert splits["train"].images.dtype == torch.uint8
    assert not set(splits["train"].captions) & set(splits["test"].captions)


def test_missing_font_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji_images, "FONT", tmp_path / "NotoColorEmoji.ttf")
    with pytest.raises(MissingFileError, match=f"apt-get install {FONT_PACKAGE}"):
        emoji_images.emoji_set(32)


def test_group_split_is_stable_and_by_group():
    groups = [f"thing {i // 3}" for i in range(600)]  # 200 groups of three rows
    rows = emoji_images.group_split(groups, seed=0)
    assert sorted(sum(rows.values(), [])) == list(range(600))
    of = {s: {groups[i] for i in r} for s, r in rows.items()}
    assert not of["train"] & of["test"] and not of["train"] & of["valid"]
    assert 10 <= len(of["test"]) <= 35 and 10 <= len(of["valid"]) <= 35
    grown = emoji_images.group_split(groups + ["a newer emoji"], seed=0)
    assert grown["test"][:len(rows["test"])] == rows["test"]  # nobody else moved
    assert {groups[i] for i in emoji_images.group_split(groups, seed=5)["test"]} == of["test"]
