"""An independent reader of digit scenes (`data/digit_scenes.py`): what digits, of what sizes,
in what relation a 32x32 scene shows, so that a text-to-image model's samples can be scored
against their captions, as Ramesh et al. (2021, "Zero-Shot Text-to-Image Generation") and
later compositional benchmarks score generated images with a separately trained classifier or
detector rather than with the generator itself.

The reader knows nothing the generator learned: its digit classifier is a scikit-learn support
vector machine (RBF kernel) fitted only on the real digits of the digits TRAIN split
(`data/images.py`; never on generated images, never on a valid or test digit), each drawn
small and large as the scene generator draws it, sharp and Gaussian-blurred (`TRAIN_BLURS`,
so a slightly soft sample still reads), and cropped as below; the rest is fixed image
processing. A scene is thresholded (`THRESHOLD`) and cut into 8-connected blobs
(`scipy.ndimage.label`); specks (`MIN_PIXELS`) are dropped, blobs at most `JOIN_GAP` empty
pixels apart joined (a broken stroke), and the two with the most ink are the digits. A blob's
box holds its pixels at least half as bright as its brightest (`BOX_FRACTION`: a blurred
halo does not grow it); its longer side gives the size word (`SIZE_SPLIT`), the square around
it resampled to 8x8 (area average) gives the digit, and two blobs' centres the relation
(along the axis they differ more on). Run on real test scenes (test-split digits drawn by
the scene generator) it gives the ceiling of any generated scene's score: 0.963 fully right
on the 1,000 test scenes of `builtin:digit-scenes`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor

from attnlab.data.digit_scenes import CANVAS, SIZES, SceneSpec, render_digits
from attnlab.data.images import load_images
from attnlab.errors import ConfigError

THRESHOLD = 64  # a pixel brighter than this is ink (0..255)
BOX_FRACTION = 0.5  # a blob's box holds its pixels at least this fraction of its brightest
MIN_PIXELS = 4  # a blob of fewer ink pixels is a speck, not a digit
JOIN_GAP = 1  # blobs whose boxes are at most this many pixels apart are one digit
SIZE_SPLIT = 12  # a digit whose box's longer side is at least this is "large" (9 vs 14 px)
TRAIN_BLURS = (0.0, 0.7)  # Gaussian blurs (sigma, pixels) of the digits the SVM is fitted on
METRICS = ("fully_right", "digits_right", "sizes_right", "relation_right", "unreadable")


@dataclass
class _Blob:
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive
    ink: float

    def gap(self, other: _Blob) -> int:
        """Empty rows or columns between the two boxes (0: they touch or overlap)."""
        dy = max(other.top - self.bottom, self.top - other.bottom, 0)
        dx = max(other.left - self.right, self.left - other.right, 0)
        return max(dy, dx)

    def join(self, other: _Blob) -> _Blob:
        return _Blob(min(self.top, other.top), min(self.left, other.left),
                     max(self.bottom, other.bottom), max(self.right, other.right),
                     self.ink + other.ink)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.top + self.bottom) / 2, (self.left + self.right) / 2


def _blobs(image: np.ndarray) -> list[_Blob]:
    """The digits' boxes in a (32, 32) float image, largest ink first."""
    mask = image > THRESHOLD
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    blobs = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        part = labels[box] == index
        if part.sum() < MIN_PIXELS:
            continue
        values = np.where(part, image[box], 0.0)
        rows, cols = np.nonzero(values >= BOX_FRACTION * values.max())  # the strokes' cores
        top, left = box[0].start, box[1].start
        blobs.append(_Blob(top + rows.min(), left + cols.min(), top + rows.max() + 1,
                           left + cols.max() + 1, float(values.sum())))
    joined = True
    while joined:  # join blobs within JOIN_GAP of each other until none are
        joined = False
        for i in range(len(blobs)):
            for j in range(i + 1, len(blobs)):
                if blobs[i].gap(blobs[j]) <= JOIN_GAP:
                    blobs[i] = blobs[i].join(blobs.pop(j))
                    joined = True
                    break
            if joined:
                break
    return sorted(blobs, key=lambda b: -b.ink)


def _union(blobs: list[_Blob]) -> _Blob | None:
    return functools.reduce(_Blob.join, blobs) if blobs else None


def _crop8(image: np.ndarray, blob: _Blob) -> np.ndarray:
    """(64,) float in [0, 1]: the square around `blob` (side: its longer side) resampled to
    8x8, the way the scene scaled the 8x8 digit up."""
    side = max(blob.bottom - blob.top, blob.right - blob.left)
    cy, cx = blob.centre
    top, left = round(cy - side / 2), round(cx - side / 2)
    padded = np.zeros((CANVAS + 2 * side, CANVAS + 2 * side), dtype=np.float32)
    padded[side:side + CANVAS, side:side + CANVAS] = image
    square = padded[top + side:top + 2 * side, left + side:left + 2 * side]
    small = Image.fromarray(square).resize((8, 8), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0


class SceneReader:
    """Reads (1, 32, 32) uint8 scenes into SceneSpecs; `fit` trains its digit classifier."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier  # scikit-learn classifier over (64,) features in [0, 1]

    @classmethod
    def fit(cls, seed: int = 0) -> SceneReader:
        """A reader whose SVM is fitted on the real digits of the digits train split (of
        `seed`), each drawn small and large, sharp and blurred, and cropped the way `read`
        crops a scene's digit. Fitted once per seed and process (a few seconds)."""
        return cls(_fitted_classifier(seed))

    def _parts(self, scene: Tensor) -> tuple[np.ndarray, list[_Blob]]:
        scene = torch.as_tensor(scene)
        if scene.shape != (1, CANVAS, CANVAS) or scene.dtype != torch.uint8:
            raise ConfigError(f"a scene must be (1, {CANVAS}, {CANVAS}) uint8, got "
                              f"{tuple(scene.shape)} {scene.dtype}")
        image = scene[0].numpy().astype(np.float32)
        return image, _blobs(image)[:2]

    def read_many(self, scenes: Tensor) -> list[SceneSpec | None]:
        """read() of each scene in (N, 1, 32, 32), with one classifier call for all."""
        found = [self._parts(scene) for scene in scenes]
        crops = [_crop8(image, b) for image, blobs in found for b in blobs]
        digits = iter(self.classifier.predict(np.stack(crops)).tolist() if crops else [])
        specs: list[SceneSpec | None] = []
        for _, blobs in found:
            parts = [(int(next(digits)), _size_word(b)) for b in blobs]
            if not blobs:
                specs.append(None)
            elif len(blobs) == 1:
                specs.append(SceneSpec(parts[0]))
            else:
                specs.append(_relate(blobs, parts))
        return specs

    def read(self, scene: Tensor) -> SceneSpec | None:
        """What a (1, 32, 32) uint8 scene shows, said left-to-right or top-to-bottom (see
        SceneSpec.canonical); None when it shows no digit."""
        return self.read_many(scene[None])[0]

    def score(self, scenes: Tensor, wanted: list[SceneSpec]) -> dict[str, float]:
        """Fractions of the N scenes (N, 1, 32, 32) read as `wanted`: fully_right (digits,
        sizes and relation), digits_right (the same digits, places and sizes ignored),
        sizes_right (as many digits, with the wanted size words place by place, left or top
        first; digits ignored), relation_right (one digit wanted: one read; two: the wanted
        digits in the wanted relation, sizes ignored), unreadable (no digit found; such a
        scene is wrong in every other measure)."""
        if len(scenes) != len(wanted) or not wanted:
            raise ConfigError(f"score needs one wanted SceneSpec per scene (and at least one), "
                              f"got {len(scenes)} scenes and {len(wanted)} specs")
        totals = dict.fromkeys(METRICS, 0.0)
        for got, want in zip(self.read_many(scenes), wanted, strict=True):
            for name, right in _compare(got, want).items():
                totals[name] += right
        return {name: total / len(wanted) for name, total in totals.items()}


@functools.lru_cache(maxsize=4)
def _fitted_classifier(seed: int):
    from sklearn.svm import SVC

    train = load_images("builtin:digits", seed=seed)["train"]
    digits = train.images[:, 0]  # (M, 8, 8) uint8
    x = []
    for size, blur in itertools.product(SIZES.values(), TRAIN_BLURS):
        drawn = np.zeros((len(train), CANVAS, CANVAS), dtype=np.float32)  # (M, 32, 32)
        at = (CANVAS - size) // 2
        drawn[:, at:at + size, at:at + size] = render_digits(digits, size).numpy()
        if blur:
            drawn = ndimage.gaussian_filter(drawn, (0, blur, blur))
        x.append(np.stack([_crop8(image, _union(_blobs(image)) or _Blob(0, 0, 8, 8, 0))
                           for image in drawn]))  # (M, 64)
    classifier = SVC(C=10.0, gamma="scale", random_state=seed)
    classifier.fit(np.concatenate(x), np.tile(train.labels.numpy(), len(x)))
    return classifier


def _size_word(blob: _Blob) -> str:
    side = max(blob.bottom - blob.top, blob.right - blob.left)
    return "large" if side >= SIZE_SPLIT else "small"


def _relate(blobs: list[_Blob], parts: list[tuple[int, str]]) -> SceneSpec:
    (y0, x0), (y1, x1) = blobs[0].centre, blobs[1].centre
    if abs(x1 - x0) >= abs(y1 - y0):
        order = (0, 1) if x0 <= x1 else (1, 0)
        relation = "to the left of"
    else:
        order = (0, 1) if y0 <= y1 else (1, 0)
        relation = "above"
    return SceneSpec(parts[order[0]], parts[order[1]], relation)


def _compare(got: SceneSpec | None, want: SceneSpec) -> dict[str, bool]:
    if got is None:
        return {"fully_right": False, "digits_right": False, "sizes_right": False,
                "relation_right": False, "unreadable": True}
    got, want = got.canonical(), want.canonical()
    got_parts = [got.first] + ([got.second] if got.second else [])
    want_parts = [want.first] + ([want.second] if want.second else [])
    if want.second is None:
        relation = got.second is None
    else:
        relation = (got.second is not None and got.relation == want.relation
                    and got.first[0] == want.first[0] and got.second[0] == want.second[0])
    return {"fully_right": got == want,
            "digits_right": sorted(d for d, _ in got_parts) == sorted(d for d, _ in want_parts),
            "sizes_right": [w for _, w in got_parts] == [w for _, w in want_parts],
            "relation_right": relation, "unreadable": False}
