"""`attnlab prepare lm`: a text file tokenized once into a memory-mapped token stream
(`data/shards.py`), for `attnlab train lm --text FOLDER` to train on a corpus larger than memory
(the pre-tokenized `train.bin` of nanoGPT, in attnlab's prepared-folder format).

The file is read twice, a line at a time: once to train the tokenizer (`train_tokenizer`, the
lm task's own), once to encode chunks of lines (`encode_lines`, the task's own: the stream is
the one `train lm --text FILE` builds in memory, token for token) and append them to the shard.
The held-out part is cut at training time by --valid-fraction, as for a text file.

`--text builtin:web` (`prepare_web`) writes the built-in corpus's three book splits: the
tokenizer trained on the train books, the shard `text` (train) and the shards `valid` and
`test`, which `train lm` then uses as its held-out streams instead of a --valid-fraction tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from attnlab.data.shards import (
    ShardWriter,
    building,
    ids_dtype,
    iter_lines,
    source_record,
    write_meta,
)
from attnlab.data.web_corpus import MODULE, PACKAGE, TEST_BOOKS, VALID_BOOKS, WEB, load_web
from attnlab.errors import DataError
from attnlab.tasks.language_model import encode_lines, train_tokenizer
from attnlab.tokenizers import Tokenizer

CHUNK_LINES = 10_000  # lines encoded and appended at a time


def chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(lines, size)):
        yield chunk


def write_prepared(out: Path, trained: Tokenizer, shards: dict[str, Callable[[], Iterator[str]]],
                   lines: int, sources: list[dict[str, Any]], *, kind: str, vocab_size: int,
                   overwrite: bool, progress: bool, start: float) -> dict[str, Any]:
    """The prepared folder `out`: the tokenizer, one shard per name in `shards` (each a fresh
    iterator of its lines, encoded `CHUNK_LINES` at a time), the meta record; the summary
    counts over all shards (`lines`: their total, for the progress bar)."""
    with building(out, overwrite) as folder:
        trained.save(folder / "tokenizer.json")
        dtype = ids_dtype(trained.vocab_size)
        counts = {}
        with tqdm(total=lines, unit=" lines", desc="encoding", disable=not progress,
                  dynamic_ncols=True) as bar:
            for name, shard_lines in shards.items():
                writer = ShardWriter(folder, name, dtype)
                for chunk in chunks(shard_lines(), CHUNK_LINES):
                    writer.append(encode_lines(trained, chunk))
                    bar.update(len(chunk))
                counts[name] = writer.close()
        write_meta(folder, {"kind": "text", "dtype": dtype.name, "shards": counts,
                            "sources": sources,
                            "tokenizer": {"kind": kind, "vocab_size": trained.vocab_size,
                                          "requested_vocab_size": vocab_size}})
    return {"sequences": sum(c["sequences"] for c in counts.values()),
            "tokens": sum(c["tokens"] for c in counts.values()),
            "bytes": sum(p.stat().st_size for p in out.iterdir()),
            "seconds": time.perf_counter() - start}


def prepare_text(text: Path, out: Path, *, tokenizer: str, vocab_size: int,
                 overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write the prepared folder `out` for the text file `text`; the summary counts."""
    start = time.perf_counter()
    seen = {"lines": 0, "text": False}

    def counted() -> Iterator[str]:
        for line in iter_lines(text):
            seen["lines"] += 1
            seen["text"] = seen["text"] or bool(line.strip())
            yield line

    trained = train_tokenizer(counted(), vocab_size, tokenizer)
    if not seen["text"]:
        raise DataError(f"--text {text}: the file holds no text")
    return write_prepared(out, trained, {"text": lambda: iter_lines(text)}, seen["lines"],
                          source_record([text]), kind=tokenizer, vocab_size=vocab_size,
                          overwrite=overwrite, progress=progress, start=start)


# the prepared shard of each split of builtin:web ("text": the one `train lm` trains on)
WEB_SHARDS = {"train": "text", "valid": "valid", "test": "test"}


def prepare_web(out: Path, *, tokenizer: str, vocab_size: int, overwrite: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Write the prepared folder `out` for builtin:web (`data/web_corpus.py`); the summary
    counts over its three shards."""
    start = time.perf_counter()
    corpus = load_web()
    trained = train_tokenizer(corpus.lines["train"], vocab_size, tokenizer)
    shards = {name: (lambda split=split: iter(corpus.lines[split]))
              for split, name in WEB_SHARDS.items()}
    sources = [{"name": WEB, "module": MODULE, "package": PACKAGE,
                "valid_books": list(VALID_BOOKS), "test_books": list(TEST_BOOKS)}]
    return write_prepared(out, trained, shards,
                          sum(len(lines) for lines in corpus.lines.values()), sources,
                          kind=tokenizer, vocab_size=vocab_size, overwrite=overwrite,
                          progress=progress, start=start)
