"""Images with captions, for CLIP (Radford et al., 2021, "Learning Transferable Visual Models
From Natural Language Supervision") and DALL-E-style text-to-image (Ramesh et al., 2021):
two built-in sets that install offline and the user's own folder.

- `builtin:emoji`: Noto Color Emoji glyphs named in English (`data/emoji_images.py`), split by
  emoji (skin tones together), so test captions are unseen.
- `builtin:digit-scenes`: one or two scikit-learn digits placed on a canvas with what-is-where
  captions (`data/digit_scenes.py`); test scenes draw only test-split digits.
- a folder: `DIR/captions.tsv`, one `FILE<TAB>CAPTION` per line (FILE relative to DIR, any
  format Pillow reads; blank lines and a first line `file<TAB>caption` are skipped), split by
  image (seeded: 10% valid, 10% test; every caption of one file stays in one split); or
  `DIR/train.tsv` + `DIR/test.tsv` (+ `DIR/valid.tsv`, else 10% of train by image, seeded).
  Images are decoded by `data/image_folder.decode_image` (RGB, or 1 channel when every image
  is grey) at `image_size` (bilinear) or, without it, at their common size. Every problem is a
  DataError naming the file and line: no tab, an empty caption, a missing or unreadable image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.data.class_folders import builtin_name
from attnlab.data.digit_scenes import digit_scene_splits
from attnlab.data.emoji_images import emoji_splits
from attnlab.data.image_folder import decode_image
from attnlab.errors import ConfigError, DataError, MissingFileError

log = logging.getLogger(__name__)

BUILTIN_CAPTIONED = ("emoji", "digit-scenes")
SPLITS = ("train", "valid", "test")
VALID_FRACTION = 0.1  # of a folder's images, when it has no valid.tsv
TEST_FRACTION = 0.1  # of a folder's images, when it has only captions.tsv
_HEADER = ("file", "caption")


@dataclass
class CaptionedImages:
    """One split: images, one caption each, where each came from, what a split keeps apart."""

    images: Tensor  # (N, C, H, W) uint8
    captions: list[str]  # one per image
    sources: list[str]  # a file path, "emoji:U+1F600", "digit-scenes:train:17"
    groups: list[str]  # what a split keeps apart (emoji base name; a scene's caption; a file)

    def __len__(self) -> int:
        return len(self.captions)


def load_captioned(data: str, *, image_size: int | None = None, seed: int = 0
                   ) -> dict[str, CaptionedImages]:
    """Splits "train", "valid", "test" of `data`: "builtin:emoji", "builtin:digit-scenes" or
    a folder (see the module). `image_size` resizes to a square (builtins: emoji are drawn at
    it, default 32; scenes are 32 and resized bilinearly); `seed` picks the valid split (and
    a folder's test split); the built-in test splits are fixed."""
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    name = builtin_name(str(data), BUILTIN_CAPTIONED)
    if name == "emoji":
        parts = emoji_splits(image_size or 32, seed)
        return {s: _captioned(parts[s], torch.from_numpy(parts[s]["images"])) for s in SPLITS}
    if name == "digit-scenes":
        parts = digit_scene_splits(seed)
        return {s: _captioned(parts[s], _resize(parts[s]["images"], image_size))
                for s in SPLITS}
    return _load_folder(Path(data), image_size, seed)


def _captioned(part: dict, images: Tensor) -> CaptionedImages:
    return CaptionedImages(images, part["captions"], part["sources"], part["groups"])


def _resize(images: Tensor, image_size: int | None) -> Tensor:
    """(N, C, h, w) uint8 -> (N, C, S, S) uint8, bilinear (antialiased when shrinking)."""
    if image_size is None or tuple(images.shape[-2:]) == (image_size, image_size):
        return images
    x = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear",
                      align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def read_captions_tsv(path: Path) -> list[tuple[Path, str, int]]:
    """(image file, caption, line number) of each line of a `FILE<TAB>CAPTION` file, FILE
    relative to the file's folder; a missing image is named with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}); save it as UTF-8") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{number}: no tab in {line[:60]!r}; each line must be "
                            "FILE<TAB>CAPTION")
        file, caption = (part.strip() for part in line.split("\t", 1))
        if number == 1 and (file.lower(), caption.lower()) == _HEADER:
            continue
        if not file:
            raise DataError(f"{path}:{number}: empty file name; each line must be "
                            "FILE<TAB>CAPTION")
        if not caption:
            raise DataError(f"{path}:{number}: empty caption for {file}; give every image a "
                            "caption")
        image = path.parent / file
        if not image.is_file():
            raise DataError(f"{path}:{number}: no image {image}; fix the name or remove the "
                            "line")
        rows.append((image, caption, number))
    if not rows:
        raise DataError(f"{path}: no FILE<TAB>CAPTION lines")
    return rows


def _decode(rows: list[tuple[Path, str, int]], tsv: Path, image_size: int | None
            ) -> list[Tensor]:
    """(3, H, W) uint8 per row; an unreadable image is named with its line."""
    decoded = []
    for image, _, number in rows:
        try:
            decoded.append(decode_image(image, image_size, 3))
        except DataError as error:
            raise DataError(f"{tsv}:{number}: {error}") from None
    return decoded


def _by_image(rows: list[tuple[Path, str, int]], fractions: tuple[float, ...], seed: int,
              where: Path) -> list[list[int]]:
    """Row indices split by image file: the last len(fractions) parts hold those fractions of
    the files (at least one file each, seeded), the first part the rest."""
    files = sorted({str(r[0]) for r in rows})
    if len(files) < len(fractions) + 1:
        raise DataError(f"{where}: {len(files)} image(s); splitting by image needs at least "
                        f"{len(fractions) + 1}")
    order = np.random.default_rng(seed).permutation(len(files))
    part_of: dict[str, int] = {}
    start = 0
    for k, fraction in enumerate(fractions, start=1):
        n = max(1, round(len(files) * fraction))
        part_of.update((files[i], k) for i in order[start:start + n])
        start += n
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for index, row in enumerate(rows):
        parts[part_of.get(str(row[0]), 0)].append(index)
    return parts


def _load_folder(root: Path, image_size: int | None, seed: int) -> dict[str, CaptionedImages]:
    if not root.exists():
        raise MissingFileError(f"--data {root}: no such folder (expected {root}/captions.tsv or "
                               f"{root}/train.tsv and {root}/test.tsv, lines FILE<TAB>CAPTION)")
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder (expected {root}/captions.tsv or "
                        f"{root}/train.tsv and {root}/test.tsv, lines FILE<TAB>CAPTION)")
    # split -> (rows, the tsv they came from)
    found: dict[str, tuple[list[tuple[Path, str, int]], Path]] = {}
    if (root / "train.tsv").is_file():
        if not (root / "test.tsv").is_file():
            raise DataError(f"{root}: train.tsv but no test.tsv; add {root}/test.tsv (or put "
                            "every line in captions.tsv to split it by image)")
        for split in SPLITS:
            if (root / f"{split}.tsv").is_file():
                found[split] = read_captions_tsv(root / f"{split}.tsv"), root / f"{split}.tsv"
        if "valid" not in found:
            rows, tsv = found["train"]
            kept, held = _by_image(rows, (VALID_FRACTION,), seed, tsv)
            found["train"] = [rows[i] for i in kept], tsv
            found["valid"] = [rows[i] for i in held], tsv
    elif (root / "captions.tsv").is_file():
        tsv = root / "captions.tsv"
        rows = read_captions_tsv(tsv)
        parts = _by_image(rows, (VALID_FRACTION, TEST_FRACTION), seed, tsv)
        found = {split: ([rows[i] for i in part], tsv)
                 for split, part in zip(SPLITS, parts, strict=True)}
    else:
        there = sorted(p.name for p in root.iterdir())[:10]
        raise DataError(f"{root}: no captions.tsv (or train.tsv and test.tsv); put one "
                        f"FILE<TAB>CAPTION line per image in {root}/captions.tsv (the folder "
                        f"holds {there})")
    decoded = {split: _decode(rows, tsv, image_size) for split, (rows, tsv) in found.items()}
    if image_size is None:
        first = found["train"][0][0][0], tuple(decoded["train"][0].shape[1:])
        for split, images in decoded.items():
            for image, (path, _, _) in zip(images, found[split][0], strict=True):
                if tuple(image.shape[1:]) != first[1]:
                    raise DataError(
                        f"{root}: images differ in size ({first[0]} is "
                        f"{first[1][1]}x{first[1][0]}, {path} is {image.shape[2]}x"
                        f"{image.shape[1]}); pass --image-size N to resize every image")
    stacked = {split: torch.stack(images) for split, images in decoded.items()}  # (N, 3, H, W)
    grey = all(bool((x[:, 0:1] == x[:, 1:]).all()) for x in stacked.values())
    log.info("%s: %s captioned images, %s", root, {s: len(found[s][0]) for s in SPLITS},
             "greyscale" if grey else "RGB")
    return {split: CaptionedImages(stacked[split][:, :1] if grey else stacked[split],
                                   [r[1] for r in found[split][0]],
                                   [str(r[0]) for r in found[split][0]],
                                   [str(r[0]) for r in found[split][0]])
            for split in SPLITS}
