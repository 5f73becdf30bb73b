"""Compositional digit scenes (`--data builtin:digit-scenes`): one or two of scikit-learn's 8x8
handwritten digits (the UCI optical recognition set) drawn small or large on a 32x32 black
canvas, captioned with what is where: "a large three to the left of a small seven",
"a small five".

The set tests what DALL-E (Ramesh et al., 2021, "Zero-Shot Text-to-Image Generation") and its
predecessors were probed on with compositional captions: whether a text-conditioned model
binds each word to the right object, size and place, and whether a CLIP-style encoder
(Radford et al., 2021) tells "a three left of a seven" from "a seven left of a three".

Scenes: a two-digit scene with "to the left of" / "to the right of" puts one digit in each
16-pixel half of the canvas, `MARGIN` pixels off the middle (so two digits never touch: a
small one moves inside its half, a large one, 14 pixels, sits at its outer edge), at a random
height drawn so that the centres are at most half as far apart vertically as horizontally (a
"left of" never looks like an "above"); "above" / "below" likewise in the top and bottom
halves; a one-digit scene places its digit anywhere. A digit is its 8x8 instance scaled
(bilinear) to `SIZES[word]` pixels a side (9 and 14: sizes the independent reader,
`evaluation/digit_scenes.py`, tells apart even on a blurred sample), ink bright on black.
Digit instances come from the fixed split of `data/images.py`
(`load_images("builtin:digits")`): test scenes draw only test-split digits, valid scenes only
valid-split digits, so a model never sees a test digit's strokes in training. Everything is
drawn from one seeded generator per split (test's fixed, train's and valid's from the run's
seed): the same seed gives the same scenes, bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.data.images import load_images
from attnlab.errors import ConfigError, DataError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RELATIONS = ("to the left of", "to the right of", "above", "below")
SIZES = {"small": 9, "large": 14}  # pixels per side of a rendered digit
CANVAS = 32  # pixels per side of a scene
HALF = CANVAS // 2
MARGIN = 2  # empty pixels each digit of a pair keeps off the middle: they never touch
SPLIT_SCENES = {"train": 20_000, "valid": 1_000, "test": 1_000}
TEST_SEED = 0  # test scenes are fixed whatever the run's seed: scores from different seeds compare
SINGLE_FRACTION = 0.2  # of the scenes, those with one digit

_NAME = "|".join(DIGIT_NAMES)
_SIZE = "|".join(SIZES)
_CAPTION = re.compile(rf"a ({_SIZE}) ({_NAME})(?: ({'|'.join(RELATIONS)}) a ({_SIZE}) ({_NAME}))?")
_MIRROR = {"to the right of": "to the left of", "below": "above"}


@dataclass(frozen=True)
class SceneSpec:
    """What a scene shows: `first` is where `relation` says relative to `second`."""

    first: tuple[int, str]  # (digit 0..9, size word)
    second: tuple[int, str] | None = None  # None: a one-digit scene
    relation: str | None = None  # one of RELATIONS, None for a one-digit scene

    def __post_init__(self) -> None:
        for part in (self.first, self.second):
            if part is None:
                continue
            if (not isinstance(part, tuple) or len(part) != 2 or part[0] not in range(10)
                    or part[1] not in SIZES):
                raise ConfigError(f"a scene's digit must be (0..9, one of {list(SIZES)}), "
                                  f"got {part!r}")
        if (self.second is None) != (self.relation is None):
            raise ConfigError(f"a scene has both a second digit and a relation or neither, got "
                              f"second={self.second!r}, relation={self.relation!r}")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ConfigError(f"relation must be one of {list(RELATIONS)}, got "
                              f"{self.relation!r}")

    def caption(self) -> str:
        """"a large three to the left of a small seven"; "a small five"."""
        first = f"a {self.first[1]} {DIGIT_NAMES[self.first[0]]}"
        if self.second is None:
            return first
        return f"{first} {self.relation} a {self.second[1]} {DIGIT_NAMES[self.second[0]]}"

    def canonical(self) -> SceneSpec:
        """The same scene said left-to-right or top-to-bottom ("to the right of" and "below"
        swap their digits), so two captions of one scene compare equal."""
        if self.relation in _MIRROR:
            return SceneSpec(self.second, self.first, _MIRROR[self.relation])
        return self


def parse_caption(caption: str) -> SceneSpec:
    """The SceneSpec a caption says (case and spacing ignored); anything else is a DataError."""
    text = " ".join(str(caption).lower().split())
    match = _CAPTION.fullmatch(text)
    if match is None:
        raise DataError(f"caption {caption!r} is not a digit-scene caption; expected "
                        "'a SIZE DIGIT' or 'a SIZE DIGIT RELATION a SIZE DIGIT' with SIZE in "
                        f"{list(SIZES)}, DIGIT a word zero..nine, RELATION in {list(RELATIONS)}")
    size1, name1, relation, size2, name2 = match.groups()
    first = (DIGIT_NAMES.index(name1), size1)
    if relation is None:
        return SceneSpec(first)
    return SceneSpec(first, (DIGIT_NAMES.index(name2), size2), relation)


def render_digits(images: Tensor, size: int) -> Tensor:
    """(M, 8, 8) uint8 -> (M, size, size) uint8, scaled bilinearly (ink stays bright)."""
    x = images.to(torch.float32)[:, None]  # (M, 1, 8, 8)
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y[:, 0].round().clamp(0, 255).to(torch.uint8)  # (M, size, size)


def render_digit(image8x8: Tensor, size: int) -> Tensor:
    """(size, size) uint8: one 8x8 uint8 digit scaled to `size` pixels a side."""
    image8x8 = torch.as_tensor(image8x8)
    if image8x8.shape != (8, 8) or image8x8.dtype != torch.uint8:
        raise ConfigError(f"a digit image must be (8, 8) uint8, got {tuple(image8x8.shape)} "
                          f"{image8x8.dtype}")
    if not 1 <= size <= CANVAS:
        raise ConfigError(f"a digit's size must be 1..{CANVAS} pixels, got {size}")
    return render_digits(image8x8[None], size)[0]


def _places(spec: SceneSpec, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(top, left) of `first` (and `second`) on the canvas, drawn by `rng` in a fixed order."""
    s1 = SIZES[spec.first[1]]
    if spec.second is None:
        return [(int(rng.integers(0, CANVAS - s1 + 1)), int(rng.integers(0, CANVAS - s1 + 1)))]
    s2 = SIZES[spec.second[1]]
    first_low = spec.relation in ("to the left of", "above")  # first in the left / top half
    low, high = (0, HALF + MARGIN), (HALF + MARGIN, 0)  # offsets of the two halves' spaces
    along1, along2 = low if first_low else high
    # along the relation's axis: anywhere inside the digit's half, MARGIN off the middle
    a1 = along1 + int(rng.integers(0, HALF - MARGIN - s1 + 1))
    a2 = along2 + int(rng.integers(0, HALF - MARGIN - s2 + 1))
    apart = abs((a1 + s1 / 2) - (a2 + s2 / 2))  # centre to centre along the axis
    while True:  # across it: anywhere, redrawn until the centres are at most half as far
        c1 = int(rng.integers(0, CANVAS - s1 + 1))  # apart across as along, so "left of"
        c2 = int(rng.integers(0, CANVAS - s2 + 1))  # never looks like "above"
        if abs((c1 + s1 / 2) - (c2 + s2 / 2)) <= apart / 2:
            break
    if spec.relation in ("to the left of", "to the right of"):
        return [(c1, a1), (c2, a2)]
    return [(a1, c1), (a2, c2)]


def _as_rng(generator) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        return np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    return np.random.default_rng(generator)  # an int seed or None


def render_scene(spec: SceneSpec, first_image: Tensor, second_image: Tensor | None,
                 generator=None) -> Tensor:
    """(1, 32, 32) uint8: `spec` drawn with these 8x8 uint8 digit instances, placed at random
    by `generator` (a numpy or torch generator, an int seed, or None)."""
    if (spec.second is None) != (second_image is None):
        raise ConfigError(f"scene {spec.caption()!r} needs {1 if spec.second is None else 2} "
                          "digit image(s)")
    rng = _as_rng(generator)
    canvas = torch.zeros(CANVAS, CANVAS, dtype=torch.uint8)
    parts = [(spec.first, first_image)] + ([(spec.second, second_image)] if spec.second else [])
    for ((_, word), image), (top, left) in zip(parts, _places(spec, rng), strict=True):
        size = SIZES[word]
        digit = render_digit(image, size)
        window = canvas[top:top + size, left:left + size]
        window.copy_(torch.maximum(window, digit))
    return canvas[None]


def _check_digits(digit_images: Tensor, digit_labels: Tensor) -> None:
    if digit_images.ndim != 3 or tuple(digit_images.shape[1:]) != (8, 8):
        raise ConfigError(f"digit_images must be (M, 8, 8), got {tuple(digit_images.shape)}")
    if digit_images.dtype != torch.uint8:
        raise ConfigError(f"digit_images must be uint8, got {digit_images.dtype}")
    if digit_labels.shape != digit_images.shape[:1]:
        raise ConfigError(f"digit_labels must be ({len(digit_images)},), got "
                          f"{tuple(digit_labels.shape)}")
    missing = sorted(set(range(10)) - set(digit_labels.tolist()))
    if missing:
        raise DataError(f"digit scenes need instances of every digit 0..9; missing {missing}")


def make_scenes(count: int, digit_images: Tensor, digit_labels: Tensor, seed: int,
                single_fraction: float = SINGLE_FRACTION) -> tuple[Tensor, list[SceneSpec]]:
    """(scenes (count, 1, 32, 32) uint8, their specs): `count` scenes drawn by `seed`, each
    digit a uniform class then a uniform instance of it among `digit_images` (M, 8, 8) uint8
    with `digit_labels` (M,); sizes and relations uniform; `single_fraction` of the scenes
    have one digit."""
    scenes, specs, _ = scenes_with_instances(count, digit_images, digit_labels, seed,
                                             single_fraction)
    return scenes, specs


def scenes_with_instances(count: int, digit_images: Tensor, digit_labels: Tensor, seed: int,
                          single_fraction: float = SINGLE_FRACTION
                          ) -> tuple[Tensor, list[SceneSpec], Tensor]:
    """make_scenes, and the rows of `digit_images` each scene drew: (count, 2) long, -1 for
    a one-digit scene's second."""
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if not 0.0 <= single_fraction <= 1.0:
        raise ConfigError(f"single_fraction must be in [0, 1], got {single_fraction}")
    digit_images = torch.as_tensor(digit_images)
    digit_labels = torch.as_tensor(digit_labels).long()
    _check_digits(digit_images, digit_labels)
    rng = np.random.default_rng(seed)
    labels = digit_labels.numpy()
    by_class = [np.flatnonzero(labels == d) for d in range(10)]
    rendered = {word: render_digits(digit_images, size).numpy() for word, size in SIZES.items()}
    words = list(SIZES)
    canvas = np.zeros((count, CANVAS, CANVAS), dtype=np.uint8)
    specs: list[SceneSpec] = []
    instances = np.full((count, 2), -1, dtype=np.int64)
    for n in range(count):
        single = rng.uniform() < single_fraction
        parts = []
        for k in range(1 if single else 2):
            digit = int(rng.integers(10))
            instances[n, k] = by_class[digit][rng.integers(len(by_class[digit]))]
            parts.append((digit, words[int(rng.integers(len(words)))]))
        relation = None if single else RELATIONS[int(rng.integers(len(RELATIONS)))]
        spec = SceneSpec(parts[0], parts[1] if not single else None, relation)
        for k, (top, left) in enumerate(_places(spec, rng)):
            word = parts[k][1]
            size = SIZES[word]
            window = canvas[n, top:top + size, left:left + size]
            np.maximum(window, rendered[word][instances[n, k]], out=window)
        specs.append(spec)
    return torch.from_numpy(canvas)[:, None], specs, torch.from_numpy(instances)


def _split_seed(seed: int, split: str) -> int:
    """The scene seed of a split: test's is fixed (TEST_SEED), train's and valid's follow the
    run's seed, each its own stream."""
    key = (TEST_SEED, 2) if split == "test" else (seed, list(SPLIT_SCENES).index(split))
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def digit_scene_splits(seed: int = 0, counts: dict[str, int] | None = None
                       ) -> dict[str, dict]:
    """split -> {"images" (N, 1, 32, 32) uint8, "captions", "sources", "groups", "specs",
    "instances" (N, 2) long: rows of that split's digit images}: `builtin:digit-scenes`, each
    split's scenes drawn from the same split of `load_images("builtin:digits", seed=seed)`.
    `counts` overrides SPLIT_SCENES (tests)."""
    digits = load_images("builtin:digits", seed=seed)
    splits = {}
    for split, count in (counts or SPLIT_SCENES).items():
        part = digits[split]
        images, specs, instances = scenes_with_instances(
            count, part.images[:, 0], part.labels, _split_seed(seed, split))
        captions = [spec.caption() for spec in specs]
        splits[split] = {"images": images, "captions": captions,
                         "sources": [f"digit-scenes:{split}:{i}" for i in range(count)],
                         "groups": list(captions), "specs": specs, "instances": instances,
                         "digit_sources": part.sources}
    return splits
