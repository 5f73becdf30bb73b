"""Labelled images for the Vision Transformer (Dosovitskiy et al., 2021): two real built-in
sets that install without a download, and the user's images as a folder of class folders.

- `builtin:fashion-mnist`: Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; 70,000 28x28
  greyscale photos of Zalando articles in 10 classes), read from Debian's
  `dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist/*-ubyte.gz`, the IDX
  format of LeCun's MNIST files). The 60,000 training images give train and valid
  (`valid_fraction` of each class, seeded); the 10,000 `t10k` images are the test split.
- `builtin:digits`: scikit-learn's 8x8 handwritten digits (1,797 images, the UCI optical
  recognition set; 17 grey levels 0..16, scaled to 0..255). A fixed stratified 20% is the
  test split (the same for every seed); `valid_fraction` of the rest, seeded, is valid.
- a folder: `DIR/train/<class>/*.png|jpg|jpeg|bmp|gif|webp`, `DIR/test/<class>/...` and an
  optional `DIR/valid/<class>/...` (else `valid_fraction` of train per class, seeded), decoded
  by Pillow (`data/image_folder.py`, which documents the resize and channel rules).

Every split holds uint8 (N, C, H, W) images; `image_size` resizes the built-in sets too
(bilinear) and `channels=3` repeats their grey channel.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnlab.data.class_folders import builtin_name, check_fraction, stratified_split
from attnlab.data.image_folder import check_channels, decode_image, read_image_folder
from attnlab.errors import ConfigError, DataError, MissingFileError

__all__ = ["ImageSplit", "load_images", "decode_image", "BUILTIN_IMAGE_SETS",
           "FASHION_MNIST_CLASSES"]

log = logging.getLogger(__name__)

BUILTIN_IMAGE_SETS = ("fashion-mnist", "digits")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0  # the digits test split is fixed: scores from different seeds compare


@dataclass
class ImageSplit:
    """One split: images with their labels and where each came from."""

    images: Tensor  # (N, C, H, W) uint8
    labels: Tensor  # (N,) int64, index into classes
    classes: list[str]  # index -> class name (the same list in every split)
    sources: list[str]  # per image: a file path, or "fashion-mnist:train:123"

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed): magic 0x0000 08 NDIM, NDIM big-endian
    uint32 sizes, then the bytes. Anything else is a DataError naming the file."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable gzip file ({error}); reinstall the package "
                        "(apt-get install --reinstall dataset-fashion-mnist)") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4]!r}, "
                        "expected b'\\x00\\x00\\x08' + ndim)")
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", ndim, offset=4))
    start = 4 + 4 * ndim
    if len(data) - start != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says {shape} ({int(np.prod(shape))} bytes) but the "
                        f"file holds {len(data) - start}; reinstall the package")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def _fashion_mnist(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """part ("train", "t10k") -> (images (N, 28, 28) uint8, labels (N,) uint8)."""
    parts = {}
    for part in ("train", "t10k"):
        paths = [root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz"]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise MissingFileError(
                f"builtin:fashion-mnist needs {missing[0]} (Debian's dataset-fashion-mnist "
                "package); install it with `sudo apt-get install dataset-fashion-mnist` (or "
                "`make packages`)")
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(f"{paths[0]}: {images.shape} images do not fit {labels.shape} "
                            f"labels in {paths[1]}; reinstall the package")
        parts[part] = images, labels
    return parts


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) uint8 in 0..255, labels (1797,))."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise MissingFileError("builtin:digits needs scikit-learn (pip install scikit-learn): "
                               "its 8x8 digits ship inside the package") from error
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    return images, digits.target.astype(np.int64)


def _to_tensor(images: np.ndarray, image_size: int | None, channels: int | None) -> Tensor:
    """(N, h, w) uint8 greyscale -> (N, C, H, W) uint8, resized like decode_image (bilinear)."""
    if image_size is not None and images.shape[1:] != (image_size, image_size):
        images = np.stack([np.asarray(Image.fromarray(im).resize(
            (image_size, image_size), Image.Resampling.BILINEAR)) for im in images])
    tensor = torch.from_numpy(np.ascontiguousarray(images))[:, None]  # (N, 1, H, W)
    return tensor.repeat(1, 3, 1, 1) if channels == 3 else tensor


def _split(images: np.ndarray, labels: np.ndarray, rows: list[int], sources: list[str],
           classes: list[str], image_size: int | None, channels: int | None) -> ImageSplit:
    return ImageSplit(_to_tensor(images[rows], image_size, channels),
                      torch.as_tensor(labels[rows], dtype=torch.int64), classes,
                      [sources[i] for i in rows])


def load_images(spec: str, *, image_size: int | None = None, channels: int | None = None,
                valid_fraction: float = 0.1, seed: int = 0) -> dict[str, ImageSplit]:
    """Splits "train", "valid", "test" of `spec`: "builtin:fashion-mnist", "builtin:digits",
    or a folder of class folders. `image_size` (int) resizes to a square, `channels` is 1 or
    3 (None: the data's own), `seed` chooses the validation images carved out of train."""
    check_fraction(valid_fraction)
    check_channels(channels)
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size}")
    name = builtin_name(spec, BUILTIN_IMAGE_SETS)
    if name == "fashion-mnist":
        parts = _fashion_mnist(FASHION_MNIST_DIR)
        (train_x, train_y), (test_x, test_y) = parts["train"], parts["t10k"]
        train_rows, valid_rows = stratified_split(train_y, valid_fraction, seed)
        train_src = [f"fashion-mnist:train:{i}" for i in range(len(train_y))]
        test_src = [f"fashion-mnist:test:{i}" for i in range(len(test_y))]
        args = (FASHION_MNIST_CLASSES, image_size, channels)
        return {"train": _split(train_x, train_y, train_rows, train_src, *args),
                "valid": _split(train_x, train_y, valid_rows, train_src, *args),
                "test": _split(test_x, test_y, list(range(len(test_y))), test_src, *args)}
    if name == "digits":
        images, labels = _digits()
        rest, test_rows = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
        kept, held = stratified_split(labels[rest], valid_fraction, seed)
        sources = [f"digits:{i}" for i in range(len(labels))]
        args = ([str(d) for d in range(10)], image_size, channels)
        return {"train": _split(images, labels, [rest[i] for i in kept], sources, *args),
                "valid": _split(images, labels, [rest[i] for i in held], sources, *args),
                "test": _split(images, labels, test_rows, sources, *args)}
    folders, images, _ = read_image_folder(spec, image_size, channels)
    splits = {split: ImageSplit(images[split], torch.tensor(folders.labels[split]),
                                folders.classes, [str(p) for p in folders.files[split]])
              for split in folders.files}
    if "valid" not in splits:
        train = splits["train"]
        kept, held = stratified_split(train.labels.tolist(), valid_fraction, seed)
        splits["valid"] = _take(train, held)
        splits["train"] = _take(train, kept)
    return {split: splits[split] for split in ("train", "valid", "test")}


def _take(split: ImageSplit, rows: list[int]) -> ImageSplit:
    index = torch.tensor(rows, dtype=torch.long)
    return ImageSplit(split.images[index], split.labels[index], split.classes,
                      [split.sources[i] for i in rows])
