"""skip(n) on every batch source: skip(n) then next() gives exactly the batch that n calls of
next() and one more give, across epoch ends, and leaves the same state (what a rank of a
distributed run relies on to read only its share)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnlab.data.batching import ShuffledRows, TokenBatches
from attnlab.data.shards import ShardWriter, open_prepared, write_meta
from attnlab.tasks.classification import ShuffledBatches
from attnlab.tasks.language_model import WindowBatches
from attnlab.tasks.masked_lm import MaskedWindows
from attnlab.tasks.translation_data import PreparedPairs


def random_pairs(n=60, seed=0):
    rng = random.Random(seed)
    return [([rng.randrange(4, 50) for _ in range(rng.randint(1, 20))] + [2],
             [rng.randrange(4, 50) for _ in range(rng.randint(1, 20))] + [2]) for _ in range(n)]


def prepared_pairs(tmp_path, pairs):
    writers = {side: ShardWriter(tmp_path, f"train.{side}", np.uint16) for side in ("src", "tgt")}
    writers["src"].append([s for s, _ in pairs])
    writers["tgt"].append([t for _, t in pairs])
    (tmp_path / "tokenizer.json").write_text("{}")
    write_meta(tmp_path, {"kind": "parallel", "dtype": "uint16",
                          "shards": {f"train.{k}": w.close() for k, w in writers.items()}})
    prepared = open_prepared(tmp_path, "parallel")
    return PreparedPairs(prepared.shard("train.src"), prepared.shard("train.tgt"),
                         np.arange(len(pairs)))


def sources(tmp_path):
    """name -> a function making a fresh source (the same one each call)."""
    pairs = random_pairs()
    stream = torch.randint(5, 90, (400,))
    examples = [(p[0], i % 3) for i, p in enumerate(pairs)]
    return {
        "TokenBatches": lambda: TokenBatches(pairs, max_tokens=90, pad_id=0, seed=3),
        "TokenBatches(memmap)": lambda: TokenBatches(prepared_pairs(tmp_path, pairs),
                                                     max_tokens=90, pad_id=0, seed=3),
        "ShuffledBatches": lambda: ShuffledBatches(examples, batch_size=7, pad_id=0, seed=1),
        "WindowBatches": lambda: WindowBatches(stream, block_size=16, batch_size=4, seed=2),
        "MaskedWindows": lambda: MaskedWindows(stream, block_size=16, batch_size=4, seed=2,
                                               vocab_size=100, mask_prob=0.15),
    }


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("name", ["TokenBatches", "TokenBatches(memmap)", "ShuffledBatches",
                                  "WindowBatches", "MaskedWindows"])
def test_skip_then_next_is_the_batch_n_nexts_then_one_more_give(name, tmp_path):
    make = sources(tmp_path)[name]
    first = make()
    per_epoch = getattr(first, "per_epoch", None) or (len(first) if hasattr(first, "__len__")
                                                     else 5)  # windows have no epochs
    for before in (0, 1, per_epoch - 1):
        for n in (0, 1, 2, per_epoch - 1, per_epoch, per_epoch + 1, 3 * per_epoch + 2):
            skipped, stepped = make(), make()
            for source in (skipped, stepped):
                for _ in range(before):
                    source.next()
            skipped.skip(n)
            for _ in range(n):
                stepped.next()
            assert skipped.state_dict() == stepped.state_dict(), (before, n)
            assert same(skipped.next(), stepped.next()), (before, n)


def test_memmap_pairs_batch_like_pairs_in_memory(tmp_path):
    pairs = random_pairs()
    memory = TokenBatches(pairs, max_tokens=90, pad_id=0, seed=3)
    mapped = TokenBatches(prepared_pairs(tmp_path, pairs), max_tokens=90, pad_id=0, seed=3)
    for _ in range(2 * len(memory) + 1):
        assert same(memory.next(), mapped.next())


def test_shuffled_rows_skip():
    rows, stepped = ShuffledRows(10, 3, seed=0), ShuffledRows(10, 3, seed=0)
    rows.skip(7)
    for _ in range(7):
        stepped.next_rows()
    assert torch.equal(rows.next_rows(), stepped.next_rows())
