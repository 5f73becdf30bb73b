"""What turns decoded images into a Vision Transformer's input (Dosovitskiy et al. 2021): pixel
values rescaled to [0, 1] and normalised per channel, `(x / 255 - mean) / std`. It is saved
beside the model as `preprocessor_config.json` with the keys of Hugging Face's
`ViTImageProcessor`, so transformers reads our folders and we read theirs.

    processor = ImageProcessor(size=28, mean=(0.286,), std=(0.353,))
    pixel_values = processor(images_uint8)          # (N, C, H, W) uint8 -> float32
    processor.save(run_dir); ImageProcessor.load(run_dir)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.errors import DataError, FolderError, MissingFileError
from attnlab.serialization import atomic_write

PREPROCESSOR_NAME = "preprocessor_config.json"
RESCALE = 1 / 255  # uint8 pixels to [0, 1]


def fit_pixels(images: Tensor, channels: int, size: int) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size) for a model that reads
    `channels` x `size` x `size`: grey repeated to RGB or RGB averaged to grey, then resized
    (bilinear, antialiased) when the sizes differ."""
    if images.size(1) != channels:
        if images.size(1) == 1:
            images = images.expand(-1, channels, -1, -1)
        elif channels == 1:
            images = images.float().mean(1, keepdim=True).round().to(torch.uint8)
        else:
            raise DataError(f"images have {images.size(1)} channels, the model reads {channels}")
    if images.shape[-2:] != (size, size):
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                                antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


@dataclass(frozen=True)
class ImageProcessor:
    """size: the square side images are resized to before the model; mean / std: one value per
    channel (of the [0, 1] pixels)."""

    size: int = 224
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel, got mean {self.mean} "
                             f"and std {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def num_channels(self) -> int:
        return len(self.mean)

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) or (C, H, W) -> normalised float32 of the same shape."""
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 pixels, got dtype {images.dtype}")
        if images.dim() not in (3, 4) or images.size(-3) != self.num_channels:
            raise ValueError(f"images must be (N, {self.num_channels}, H, W) or "
                             f"({self.num_channels}, H, W), got {tuple(images.shape)}")
        mean = torch.tensor(self.mean).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (images.float() * RESCALE - mean) / std

    @classmethod
    def fitted(cls, images: Tensor, size: int) -> ImageProcessor:
        """Per-channel mean and std of uint8 (N, C, H, W) training images (in [0, 1]),
        computed in float64 over chunks so 60,000 images cost no extra copy of the set."""
        C = images.size(1)
        total = torch.zeros(C, dtype=torch.float64)
        squares = torch.zeros(C, dtype=torch.float64)
        for start in range(0, images.size(0), 4096):
            x = images[start:start + 4096].double() * RESCALE  # (n, C, H, W)
            total += x.sum(dim=(0, 2, 3))
            squares += (x * x).sum(dim=(0, 2, 3))
        count = images.numel() / C
        mean = total / count
        std = (squares / count - mean * mean).clamp(min=1e-12).sqrt()
        return cls(size, tuple(round(float(m), 6) for m in mean),
                   tuple(round(max(float(s), 1e-3), 6) for s in std))

    def to_dict(self) -> dict[str, Any]:
        return {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                "size": {"height": self.size, "width": self.size}, "resample": 2,
                "do_rescale": True, "rescale_factor": RESCALE, "do_normalize": True,
                "image_mean": list(self.mean), "image_std": list(self.std)}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PREPROCESSOR_NAME
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda t: Path(t).write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ImageProcessor:
        """The processor in a folder written by attnlab or transformers (ViTImageProcessor,
        DeiTImageProcessor: `size` as {height, width} or {shortest_edge}, crop_size wins where
        the processor center-crops)."""
        path = Path(directory) / PREPROCESSOR_NAME
        if not path.is_file():
            raise MissingFileError(f"{path} not found: the model folder has no image "
                                   "preprocessing settings")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            size = values.get("crop_size") if values.get("do_center_crop") else None
            size = size or values.get("size", 224)
            if isinstance(size, dict):
                size = size.get("height", size.get("shortest_edge"))
            mean, std = values.get("image_mean", cls.mean), values.get("image_std", cls.std)
            if not values.get("do_normalize", True):
                mean, std = (0.0,) * len(mean), (1.0,) * len(std)
            return cls(int(size), tuple(float(m) for m in mean), tuple(float(s) for s in std))
        except (ValueError, TypeError, AttributeError) as error:
            raise FolderError(f"{path}: not an image preprocessing config ({error})") from None
