"""Reading a parallel corpus from disk, checked before any training starts.

Two layouts: the fairseq / OpenNMT convention `DIR/{train,valid,test}.{src_lang,tgt_lang}`
(one sentence per line, line i of both files is a pair) and a two-column TSV (source TAB
target). Every problem is reported with the file, the line and what to do about it: files that
are not UTF-8 (with the byte offset), empty files, a test split with one of its two files,
mismatched line counts, empty sides, a wrong column count, a split whose every pair is longer
than --max-len (`filter_long`, once the tokenizer exists). A validation split under
`checks.MIN_VALID_EXAMPLES` pairs is a warning. `load_corpus` puts every line in one Unicode
normal form (NFC by default; `data.normalize`) before any of these checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.data.checks import MIN_VALID_EXAMPLES, require_content, warn_small_split
from attnlab.data.normalize import check_normal_form, normalize_text
from attnlab.errors import DataError  # noqa: F401  (re-exported: data.parallel.DataError)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class ParallelCorpus:
    """Sentence pairs per split, with where each pair came from (for messages)."""

    pairs: dict[str, list[tuple[str, str]]]
    sources: dict[str, str]  # split -> description of the files it came from
    # Named subsets of the test split (indices into it) scored on their own, e.g. the built-in
    # corpus's "ambiguous" sentences.
    test_buckets: dict[str, list[int]] = field(default_factory=dict)

    def split(self, name: str) -> list[tuple[str, str]]:
        if name not in self.pairs:
            raise DataError(f"split {name!r} is missing; available: {sorted(self.pairs)}")
        return self.pairs[name]


def read_lines(path: Path, normalize: str = "none") -> list[str]:
    """The lines of a UTF-8 text file (without newlines), each in Unicode normal form
    `normalize` ("nfc", "nfkc"; "none" leaves them as they are); non-UTF-8 bytes raise
    DataError."""
    check_normal_form(normalize)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte offset {error.start}: "
            f"{data[error.start:error.start + 4]!r}); convert the file to UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name}`"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # byte-order mark
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [normalize_text(line.rstrip("\r"), normalize) for line in lines]


def check_pairs(pairs: list[tuple[str, str]], where: str) -> None:
    empty = [i + 1 for i, (s, t) in enumerate(pairs) if not s.strip() or not t.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(
            f"{where}: {len(empty)} pair(s) with an empty side at line(s) {shown}; "
            "remove those lines from both files (or fill them in)"
        )


def read_parallel_files(src_path: Path, tgt_path: Path, or_else: str = "",
                        normalize: str = "none") -> list[tuple[str, str]]:
    """Line i of both files as pair i; `or_else` adds another fix to the empty-file message;
    `normalize` is the Unicode normal form of the lines (`read_lines`)."""
    src, tgt = read_lines(src_path, normalize), read_lines(tgt_path, normalize)
    for path, lines in ((src_path, src), (tgt_path, tgt)):
        require_content(path, lines, f"put one sentence per line in it (line i of "
                                     f"{src_path.name} and {tgt_path.name} a translation "
                                     f"pair){or_else}")
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; line i of each "
            "file must be a translation pair: realign the files"
        )
    pairs = list(zip(src, tgt, strict=True))
    check_pairs(pairs, f"{src_path} / {tgt_path}")
    return pairs


def read_tsv(path: Path, or_else: str = "", normalize: str = "none") -> list[tuple[str, str]]:
    lines = read_lines(path, normalize)
    require_content(path, lines, f"put one `source<TAB>target` pair per line in it{or_else}")
    pairs = []
    for number, line in enumerate(lines, start=1):
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated columns (source, target), got "
                f"{len(columns)}; remove stray tabs or the line"
            )
        pairs.append((columns[0], columns[1]))
    check_pairs(pairs, str(path))
    return pairs


def load_corpus(
    data_dir: str | Path, src_lang: str | None = None, tgt_lang: str | None = None,
    tsv: bool = False, normalize: str = "nfc",
) -> ParallelCorpus:
    """Read every split present in `data_dir`; `train` and `valid` are required.

    With `tsv=True` the files are `{split}.tsv`; otherwise `{split}.{src_lang}` and
    `{split}.{tgt_lang}`. Every line of every split is put in the Unicode normal form
    `normalize` (`data.normalize.NORMAL_FORMS`: "nfc", "nfkc", "none") before it is checked.
    """
    check_normal_form(normalize)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {data_dir}: not a directory")
    if not tsv and (not src_lang or not tgt_lang):
        raise DataError("--src-lang and --tgt-lang are required unless --tsv is given")
    pairs, sources = {}, {}
    for split in SPLITS:
        # Only the test split may be left out (then the valid split is scored in its place).
        or_else = "" if split != "test" else (
            ", or remove the test files to score the valid split instead")
        if tsv:
            path = data_dir / f"{split}.tsv"
            if path.is_file():
                pairs[split], sources[split] = read_tsv(path, or_else, normalize), str(path)
        else:
            src_path = data_dir / f"{split}.{src_lang}"
            tgt_path = data_dir / f"{split}.{tgt_lang}"
            if src_path.is_file() != tgt_path.is_file():
                there, missing = (src_path, tgt_path) if src_path.is_file() else (tgt_path,
                                                                                  src_path)
                raise DataError(f"{missing}: file not found, but {there.name} is there; a "
                                f"split needs both files: add {missing.name} or remove "
                                f"{there.name}")
            if src_path.is_file():
                pairs[split] = read_parallel_files(src_path, tgt_path, or_else, normalize)
                sources[split] = f"{src_path} / {tgt_path}"
    for required in ("train", "valid"):
        if required not in pairs:
            pattern = f"{required}.tsv" if tsv else f"{required}.{src_lang} and " \
                f"{required}.{tgt_lang}"
            raise DataError(f"{data_dir}: missing the {required} split ({pattern})")
    return ParallelCorpus(pairs, sources)


def warn_before_training(corpus: ParallelCorpus, data_dir: str | Path) -> None:
    """The warnings a training run on a corpus folder gives before it starts: no test split
    (the valid split is then scored as the test set; metrics.json says "split": "valid"), and a
    valid split under MIN_VALID_EXAMPLES pairs."""
    if "test" not in corpus.pairs:
        log.warning("%s: no test split (test files absent): the final scores are computed on "
                    "the valid split (metrics.json \"split\": \"valid\"); add test files for "
                    "a held-out test score", data_dir)
    warn_small_split(corpus.sources["valid"], len(corpus.pairs["valid"]), "pairs",
                     MIN_VALID_EXAMPLES, "add validation pairs (a few hundred or more)")


def filter_long(encoded: Sequence[tuple[list[int], list[int]]], max_len: int,
                where: str) -> list[tuple[list[int], list[int]]]:
    """The encoded pairs whose both sides have at most `max_len` ids (a warning counts the
    others); DataError naming the split, its counts and the --max-len that keeps a pair when
    none is left."""
    kept = [p for p in encoded if len(p[0]) <= max_len and len(p[1]) <= max_len]
    dropped = len(encoded) - len(kept)
    if not kept:
        shortest = min((max(map(len, p)) for p in encoded), default=0)
        raise DataError(
            f"{where}: all {len(encoded)} pair(s) are longer than --max-len {max_len} "
            f"subwords (the shortest pair has {shortest}), so none is left to train on; raise "
            f"--max-len to at least {shortest}")
    if dropped:
        lines = [i + 1 for i, p in enumerate(encoded) if max(map(len, p)) > max_len][:5]
        log.warning("%s: skipped %d pair(s) longer than --max-len %d subwords (lines %s ...)",
                    where, dropped, max_len, lines)
    return kept
