"""Memory-mapped token shards: ids and offsets round-trip, the id type fits the vocabulary, a
failed prepare leaves no folder, and a damaged prepared folder is a DataError naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlab.data.shards import (
    META_NAME,
    ShardWriter,
    building,
    ids_dtype,
    open_prepared,
    write_meta,
)
from attnlab.errors import DataError, FolderError
from attnlab.tasks.lm_prepare import prepare_text

SEQUENCES = [[5, 6, 7], [], [8], [70_000, 1, 2, 3]]


def write_folder(folder, sequences, dtype, chunk=2):
    folder.mkdir()
    writer = ShardWriter(folder, "text", dtype)
    for start in range(0, len(sequences), chunk):
        writer.append(sequences[start:start + chunk])
    (folder / "tokenizer.json").write_text("{}")
    write_meta(folder, {"kind": "text", "dtype": np.dtype(dtype).name,
                        "shards": {"text": writer.close()}})
    return folder


def test_ids_and_offsets_round_trip(tmp_path):
    folder = write_folder(tmp_path / "p", SEQUENCES, np.uint32)
    shard = open_prepared(folder, "text").shard("text")
    assert len(shard) == 4
    assert shard.offsets.tolist() == [0, 3, 3, 4, 8]
    assert shard.lengths.tolist() == [3, 0, 1, 4]
    assert [shard[i].tolist() for i in range(4)] == SEQUENCES
    assert shard[3].dtype == torch.int64
    assert (folder / "text.ids.bin").stat().st_size == 8 * 4  # uint32


def test_the_id_type_fits_the_vocabulary(tmp_path):
    assert ids_dtype(65_536) == np.uint16 and ids_dtype(65_537) == np.uint32
    with pytest.raises(ValueError, match="does not fit uint16"):
        write_folder(tmp_path / "p", SEQUENCES, np.uint16)


def test_a_token_stream_reads_like_a_tensor(tmp_path):
    folder = write_folder(tmp_path / "p", [[1, 2, 3], [4, 5], [6, 7, 8, 9]], np.uint16)
    stream = open_prepared(folder, "text").shard("text").stream()
    tensor = torch.arange(1, 10)
    index = torch.tensor([[0, 1], [7, 8]])
    assert torch.equal(stream[index], tensor[index])
    assert stream[2:5].numel() == 3 and torch.equal(stream[2:5].long(), tensor[2:5])


def test_a_failed_prepare_leaves_no_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), building(out) as folder:
        (folder / "x.bin").write_bytes(b"half")
        raise RuntimeError("killed half-way")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n" * 50 + b"caf\xe9\n")
    with pytest.raises(DataError, match=r"bad.txt:51: not valid UTF-8"):
        prepare_text(bad, out, tokenizer="chars", vocab_size=50, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_out_must_be_new_empty_or_a_prepared_folder_with_overwrite(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a b c\nd e f\n" * 20)
    out = tmp_path / "out"
    prepare_text(text, out, tokenizer="chars", vocab_size=50, progress=False)
    with pytest.raises(FolderError, match="--overwrite"):
        prepare_text(text, out, tokenizer="chars", vocab_size=50, progress=False)
    prepare_text(text, out, tokenizer="chars", vocab_size=50, overwrite=True, progress=False)
    assert (out / META_NAME).is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match="expected a new or empty folder"):
        prepare_text(text, tmp_path / "other", tokenizer="chars", vocab_size=50,
                     overwrite=True, progress=False)


def test_a_damaged_folder_is_a_data_error_naming_the_file(tmp_path):
    folder = write_folder(tmp_path / "p", SEQUENCES, np.uint32)
    ids = folder / "text.ids.bin"
    ids.write_bytes(ids.read_bytes()[:-4])  # truncated
    with pytest.raises(DataError, match=r"text.ids.bin: 28 bytes, expected 32"):
        open_prepared(folder, "text").shard("text")
    ids.write_bytes(ids.read_bytes() + b"\0" * 4)
    offsets = folder / "text.offsets.bin"
    offsets.write_bytes(np.array([0, 3, 3, 4, 9], np.int64).tobytes())  # garbled
    with pytest.raises(DataError, match=r"text.offsets.bin: offsets run from 0 to 9"):
        open_prepared(folder, "text").shard("text")
    with pytest.raises(DataError, match="prepared as 'text' data, expected 'parallel'"):
        open_prepared(folder, "parallel")
    (folder / META_NAME).write_text('{"format": "attnlab-prepared", "vers')
    with pytest.raises(DataError, match=r"prepared.json: not readable JSON"):
        open_prepared(folder, "text")
    (folder / META_NAME).write_text(json.dumps({"format": "attnlab-prepared", "version": 99}))
    with pytest.raises(DataError, match="format version 99"):
        open_prepared(folder, "text")
    (folder / META_NAME).unlink()
    with pytest.raises(DataError, match="prepared.json: missing"):
        open_prepared(folder, "text")
