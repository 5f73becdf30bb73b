"""Images from files: Pillow decoding, and a folder of class folders (the torchvision
`ImageFolder` convention, `data/class_folders.py`) read into one uint8 tensor per split.

Resizing is a plain bilinear resize to `image_size` x `image_size` (no crop), the resize that
Hugging Face's `ViTImageProcessor` applies (Pillow, BILINEAR), so a model trained here sees
the same pixels in transformers. Square images, the usual case, are only scaled. Channels: 1
(Pillow mode "L") or 3 ("RGB"; an alpha channel is dropped); 16-bit greyscale is scaled to 8
bits. With `channels=None` a folder is read as 1 channel when every training file is greyscale
by its mode (L, LA, 1, I;16, I, or a palette of greys), else 3. With `image_size=None` the
training images must share one size, and valid / test images of another size are resized to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm import tqdm

from attnlab.data.class_folders import ClassFolders, scan_class_folders
from attnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
PROGRESS_OVER = 1000  # files: decoding more than this shows a progress bar
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError,
                Image.DecompressionBombError)


def _size_pair(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """(height, width), or None (keep the file's size)."""
    if image_size is None:
        return None
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size}")
    return int(h), int(w)


def check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}")


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except _READ_ERRORS as error:
        raise DataError(f"{path}: not a readable image ({error}); replace or remove the "
                        "file") from None


def decode_image(path: str | Path, image_size: int | tuple[int, int] | None,
                 channels: int) -> Tensor:
    """(C, H, W) uint8: the image at `path` in `channels` (1 or 3) channels, resized (bilinear)
    to `image_size` (an int: square; (H, W); None: the file's size). An unreadable or
    truncated file is a DataError naming it."""
    check_channels(channels)
    if channels is None:
        raise ConfigError("channels must be 1 (greyscale) or 3 (RGB), got None")
    size = _size_pair(image_size)
    path = Path(path)
    with _open(path) as image:
        try:
            image.load()
            if channels == 1:
                if image.mode.startswith("I") or image.mode == "F":
                    # 16-bit (or 32-bit) greyscale: scale 0..65535 to 0..255, not clip
                    wide = np.asarray(image, dtype=np.float64) / 257.0
                    image = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
                else:
                    image = image.convert("L")
            else:
                image = image.convert("RGB")
            if size is not None and (image.height, image.width) != size:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, 3)
        except _READ_ERRORS as error:
            raise DataError(f"{path}: not a readable image ({error}); replace or remove the "
                            "file") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (C, H, W)


def _is_grey(image: Image.Image) -> bool:
    if image.mode in _GREY_MODES:
        return True
    if image.mode == "P":
        palette = np.asarray(image.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return False


def _headers(files: list[Path]) -> list[tuple[tuple[int, int], bool]]:
    """((height, width), greyscale?) of each file, from its header (Pillow opens lazily)."""
    found = []
    for path in files:
        with _open(path) as image:
            found.append(((image.height, image.width), _is_grey(image)))
    return found


def read_image_folder(root: str | Path, image_size: int | None, channels: int | None
                      ) -> tuple[ClassFolders, dict[str, Tensor], int]:
    """(the folder's files and labels, split -> (N, C, H, W) uint8 images, channels)."""
    check_channels(channels)
    size = _size_pair(image_size)
    folders = scan_class_folders(root, IMAGE_EXTENSIONS, "image")
    train = folders.files["train"]
    headers = _headers(train) if channels is None or size is None else []
    if channels is None:
        channels = 1 if all(grey for _, grey in headers) else 3
    if size is None:
        sizes = {s for s, _ in headers}
        if len(sizes) > 1:
            first = headers[0][0]
            other = next(i for i, (s, _) in enumerate(headers) if s != first)
            raise DataError(
                f"{root}: training images differ in size ({train[0]} is {first[1]}x{first[0]}, "
                f"{train[other]} is {headers[other][0][1]}x{headers[other][0][0]}); pass "
                "--image-size N to resize every image to N x N")
        size = headers[0][0]
    total = sum(len(f) for f in folders.files.values())
    bar = tqdm(total=total, desc=f"decoding {total} images", unit="img",
               disable=total <= PROGRESS_OVER)
    images: dict[str, Tensor] = {}
    for split, files in folders.files.items():
        decoded = []
        for path in files:
            decoded.append(decode_image(path, size, channels))
            bar.update()
        images[split] = torch.stack(decoded)  # (N, C, H, W)
    bar.close()
    log.info("%s: %s images of %dx%d, %d channel(s), %d classes", root,
             {s: len(f) for s, f in folders.files.items()}, size[1], size[0], channels,
             len(folders.classes))
    return folders, images, channels
