"""Zero-shot probes of a CLIP model (Radford et al. 2021, sec. 3.1): labelled images it never
trained on and one text prompt per class; the class whose prompt embeds nearest to an image is
its prediction (`attnlab.evaluation.retrieval.zero_shot_predict`).

- digits: the real scikit-learn digits of the fixed digits TEST split, each drawn as one large
  digit centred on the 32 x 32 canvas as the digit scenes draw them; prompts "a large zero" ...
- fashion-mnist: Fashion-MNIST's 10,000 test photos, inverted to dark on white like an emoji,
  with prompts named like the emoji of each class (the `emoji` package's English names).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.evaluation.retrieval import prompts_of
from attnlab.tokenizers.image_processor import fit_pixels

# Fashion-MNIST's classes as the emoji that show them are named (the `emoji` package's
# English names), so an emoji-trained CLIP is asked in its own words.
FASHION_PROMPTS = ("t-shirt", "jeans", "woman\u2019s clothes", "dress", "coat",
                   "woman\u2019s sandal", "necktie", "running shoe", "handbag",
                   "woman\u2019s boot")
DIGIT_TEMPLATE = "a large {}"


@dataclass
class ZeroShotProbe:
    """Labelled images the model never trained on, and a prompt per class."""

    name: str  # what the images are, for metrics.json
    images: Tensor  # (N, C, H, W) uint8 at the model's size and channels
    labels: Tensor  # (N,)
    classes: list[str]
    template: str
    names: list[str]  # the word(s) each class puts into the template

    @property
    def prompts(self) -> list[str]:
        return prompts_of(self.template, self.names)


def digit_probe(size: int, channels: int) -> ZeroShotProbe:
    """scikit-learn's real digits of the fixed digits TEST split (never in a training scene),
    each drawn as one large digit in the middle of a black 32x32 canvas, as the scenes draw
    them; prompts "a large zero" ... "a large nine"."""
    from attnlab.data.digit_scenes import DIGIT_NAMES, SIZES, render_digit
    from attnlab.data.images import load_images

    test = load_images("builtin:digits")["test"]
    side = SIZES["large"]
    top = (32 - side) // 2
    canvas = torch.zeros(len(test), 1, 32, 32, dtype=torch.uint8)
    for i, image in enumerate(test.images):
        canvas[i, 0, top:top + side, top:top + side] = render_digit(image[0], side)
    images = fit_pixels(canvas, channels, size)
    return ZeroShotProbe(f"scikit-learn digits test split ({len(test)} real digits, one large "
                         "digit centred on the canvas)", images, test.labels,
                         list(DIGIT_NAMES), DIGIT_TEMPLATE, list(DIGIT_NAMES))


def fashion_probe(size: int, channels: int) -> ZeroShotProbe:
    """Fashion-MNIST's 10,000 test photos (Debian's dataset-fashion-mnist), inverted to dark on
    white like an emoji, at the model's size and channels; prompts named like the emoji of
    each class."""
    from attnlab.data.images import FASHION_MNIST_CLASSES, load_images

    test = load_images("builtin:fashion-mnist", image_size=size)["test"]
    images = fit_pixels(255 - test.images, channels, size)
    return ZeroShotProbe(f"Fashion-MNIST test split ({len(test)} photos, inverted to dark on "
                         "white)", images, test.labels, list(FASHION_MNIST_CLASSES), "{}",
                         list(FASHION_PROMPTS))


__all__ = ["DIGIT_TEMPLATE", "FASHION_PROMPTS", "ZeroShotProbe", "digit_probe", "fashion_probe"]
