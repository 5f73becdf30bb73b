"""A folder of class folders, shared by the image and the audio loaders: the torchvision
`ImageFolder` convention (`DIR/train/<class>/*.png`, `DIR/test/<class>/...`, an optional
`DIR/valid/<class>/...`), plus the seeded, stratified split that carves a validation split out
of the training one when there is no `DIR/valid`.

Every problem is a DataError naming the folder and saying what to do: no `train` (or `test`)
folder, a split without class folders, a class folder without files of the accepted kinds, a
single class, a class in `test` or `valid` that `train` lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnlab.errors import ConfigError, DataError, MissingFileError

log = logging.getLogger(__name__)

BUILTIN = "builtin:"


@dataclass(frozen=True)
class ClassFolders:
    """The files of each split, labelled by index into `classes` (the sorted train classes)."""

    classes: list[str]
    files: dict[str, list[Path]]  # split -> files, sorted by class then path
    labels: dict[str, list[int]]  # split -> one label per file


def check_fraction(valid_fraction: float) -> None:
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(f"valid_fraction must be in (0, 1), got {valid_fraction}")


def builtin_name(spec: str, known: Sequence[str]) -> str | None:
    """The name after "builtin:" (checked against `known`), or None for a folder spec."""
    if not spec.startswith(BUILTIN):
        return None
    name = spec[len(BUILTIN):]
    if name not in known:
        choices = ", ".join(BUILTIN + k for k in known)
        raise ConfigError(f"--data {spec}: no such built-in set; choose one of {choices} "
                          "or give a folder")
    return name


def _files_of(folder: Path, extensions: frozenset[str]) -> tuple[list[Path], int]:
    """(accepted files under `folder`, any depth, sorted; count of other files skipped)."""
    found, other = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() in extensions:
            found.append(path)
        else:
            other += 1
    return found, other


def _split_classes(split_dir: Path, extensions: frozenset[str], kind: str
                   ) -> dict[str, list[Path]]:
    kinds = "/".join(sorted(e.lstrip(".") for e in extensions))
    classes = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir}: no class folders; put the {kind} files of each class in "
                        f"{split_dir}/<class>/ (files of kind {kinds})")
    found: dict[str, list[Path]] = {}
    for folder in classes:
        files, other = _files_of(folder, extensions)
        if not files:
            raise DataError(f"{folder}: empty class folder (no {kinds} files"
                            f"{f'; {other} other file(s)' if other else ''}); add {kind} "
                            "files or remove the folder")
        if other:
            log.warning("%s: %d file(s) that are not %s skipped", folder, other, kinds)
        found[folder.name] = files
    return found


def scan_class_folders(root: str | Path, extensions: frozenset[str], kind: str) -> ClassFolders:
    """The files of `root/{train,valid,test}/<class>/`; `valid` may be absent (its key is then
    missing from `files`). `extensions` are lower-case with the dot (".png")."""
    root = Path(root)
    if not root.exists():
        raise MissingFileError(f"--data {root}: no such folder (expected {root}/train/<class>/ "
                               f"and {root}/test/<class>/ holding {kind} files)")
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder (expected {root}/train/<class>/ and "
                        f"{root}/test/<class>/ holding {kind} files)")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            there = sorted(p.name for p in root.iterdir())[:10]
            raise DataError(f"{root}: no {split} folder (expected {root}/{split}/<class>/ "
                            f"holding {kind} files; the folder holds {there})")
    train = _split_classes(root / "train", extensions, kind)
    if len(train) < 2:
        raise DataError(f"{root / 'train'}: only one class ({next(iter(train))!r}); a "
                        "classifier needs at least two class folders")
    classes = sorted(train)
    index = {name: i for i, name in enumerate(classes)}
    splits = {"train": train}
    for split in ("valid", "test"):
        if split == "valid" and not (root / split).is_dir():
            continue
        found = _split_classes(root / split, extensions, kind)
        unknown = sorted(set(found) - set(index))
        if unknown:
            raise DataError(f"{root / split / unknown[0]}: class {unknown[0]!r} is not in "
                            f"{root / 'train'} (train classes: {classes}); add training files "
                            "for it or remove the folder")
        splits[split] = found
    files = {split: [p for name in sorted(found) for p in found[name]]
             for split, found in splits.items()}
    labels = {split: [index[name] for name in sorted(found) for _ in found[name]]
              for split, found in splits.items()}
    return ClassFolders(classes, files, labels)


def stratified_split(labels: Sequence[int], fraction: float, seed: int
                     ) -> tuple[list[int], list[int]]:
    """(kept, held out) row indices, both sorted: `fraction` of each class's rows held out
    (rounded; at least one of a class with two rows or more), chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    kept: list[int] = []
    held: list[int] = []
    for label in np.unique(array):
        rows = np.flatnonzero(array == label)
        rng.shuffle(rows)
        n = min(len(rows) - 1, max(1, round(len(rows) * fraction))) if len(rows) > 1 else 0
        held.extend(rows[:n].tolist())
        kept.extend(rows[n:].tolist())
    return sorted(kept), sorted(held)
