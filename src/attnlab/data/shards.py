"""Memory-mapped token shards: a corpus tokenized once (`attnlab prepare`), then read by
training without loading it (numpy memmaps; the layout of nanoGPT's `train.bin` and
Megatron-LM's indexed datasets: one flat array of token ids plus an array of offsets).

A prepared folder (flat, so the run folder's data fingerprint covers every file):

    prepared.json          format and version, kind ("text" or "parallel"), dtype, counts per
                           shard, the source files' names and sizes, the tokenizer settings
    tokenizer.json         the tokenizer the ids belong to
    NAME.ids.bin           token ids of shard NAME, uint16 when the vocabulary fits, else uint32
    NAME.offsets.bin       int64, one more than the shard's sequences: sequence i is
                           ids[offsets[i]:offsets[i + 1]]

Writing streams (`ShardWriter.append` takes a chunk of encoded sequences at a time) into a
temporary folder beside the target, renamed onto it at the end (`building`): a prepare that
fails or is killed never leaves a folder that looks complete. Reading (`open_prepared`) checks
every file against prepared.json (a DataError names the file) and maps it with
`np.memmap(mode="r")`: only the pages a batch touches are read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attnlab.data.normalize import check_normal_form, normalize_text
from attnlab.errors import DataError, FolderError
from attnlab.serialization import atomic_write

META_NAME = "prepared.json"
FORMAT = "attnlab-prepared"
VERSION = 1
KINDS = ("text", "parallel")
OFFSETS_DTYPE = np.dtype(np.int64)


def ids_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def is_prepared(path: str | Path | None) -> bool:
    """True for a folder `attnlab prepare` wrote (it holds prepared.json)."""
    return path is not None and (Path(path) / META_NAME).is_file()


def iter_lines(path: Path, normalize: str = "none") -> Iterator[str]:
    """The lines of a UTF-8 file one at a time, as `data.parallel.read_lines` gives them (split
    on "\\n" only, trailing "\\r" and a byte-order mark removed, Unicode form `normalize`);
    bad UTF-8 is a DataError with the line."""
    check_normal_form(normalize)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {error.start} of the "
                                f"line: {raw[error.start:error.start + 4]!r}); convert the file "
                                f"to UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name}`"
                                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield normalize_text(line.rstrip("\n").rstrip("\r"), normalize)


class ShardWriter:
    """Appends sequences of ids to NAME.ids.bin / NAME.offsets.bin in `folder`, chunk by chunk
    (nothing but the current chunk is held in memory)."""

    def __init__(self, folder: Path, name: str, dtype: np.dtype) -> None:
        self.name, self.dtype = name, np.dtype(dtype)
        self.limit = np.iinfo(self.dtype).max
        self._ids = (folder / f"{name}.ids.bin").open("wb")
        self._offsets = (folder / f"{name}.offsets.bin").open("wb")
        np.zeros(1, OFFSETS_DTYPE).tofile(self._offsets)
        self.sequences = self.tokens = 0

    def append(self, sequences: Sequence[Sequence[int]]) -> None:
        lengths = np.fromiter((len(s) for s in sequences), OFFSETS_DTYPE, len(sequences))
        flat = np.fromiter((i for s in sequences for i in s), np.int64, int(lengths.sum()))
        if flat.size and (flat.min() < 0 or flat.max() > self.limit):
            raise ValueError(f"{self.name}: id {int(flat.max())} does not fit {self.dtype}")
        flat.astype(self.dtype).tofile(self._ids)
        (self.tokens + np.cumsum(lengths)).tofile(self._offsets)
        self.sequences += len(sequences)
        self.tokens += int(lengths.sum())

    def close(self) -> dict[str, int]:
        """Flush both files; the counts prepared.json records for the shard."""
        self._ids.close()
        self._offsets.close()
        return {"sequences": self.sequences, "tokens": self.tokens}


@contextmanager
def building(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `out` to write a prepared folder into, renamed to `out` when
    the block ends well and deleted when it raises. `out` must be new or empty, or (with
    `overwrite`) a prepared folder, which is replaced only once the new one is complete."""
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out} is a file; expected a folder for the prepared data")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not (overwrite and is_prepared(out)):
        how = ("add --overwrite to replace it" if is_prepared(out)
               else "expected a new or empty folder")
        raise FolderError(f"--out {out} already holds {', '.join(held[:5])}; {how}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if held:
            shutil.rmtree(out)
        os.replace(tmp, out)  # onto a missing or empty folder: atomic on POSIX
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    text = json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=2) + "\n"
    atomic_write(folder / META_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class TokenStream:
    """A flat run of token ids on disk, used like a (N,) tensor of ids: `numel()`, a slice is
    another TokenStream (nothing read), a tensor of positions gives an int64 tensor of that
    shape (only those pages read), `long()` reads it whole."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids  # (N,) uint16 / uint32, memory-mapped

    def numel(self) -> int:
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return self.numel()

    def __getitem__(self, key: slice | Tensor) -> TokenStream | Tensor:
        if isinstance(key, slice):
            return TokenStream(self.ids[key])
        return torch.from_numpy(self.ids[key.numpy()].astype(np.int64))

    def long(self) -> Tensor:
        return torch.from_numpy(self.ids.astype(np.int64))


@dataclass
class TokenShard:
    """One memory-mapped shard: `len()` sequences, `lengths` (numpy), `[i]` -> (n,) int64
    tensor, `ids` the flat id array (for a token stream)."""

    ids: np.ndarray  # (tokens,) uint16 / uint32, memory-mapped
    offsets: np.ndarray  # (sequences + 1,) int64, memory-mapped

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (sequences,)

    def __getitem__(self, i: int) -> Tensor:
        start, end = self.offsets[i], self.offsets[i + 1]
        return torch.from_numpy(self.ids[start:end].astype(np.int64))

    def stream(self) -> TokenStream:
        """All sequences as one stream of ids."""
        return TokenStream(self.ids)


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing from the prepared folder; prepare it again "
                        "(attnlab prepare)")
    size = path.stat().st_size
    if size != count * dtype.itemsize:
        raise DataError(f"{path}: {size} bytes, expected {count * dtype.itemsize} ({count} "
                        f"{dtype.name} values, prepared.json); the file is truncated or "
                        "changed: prepare it again")
    if count == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


@dataclass
class Prepared:
    """A prepared folder opened for reading (`open_prepared`)."""

    folder: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def shard(self, name: str) -> TokenShard:
        counts = self.meta["shards"].get(name)
        if counts is None:
            raise DataError(f"{self.folder}: no shard {name!r} in {META_NAME} (it has "
                            f"{sorted(self.meta['shards'])})")
        ids = _map(self.folder / f"{name}.ids.bin", np.dtype(self.meta["dtype"]),
                   counts["tokens"])
        offsets_path = self.folder / f"{name}.offsets.bin"
        offsets = _map(offsets_path, OFFSETS_DTYPE, counts["sequences"] + 1)
        if offsets[0] != 0 or offsets[-1] != counts["tokens"]:
            raise DataError(f"{offsets_path}: offsets run from {int(offsets[0])} to "
                            f"{int(offsets[-1])}, expected 0 to {counts['tokens']}; the file is "
                            "garbled: prepare it again")
        return TokenShard(ids, offsets)


def open_prepared(path: str | Path, kind: str) -> Prepared:
    """The prepared folder at `path`, checked: prepared.json readable, of this format, version
    and `kind`; the tokenizer there. A problem is a DataError naming the file."""
    folder = Path(path)
    meta_path = folder / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{meta_path}: missing; {folder} is not a prepared folder "
                        "(attnlab prepare writes one)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{meta_path}: not readable JSON ({error}); prepare it again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: expected format {FORMAT!r}, got "
                        f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("version") != VERSION:
        raise DataError(f"{meta_path}: format version {meta.get('version')}, this attnlab "
                        f"reads version {VERSION}; prepare it again")
    if meta.get("kind") != kind:
        command = "attnlab prepare " + ("lm" if kind == "text" else "translate")
        raise DataError(f"{folder}: prepared as {meta.get('kind')!r} data, expected {kind!r} "
                        f"({command} writes it)")
    if not (folder / "tokenizer.json").is_file():
        raise DataError(f"{folder / 'tokenizer.json'}: missing from the prepared folder; "
                        "prepare it again")
    return Prepared(folder, meta)


def source_record(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The names and sizes of the files a prepared folder was made from."""
    return [{"name": str(p), "size": p.stat().st_size} for p in paths]
