"""The independent scene reader: it reads real test scenes (test-split digits it was never
fitted on), finds nothing on an empty canvas, and scores each measure as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from attnlab.data.digit_scenes import SIZES, SceneSpec, digit_scene_splits, render_scene
from attnlab.data.images import load_images
from attnlab.errors import ConfigError
from attnlab.evaluation.digit_scenes import METRICS, TRAIN_BLURS, SceneReader


@pytest.fixture(scope="module")
def reader():
    return SceneReader.fit(seed=0)


@pytest.fixture(scope="module")
def test_scenes():
    part = digit_scene_splits(0, {"test": 200})["test"]
    return part["images"], part["specs"]


def test_reader_reads_real_test_scenes(reader, test_scenes):
    scenes, specs = test_scenes
    scores = reader.score(scenes, specs)
    assert set(scores) == set(METRICS)
    assert scores["fully_right"] >= 0.85, scores
    assert scores["sizes_right"] >= 0.95 and scores["unreadable"] == 0.0
    # a softer picture (as a generator's samples are) still reads
    soft = np.stack([ndimage.gaussian_filter(x.astype(np.float32), 0.6)
                     for x in scenes[:, 0].numpy()])
    soft = torch.from_numpy(np.clip(soft, 0, 255).round().astype(np.uint8))[:, None]
    assert reader.score(soft, specs)["fully_right"] >= 0.8


def test_reader_fitted_on_train_digits_only(reader):
    train = load_images("builtin:digits")["train"]
    # every train digit, drawn at each size and blur, and nothing else
    assert reader.classifier.shape_fit_[0] == len(train) * len(SIZES) * len(TRAIN_BLURS)
    assert SceneReader.fit(seed=0).classifier is reader.classifier  # fitted once per seed


def test_empty_canvas_is_unreadable(reader):
    empty = torch.zeros(1, 32, 32, dtype=torch.uint8)
    assert reader.read(empty) is None
    specks = empty.clone()
    specks[0, 3, 3] = specks[0, 20, 25] = 255  # single bright pixels are not digits
    assert reader.read(specks) is None
    scores = reader.score(torch.stack([empty, specks]), [SceneSpec((1, "small"))] * 2)
    assert scores == {"fully_right": 0.0, "digits_right": 0.0, "sizes_right": 0.0,
                      "relation_right": 0.0, "unreadable": 1.0}


def test_reader_says_scenes_left_to_right(reader):
    digits = load_images("builtin:digits")["test"]
    fives = digits.images[digits.labels == 5][:10, 0]
    sevens = digits.images[digits.labels == 7][:10, 0]
    spec = SceneSpec((5, "large"), (7, "small"), "to the right of")
    said_back = SceneSpec((7, "small"), (5, "large"), "to the left of")
    scenes = torch.stack([render_scene(spec, f, s, i)
                          for i, (f, s) in enumerate(zip(fives, sevens, strict=True))])
    assert sum(reader.read(x) == said_back for x in scenes) >= 8  # the digits can be misread
    assert reader.score(scenes, [spec] * 10)["fully_right"] >= 0.8
    ones = [reader.read(render_scene(SceneSpec((5, "small")), f, None, 1)) for f in fives]
    assert sum(one == SceneSpec((5, "small")) for one in ones) >= 8
    with pytest.raises(ConfigError, match=r"\(1, 32, 32\) uint8"):
        reader.read(torch.zeros(1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="one wanted SceneSpec per scene"):
        reader.score(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), [spec])


class _Seen(SceneReader):
    """A reader that 'sees' given specs, to test score's bookkeeping alone."""

    def __init__(self, seen):
        super().__init__(classifier=None)
        self.seen = seen

    def read_many(self, scenes):
        return self.seen


def test_score_counts_each_measure():
    want = SceneSpec((3, "large"), (7, "small"), "to the left of")
    seen = [
        SceneSpec((7, "small"), (3, "large"), "to the right of"),  # the same scene, said back
        SceneSpec((3, "small"), (7, "small"), "to the left of"),  # a size wrong
        SceneSpec((7, "large"), (3, "small"), "to the left of"),  # digits swapped
        SceneSpec((3, "large"), (7, "small"), "above"),  # wrong relation
        SceneSpec((3, "large")),  # one digit missing
        None,  # nothing
    ]
    scores = _Seen(seen).score(torch.zeros(6, 1, 32, 32, dtype=torch.uint8), [want] * 6)
    assert scores == pytest.approx({"fully_right": 1 / 6, "digits_right": 4 / 6,
                                    "sizes_right": 3 / 6, "relation_right": 2 / 6,
                                    "unreadable": 1 / 6})
    single = SceneSpec((4, "small"))
    scores = _Seen([single, SceneSpec((4, "large")), SceneSpec((4, "small"), (1, "small"),
                                                                "above")]).score(
        torch.zeros(3, 1, 32, 32, dtype=torch.uint8), [single] * 3)
    assert scores == pytest.approx({"fully_right": 1 / 3, "digits_right": 2 / 3,
                                    "sizes_right": 1 / 3, "relation_right": 2 / 3,
                                    "unreadable": 0.0})
