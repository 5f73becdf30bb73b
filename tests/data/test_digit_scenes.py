"""Digit scenes: captions parse back into the scene they say, scenes are drawn where the
caption says and the same for a seed, and each split draws only its own split's digits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from attnlab.data import captions, digit_scenes
from attnlab.data.captions import load_captioned
from attnlab.data.digit_scenes import (
    CANVAS,
    DIGIT_NAMES,
    HALF,
    RELATIONS,
    SIZES,
    SceneSpec,
    digit_scene_splits,
    make_scenes,
    parse_caption,
    render_digit,
    render_scene,
)
from attnlab.data.images import load_images
from attnlab.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_images("builtin:digits")


def every_spec():
    parts = list(itertools.product(range(10), SIZES))
    yield from (SceneSpec(p) for p in parts)
    for a, b, relation in itertools.product(parts, parts, RELATIONS):
        yield SceneSpec(a, b, relation)


def test_parse_caption_round_trips_every_scene():
    specs = list(every_spec())
    assert len(specs) == 20 + 20 * 20 * 4
    for spec in specs:
        assert parse_caption(spec.caption()) == spec
    assert SceneSpec((3, "large"), (7, "small"), "to the left of").caption() == \
        "a large three to the left of a small seven"
    assert SceneSpec((5, "small")).caption() == "a small five"
    assert parse_caption("  A Large  THREE above a small seven ") == \
        SceneSpec((3, "large"), (7, "small"), "above")


@pytest.mark.parametrize("junk", [
    "", "a three", "three", "a large 3", "a huge three", "a large three left of a small seven",
    "a large three to the left of", "a large three to the left of a small seven and a two",
    "the large three", "a large three above a small seven.", "a small eleven"])
def test_parse_caption_refuses_anything_else(junk):
    with pytest.raises(DataError, match="not a digit-scene caption"):
        parse_caption(junk)


def test_scene_spec_checks_its_parts():
    with pytest.raises(ConfigError, match="0..9"):
        SceneSpec((10, "small"))
    with pytest.raises(ConfigError, match="0..9"):
        SceneSpec((1, "medium"))
    with pytest.raises(ConfigError, match="neither"):
        SceneSpec((1, "small"), (2, "small"))
    with pytest.raises(ConfigError, match="relation must be"):
        SceneSpec((1, "small"), (2, "small"), "beside")


def test_canonical_says_a_scene_left_to_right_and_top_to_bottom():
    right = SceneSpec((3, "large"), (7, "small"), "to the right of")
    assert right.canonical() == SceneSpec((7, "small"), (3, "large"), "to the left of")
    below = SceneSpec((1, "small"), (2, "large"), "below")
    assert below.canonical() == SceneSpec((2, "large"), (1, "small"), "above")
    left = SceneSpec((1, "small"), (2, "large"), "to the left of")
    assert left.canonical() is left and SceneSpec((4, "small")).canonical().second is None


def test_render_digit_scales_ink(digits):
    image = digits["train"].images[0, 0]
    for size in SIZES.values():
        out = render_digit(image, size)
        assert out.shape == (size, size) and out.dtype == torch.uint8
        assert out.max() > 200  # bright ink on black survives the scaling
    with pytest.raises(ConfigError, match=r"\(8, 8\) uint8"):
        render_digit(image.float(), 9)


def _columns(scene):
    return torch.nonzero(scene[0].sum(0)).flatten()


def _rows(scene):
    return torch.nonzero(scene[0].sum(1)).flatten()


def test_render_scene_puts_each_digit_where_the_caption_says(digits):
    a, b = digits["train"].images[0, 0], digits["train"].images[1, 0]
    for seed in range(20):
        left = SceneSpec((0, "large"), (1, "small"), "to the left of")
        scene = render_scene(left, a, b, seed)
        assert scene.shape == (1, CANVAS, CANVAS) and scene.dtype == torch.uint8
        only_a = render_scene(SceneSpec((0, "large")), a, None, seed)
        assert only_a.shape == (1, CANVAS, CANVAS)
        # the left digit lies in the left half, the right one in the right half
        first = render_scene(left, a, torch.zeros_like(b), seed)
        assert _columns(first).max() < HALF - digit_scenes.MARGIN
        second = render_scene(left, torch.zeros_like(a), b, seed)
        assert _columns(second).min() >= HALF + digit_scenes.MARGIN
        below = SceneSpec((0, "small"), (1, "large"), "below")
        assert _rows(render_scene(below, a, torch.zeros_like(b), seed)).min() >= HALF
        assert _rows(render_scene(below, torch.zeros_like(a), b, seed)).max() < HALF
    spec = SceneSpec((0, "large"), (1, "small"), "above")
    assert torch.equal(render_scene(spec, a, b, 3), render_scene(spec, a, b, 3))
    assert torch.equal(render_scene(spec, a, b, torch.Generator().manual_seed(5)),
                       render_scene(spec, a, b, torch.Generator().manual_seed(5)))
    with pytest.raises(ConfigError, match="needs 2 digit image"):
        render_scene(spec, a, None, 0)


def test_make_scenes_is_deterministic_and_mixes_every_kind(digits):
    train = digits["train"]
    x1, s1 = make_scenes(400, train.images[:, 0], train.labels, seed=7)
    x2, s2 = make_scenes(400, train.images[:, 0], train.labels, seed=7)
    x3, s3 = make_scenes(400, train.images[:, 0], train.labels, seed=8)
    assert x1.shape == (400, 1, CANVAS, CANVAS) and x1.dtype == torch.uint8
    assert torch.equal(x1, x2) and s1 == s2
    assert not torch.equal(x1, x3) and s1 != s3
    singles = sum(s.second is None for s in s1)
    assert 40 <= singles <= 120  # single_fraction 0.2 of 400
    assert {s.relation for s in s1} == {None, *RELATIONS}
    assert {s.first[0] for s in s1} == set(range(10)) and {s.first[1] for s in s1} == set(SIZES)
    assert int(x1.amax(dim=(1, 2, 3)).min()) > 120  # every scene has bright ink
    _, pairs = make_scenes(50, train.images[:, 0], train.labels, 0, single_fraction=0.0)
    assert all(s.second is not None for s in pairs)
    _, ones = make_scenes(50, train.images[:, 0], train.labels, 0, single_fraction=1.0)
    assert all(s.second is None for s in ones)
    with pytest.raises(DataError, match=r"missing \[9\]"):
        make_scenes(5, train.images[:, 0][train.labels < 9], train.labels[train.labels < 9], 0)


def test_each_split_draws_only_its_own_digits(digits):
    counts = {"train": 300, "valid": 200, "test": 200}
    splits = digit_scene_splits(0, counts)
    owners = {split: set(part.sources) for split, part in digits.items()}
    for split, part in splits.items():
        rows = part["instances"][part["instances"] >= 0].tolist()
        used = {part["digit_sources"][r] for r in rows}
        assert used <= owners[split], split
        assert len(used) > 50  # many instances, not one reused
        for other in set(owners) - {split}:
            assert not used & owners[other]
        assert [parse_caption(c) for c in part["captions"]] == part["specs"]
        assert part["sources"][:2] == [f"digit-scenes:{split}:0", f"digit-scenes:{split}:1"]
    # the test scenes are fixed; train and valid follow the seed
    other = digit_scene_splits(1, counts)
    assert torch.equal(splits["test"]["images"], other["test"]["images"])
    assert not torch.equal(splits["train"]["images"], other["train"]["images"])
    again = digit_scene_splits(0, {"train": 300})
    assert torch.equal(again["train"]["images"], splits["train"]["images"])


def test_builtin_digit_scenes_through_load_captioned():
    splits = load_captioned("builtin:digit-scenes")
    assert {k: tuple(v.images.shape) for k, v in splits.items()} == {
        "train": (20_000, 1, 32, 32), "valid": (1_000, 1, 32, 32), "test": (1_000, 1, 32, 32)}
    test = splits["test"]
    assert test.images.dtype == torch.uint8 and len(test) == 1_000
    assert test.groups == test.captions and test.sources[5] == "digit-scenes:test:5"
    names = {w for c in test.captions for w in c.split()}
    assert set(DIGIT_NAMES) <= names and {"small", "large", "above", "below"} <= names
    # ink bright on black: the corners of most scenes are dark, every scene has a bright pixel
    assert (test.images[:, 0, 0, 0] == 0).float().mean() > 0.9
    assert int(test.images.amax(dim=(1, 2, 3)).min()) > 120
    small = captions._resize(splits["valid"].images, 16)  # what image_size=16 does
    assert tuple(small.shape) == (1_000, 1, 16, 16) and small.dtype == torch.uint8
    assert np.isclose(small.float().mean(), splits["valid"].images.float().mean(), rtol=0.1)
