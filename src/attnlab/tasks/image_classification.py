"""Train a Vision Transformer (Dosovitskiy et al. 2021) to classify images: the built-in
Fashion-MNIST (Debian's dataset-fashion-mnist, 70,000 real images) or scikit-learn's 8x8 digits,
or a folder of class folders (DIR/train/<class>/*.png|jpg, DIR/test/<class>/..., the
torchvision ImageFolder layout; Pillow decodes).

images (uint8, one tensor per split; `attnlab.data.images`) -> random crop (zero padding) and
horizontal flip, seeded per batch -> per-channel normalisation fitted on the training split
(`ImageProcessor`, saved as preprocessor_config.json) -> ViT / DeiT -> label-smoothed
cross-entropy on the run routine (AdamW, warmup + cosine, clipping, checkpoints, exact resume)
-> test accuracy, per-class accuracy and confusion_matrix.png. The folder loads in transformers
as ViTForImageClassification with its ViTImageProcessor (a hybrid ViT's, with
its convolutional stem, only here), and in `attnlab classify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.models import build_model, list_models
from attnlab.tasks.perception import Examples, TensorClassificationTask, TensorClassifySettings
from attnlab.tokenizers.image_processor import ImageProcessor
from attnlab.training.settings import (
    SettingError,
    check_non_negative_ints,
    check_range,
    setting,
)

BUILTIN_IMAGES = ("builtin:fashion-mnist", "builtin:digits")


IMAGE_FAMILIES = ("vit", "deit", "resnet")  # model types that read pixel_values


def image_presets() -> list[str]:
    return sorted(name for family in IMAGE_FAMILIES for name in list_models(family))


def class_share(labels: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Row indices of `fraction` of each class (at least one row of each), seeded."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().squeeze(1)  # (n_c,)
        keep = max(1, round(fraction * len(members)))
        rows.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(rows).sort().values


@dataclass
class ImageSettings(TensorClassifySettings):
    """Everything `attnlab train image` takes; saved as `train_settings.json`."""

    data: str = setting("builtin:fashion-mnist", "builtin:fashion-mnist, builtin:digits, or a "
                                                 "folder DIR/train/<class>/*.png|jpg and "
                                                 "DIR/test/<class>/... (optional DIR/valid; "
                                                 "else 10% of train)", data=True)
    out: str = setting("runs/image", "output folder (model, checkpoints, metrics)")
    preset: str = setting("vit-fashion", "model (a ViT, DeiT or ResNet preset; image "
                                         "size, channels and classes come from the data)",
                          choices=image_presets)
    image_size: int = setting(0, "square side images are resized to (0: the data's own size)")
    channels: int = setting(0, "1 (grayscale) or 3 (RGB); 0: 1 when every training image is "
                               "grayscale, else 3")
    crop_padding: int = setting(2, "random-crop augmentation: pad by this many pixels, then "
                                   "crop back at a random offset (0: off)")
    flip: bool = setting(True, "random horizontal flips (turn off for digits and text)")
    train_fraction: float = setting(1.0, "train on this share of the training split, the "
                                         "same share of every class (seeded): how accuracy "
                                         "grows with data")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative_ints(self, ("image_size", "crop_padding"))
        check_range(self, "train_fraction", 0.0, 1.0, low_open=True, high_open=False)
        if self.channels not in (0, 1, 3):
            raise SettingError("channels", f"channels must be 0 (auto), 1 or 3, "
                                           f"got {self.channels!r}")
        if self.preset not in image_presets():
            raise SettingError("preset", f"preset must be an image model, one of "
                                         f"{image_presets()}, got {self.preset!r}")
        if not self.data:
            raise SettingError("data", f"data must be one of {list(BUILTIN_IMAGES)} or a "
                                       "folder, got ''")


def random_crop_flip(images: Tensor, padding: int, flip: bool,
                     generator: torch.Generator) -> Tensor:
    """uint8 (B, C, H, W) -> the same shape: each image zero-padded by `padding`, cropped back
    at a random offset, and mirrored left-right with probability 1/2."""
    B, C, H, W = images.shape
    if padding:
        padded = torch.nn.functional.pad(images, (padding,) * 4)  # (B, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * padding + 1, (B, 1), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (B, 1), generator=generator)
        rows = (dy + torch.arange(H))[:, :, None]  # (B, H, 1)
        cols = (dx + torch.arange(W))[:, None, :]  # (B, 1, W)
        batch = torch.arange(B)[:, None, None]  # (B, 1, 1)
        images = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B,C,H,W)
    if flip:
        mirror = torch.rand(B, generator=generator) < 0.5  # (B,)
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


class ImageClassificationTask(TensorClassificationTask):
    name = "image"
    input_name = "pixel_values"
    settings: ImageSettings

    def read_splits(self) -> tuple[dict[str, Examples], list[str]]:
        from attnlab.data.images import load_images

        s = self.settings
        splits = load_images(s.data, image_size=s.image_size or None,
                             channels=s.channels or None, seed=0)
        classes = splits["train"].classes
        examples = {name: Examples(split.images, split.labels, split.sources)
                    for name, split in splits.items()}
        if s.train_fraction < 1.0:
            train = examples["train"]
            rows = class_share(train.labels, s.train_fraction)
            examples["train"] = Examples(train.inputs[rows], train.labels[rows],
                                         [train.sources[i] for i in rows.tolist()])
        return examples, classes

    def build(self, out: Path) -> nn.Module:
        s = self.settings
        images = self.splits["train"].inputs  # (N, C, H, W) uint8
        C, H, W = images.shape[1:]
        if H != W:
            raise SettingError("image_size", f"images are {H}x{W}; the image models here "
                                             "take square images: give --image-size N")
        model = build_model(s.preset, **{"image_size": H, "num_channels": C,
                                         "num_labels": len(self.classes),
                                         "labels": tuple(self.classes), **s.model_overrides})
        ImageProcessor.fitted(images, size=H).save(out)
        return model

    def prepare(self, model: nn.Module, out: Path) -> None:
        self.processor = ImageProcessor.load(out)

    def to_model_input(self, inputs: Tensor) -> Tensor:
        return self.processor(inputs)  # (B, C, H, W) float

    def augment(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        s = self.settings
        return random_crop_flip(inputs, s.crop_padding, s.flip, generator)
