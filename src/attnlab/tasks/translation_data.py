"""A translation corpus tokenized once (`attnlab prepare translate`) and trained on from
memory-mapped shards (`data/shards.py`; the binarized corpora of fairseq-preprocess, in
attnlab's prepared-folder format), plus the pieces the in-memory path shares with it.

Prepare streams the training pairs three times, a line at a time: a scan (the checks of
`data/parallel.py`, the word count the `auto` vocabulary rule needs, the most frequent target
of the first MOST_FREQUENT_SAMPLE pairs for the baseline), joint BPE training
(`train_joint_bpe`, the task's own), then encoding chunk by chunk (`encode_pairs`, with </s>)
into `train.src` / `train.tgt` shards. valid and test stay small: they are checked and kept as
text (`{split}.src.txt`, `{split}.tgt.txt`, already in the corpus's Unicode form), since they
are decoded for BLEU. Training (`PreparedTranslation`) plans its token-count batches from the
two length arrays with numpy and collates each batch from memmap slices; the length cap
(`auto`: `choose_max_len` on the lengths) and the dropped-pair count work from the arrays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from tqdm import tqdm

from attnlab.data.parallel import SPLITS, ParallelCorpus, read_parallel_files, read_tsv
from attnlab.data.shards import (
    ShardWriter,
    TokenShard,
    building,
    ids_dtype,
    iter_lines,
    open_prepared,
    source_record,
    write_meta,
)
from attnlab.errors import DataError
from attnlab.evaluation.baselines import most_frequent
from attnlab.tasks.translation_auto import Choice, choose_max_len, choose_vocab_size
from attnlab.tokenizers import Tokenizer
from attnlab.training.settings import SettingError

log = logging.getLogger(__name__)

CHUNK_PAIRS = 10_000  # pairs encoded and appended at a time
MOST_FREQUENT_SAMPLE = 100_000  # training targets the most-frequent-target baseline counts


def encode_pairs(tokenizer: Tokenizer, pairs: list[tuple[str, str]]
                 ) -> list[tuple[list[int], list[int]]]:
    """Source and target ids, each ending in </s>."""
    src = tokenizer.encode_batch([s for s, _ in pairs], add_eos=True)
    tgt = tokenizer.encode_batch([t for _, t in pairs], add_eos=True)
    return list(zip(src, tgt, strict=True))


def train_joint_bpe(texts: Iterable[str], vocab_size: int, normalize: str) -> Tokenizer:
    """The joint source + target BPE of a translation run (texts: src, tgt, src, tgt, ...)."""
    log.info("training a %d-entry BPE vocabulary", vocab_size)
    return Tokenizer.train_bpe(texts, vocab_size=vocab_size, normalize=normalize)


def split_files(data_dir: Path, split: str, src_lang: str | None, tgt_lang: str | None,
                tsv: bool) -> list[Path]:
    if tsv:
        return [data_dir / f"{split}.tsv"]
    return [data_dir / f"{split}.{src_lang}", data_dir / f"{split}.{tgt_lang}"]


def iter_pairs(files: list[Path], normalize: str) -> Iterator[tuple[str, str]]:
    """The pairs of a split's files one at a time, with `data/parallel.py`'s checks."""
    if len(files) == 1:
        for number, line in enumerate(iter_lines(files[0], normalize), start=1):
            columns = line.split("\t")
            if len(columns) != 2:
                raise DataError(f"{files[0]}:{number}: expected 2 tab-separated columns "
                                f"(source, target), got {len(columns)}; remove stray tabs or "
                                "the line")
            yield columns[0], columns[1]
        return
    src_path, tgt_path = files
    lines = [0, 0]
    for s, t in zip_longest(iter_lines(src_path, normalize), iter_lines(tgt_path, normalize)):
        lines[0] += s is not None
        lines[1] += t is not None
        if s is not None and t is not None:
            yield s, t
    if lines[0] != lines[1]:
        raise DataError(f"{src_path} has {lines[0]} lines but {tgt_path} has {lines[1]}; line i "
                        "of each file must be a translation pair: realign the files")


def scan(files: list[Path], normalize: str) -> dict[str, Any]:
    """Check the training pairs and count them, their words and lines; the most frequent target
    of the first MOST_FREQUENT_SAMPLE."""
    pairs = words = 0
    empty: list[int] = []
    targets: list[str] = []
    for pairs, (s, t) in enumerate(iter_pairs(files, normalize), start=1):
        if not s.strip() or not t.strip():
            empty.append(pairs)
        words += len(s.split()) + len(t.split())
        if pairs <= MOST_FREQUENT_SAMPLE:
            targets.append(t)
    where = " / ".join(map(str, files))
    if not pairs:
        raise DataError(f"{where}: empty (the file holds no text); put one pair per line in it")
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"{where}: {len(empty)} pair(s) with an empty side at line(s) {shown}; "
                        "remove those lines from both files (or fill them in)")
    return {"pairs": pairs, "words": words, "most_frequent_target": most_frequent(targets)}


def read_held_out(data_dir: Path, src_lang: str | None, tgt_lang: str | None, tsv: bool,
                  normalize: str) -> dict[str, list[tuple[str, str]]]:
    """valid (required) and test (if there) read and checked as `load_corpus` does."""
    held: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS[1:]:
        files = split_files(data_dir, split, src_lang, tgt_lang, tsv)
        if not all(f.is_file() for f in files):
            if split == "valid":
                raise DataError(f"{data_dir}: missing the valid split "
                                f"({' and '.join(f.name for f in files)})")
            continue
        held[split] = (read_tsv(files[0], normalize=normalize) if tsv
                       else read_parallel_files(*files, normalize=normalize))
    return held


def prepare_parallel(data_dir: Path, out: Path, *, src_lang: str | None, tgt_lang: str | None,
                     tsv: bool, normalize: str, vocab_size: int | None,
                     overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Write the prepared folder `out` for the corpus folder `data_dir`; the summary counts."""
    start = time.perf_counter()
    if not data_dir.is_dir():
        raise DataError(f"--data {data_dir}: not a directory")
    if not tsv and (not src_lang or not tgt_lang):
        raise DataError("--src-lang and --tgt-lang are required unless --tsv is given")
    files = split_files(data_dir, "train", src_lang, tgt_lang, tsv)
    held = read_held_out(data_dir, src_lang, tgt_lang, tsv, normalize)
    counts = scan(files, normalize)
    auto: dict[str, Any] = {}
    if vocab_size is None:
        choice = choose_vocab_size(counts["words"])
        vocab_size, auto["vocab_size"] = choice.value, {"value": choice.value,
                                                         "reason": choice.reason}
        log.info("auto vocab_size: %s (%s)", choice.value, choice.reason)
    texts = (text for pair in iter_pairs(files, normalize) for text in pair)
    tokenizer = train_joint_bpe(texts, vocab_size, normalize)
    with building(out, overwrite) as folder:
        tokenizer.save(folder / "tokenizer.json")
        dtype = ids_dtype(tokenizer.vocab_size)
        src, tgt = ShardWriter(folder, "train.src", dtype), ShardWriter(folder, "train.tgt", dtype)
        pairs = iter_pairs(files, normalize)
        with tqdm(total=counts["pairs"], unit=" pairs", desc="encoding", disable=not progress,
                  dynamic_ncols=True) as bar:
            while chunk := list(islice(pairs, CHUNK_PAIRS)):
                encoded = encode_pairs(tokenizer, chunk)
                src.append([s for s, _ in encoded])
                tgt.append([t for _, t in encoded])
                bar.update(len(chunk))
        shards = {"train.src": src.close(), "train.tgt": tgt.close()}
        for split, split_pairs in held.items():
            for side, index in (("src", 0), ("tgt", 1)):
                text = "".join(pair[index] + "\n" for pair in split_pairs)
                (folder / f"{split}.{side}.txt").write_text(text, encoding="utf-8")
        write_meta(folder, {
            "kind": "parallel", "dtype": dtype.name, "shards": shards,
            "sources": source_record([f for split in SPLITS for f in split_files(
                data_dir, split, src_lang, tgt_lang, tsv) if f.is_file()]),
            "src_lang": src_lang, "tgt_lang": tgt_lang, "tsv": tsv, "normalize": normalize,
            "tokenizer": {"kind": "bpe", "vocab_size": tokenizer.vocab_size,
                          "requested_vocab_size": vocab_size},
            "auto": auto, "train_words": counts["words"],
            "most_frequent_target": counts["most_frequent_target"],
            "held_out": {split: len(p) for split, p in held.items()}})
    return {"sequences": counts["pairs"],
            "tokens": shards["train.src"]["tokens"] + shards["train.tgt"]["tokens"],
            "bytes": sum(p.stat().st_size for p in out.iterdir()),
            "seconds": time.perf_counter() - start}


class PreparedPairs:
    """The kept training pairs of a prepared folder: `[i]` -> (source ids, target ids) read
    from the memmaps, `lengths()` -> the two length arrays (for `data.batching`)."""

    def __init__(self, src: TokenShard, tgt: TokenShard, keep: np.ndarray) -> None:
        self.src, self.tgt, self.keep = src, tgt, keep  # keep: (kept,) int64 pair indices

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        j = int(self.keep[i])
        return self.src[j], self.tgt[j]

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return self.src.lengths[self.keep], self.tgt.lengths[self.keep]


@dataclass
class PreparedTranslation:
    """A prepared folder opened for `attnlab train translate --data FOLDER`."""

    folder: Path
    meta: dict[str, Any]
    corpus: ParallelCorpus  # valid (and test): small, as text
    train: tuple[TokenShard, TokenShard]  # source and target shards, memory-mapped

    @classmethod
    def open(cls, settings: Any) -> PreparedTranslation:
        """The folder of `settings.data`, refusing settings it was not prepared with."""
        prepared = open_prepared(settings.data, "parallel")
        meta, folder = prepared.meta, prepared.folder
        made = {"vocab_size": meta["tokenizer"]["vocab_size"], "normalize": meta["normalize"],
                "src_lang": meta["src_lang"], "tgt_lang": meta["tgt_lang"]}
        for name, value in made.items():
            given = getattr(settings, name)
            if given is not None and given != value and not (name.endswith("lang")
                                                              and meta["tsv"]):
                raise SettingError(name, f"{name} must be {value!r} or left out: --data "
                                         f"{folder} was prepared with it, got {given!r}")
        pairs, sources = {}, {}
        for split in meta["held_out"]:
            files = [folder / f"{split}.{side}.txt" for side in ("src", "tgt")]
            pairs[split] = read_parallel_files(*files)
            sources[split] = " / ".join(map(str, files))
        sources["train"] = f"{folder} (train.src / train.tgt)"
        return cls(folder, meta, ParallelCorpus(pairs, sources),
                   (prepared.shard("train.src"), prepared.shard("train.tgt")))

    @property
    def train_size(self) -> int:
        return len(self.train[0])

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self.folder)

    def train_pairs(self, max_len: int | None, choose: Callable[[str, Choice], Any]
                    ) -> tuple[int, PreparedPairs]:
        """(length cap, the pairs under it): `auto` (None) from the length array; pairs over
        it dropped and counted in the log; none left is a DataError."""
        src, tgt = self.train
        longer = np.maximum(src.lengths, tgt.lengths)  # (pairs,)
        if max_len is None:
            # Small ints (cached objects): 8 bytes a pair, for the rule's sort.
            max_len = choose("max_len", choose_max_len(longer.tolist()))
        keep = np.flatnonzero(longer <= max_len)
        where = self.corpus.sources["train"]
        if not len(keep):
            raise DataError(f"{where}: all {len(longer)} pair(s) are longer than --max-len "
                            f"{max_len} subwords (the shortest pair has {int(longer.min())}), "
                            f"so none is left to train on; raise --max-len to at least "
                            f"{int(longer.min())}")
        if len(keep) < len(longer):
            lines = (np.flatnonzero(longer > max_len)[:5] + 1).tolist()
            log.warning("%s: skipped %d pair(s) longer than --max-len %d subwords (lines %s "
                        "...)", where, len(longer) - len(keep), max_len, lines)
        return max_len, PreparedPairs(src, tgt, keep)
