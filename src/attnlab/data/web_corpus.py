"""`builtin:web`, the built-in English corpus for language modelling: the World English Bible
(eBible.org, public domain), read from Debian's `sword-text-web` package (SWORD module
`engWEB2015eb`, with the deuterocanonical books) by our zText reader (`data/sword.py`). Real,
modern English prose and poetry that installs offline and is the same on every machine.

Split by book, so no held-out verse has its neighbours (or its chapter) in training. Ten whole
books are held out, two sets of five of the same kinds (narrative, poetry / wisdom, prophecy,
a New Testament book, a letter), chosen among books with no parallel text elsewhere in the
Bible: not Mark (most of it is retold in Matthew and Luke), not Samuel / Kings / Chronicles or
Ezra / 1 Esdras (they retell each other).

- valid: Judges, Ecclesiastes, Hosea, Romans, Hebrews
- test: Joshua, Song of Songs, Amos, John, James
- train: the other 70 books (all of the deuterocanon included)

Lines: one verse per line in canonical order, each chapter followed by a blank line, so the
lm task's `encode_lines` puts an end-of-text token after every chapter (a chapter is a
"document"). Notes, section and psalm titles are dropped by the reader.

Measured on Debian 12's sword-text-web 426.0-1 (on a 2-core machine):

| split | books | chapters | verses | characters | share | BPE-2000 tokens | char tokens |
|---|---|---|---|---|---|---|---|
| train | 70 | 1,245 | 33,780 | 4,304,800 | 90.2% | 1,261,925 | 4,341,070 |
| valid | 5 | 76 | 1,770 | 233,637 | 4.9% | 68,739 | 235,559 |
| test | 5 | 67 | 1,908 | 235,941 | 4.9% | 70,479 | 237,983 |

Characters count the verses' text without newlines; tokens are the lm task's streams (newlines
and an end-of-text token per chapter included) with `--tokenizer bpe --vocab-size 2000` or
`--tokenizer chars` (72 characters), both trained on the train split alone. Reading the
module takes ~1.2 s; the lm task then trains its tokenizer (~1.2 s for a 2,000-token BPE) and
encodes the three splits (~2 s). Nothing is cached on disk (the whole job is a few seconds, and
a file cache would need invalidating when the package changes); within one process the split
text is read once (`load_web`), so a sweep of runs (`attnlab scaling`) pays the 1.2 s once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from attnlab.data.sword import SWORD_ROOT, is_installed, read_verses
from attnlab.errors import DataError, MissingFileError

WEB = "builtin:web"  # the value of `attnlab train lm --text` / `prepare lm --text`
MODULE = "engWEB2015eb"
PACKAGE = "sword-text-web"
SPLITS = ("train", "valid", "test")
# OSIS book ids; see the module docstring for why these.
VALID_BOOKS = ("Judg", "Eccl", "Hos", "Rom", "Heb")
TEST_BOOKS = ("Josh", "Song", "Amos", "John", "Jas")
HELD_OUT = {**dict.fromkeys(VALID_BOOKS, "valid"), **dict.fromkeys(TEST_BOOKS, "test")}
LICENCE = "public domain (World English Bible, eBible.org)"


def is_web(text: str | None) -> bool:
    """Whether a --text value names this corpus."""
    return text == WEB


@dataclass(frozen=True)
class WebCorpus:
    """The three splits as lines (verses, a blank line after each chapter), and their books."""

    lines: dict[str, tuple[str, ...]]  # split -> lines
    books: dict[str, tuple[str, ...]]  # split -> OSIS book ids, canonical order

    def stats(self) -> dict[str, dict[str, int]]:
        """Per split: books, chapters, verses, characters (verse text, newlines not counted)."""
        out = {}
        for split, lines in self.lines.items():
            verses = [ln for ln in lines if ln]
            out[split] = {"books": len(self.books[split]),
                          "chapters": len(lines) - len(verses),
                          "verses": len(verses), "characters": sum(map(len, verses))}
        return out


def book_of(chapter: str) -> str:
    """"1John.3" -> "1John": the book is the osisID before the dot."""
    return chapter.split(".", 1)[0]


def split_verses(verses: dict[tuple[str, int], str]) -> WebCorpus:
    """{(chapter osisID, verse): text} (canonical order) -> the book split; every held-out book
    must be there (a DataError names the missing ones)."""
    lines: dict[str, list[str]] = {name: [] for name in SPLITS}
    books: dict[str, list[str]] = {name: [] for name in SPLITS}
    previous = None
    for (chapter, _), text in verses.items():
        split = HELD_OUT.get(book_of(chapter), "train")
        if previous is not None and chapter != previous[0]:
            lines[previous[1]].append("")  # the chapter before ends
        if book_of(chapter) not in books[split]:
            books[split].append(book_of(chapter))
        lines[split].append(text)
        previous = (chapter, split)
    if previous is not None:
        lines[previous[1]].append("")
    missing = sorted(set(HELD_OUT) - set(books["valid"]) - set(books["test"]))
    if missing:
        raise DataError(f"{WEB}: the module lacks the held-out book(s) {missing}; expected "
                        f"{MODULE} of {PACKAGE} with valid books {list(VALID_BOOKS)} and test "
                        f"books {list(TEST_BOOKS)}")
    return WebCorpus({k: tuple(v) for k, v in lines.items()},
                     {k: tuple(v) for k, v in books.items()})


def load_web(root: Path | None = None) -> WebCorpus:
    """The corpus from the module installed under `root` (default: SWORD_ROOT, Debian's
    /usr/share/sword), read once per process and root; MissingFileError naming the package
    when it is not installed."""
    return _load(Path(root) if root is not None else SWORD_ROOT)


@functools.lru_cache(maxsize=2)
def _load(root: Path) -> WebCorpus:
    if not is_installed(MODULE, root):
        raise MissingFileError(
            f"--text {WEB} needs the World English Bible (SWORD module {MODULE}), which is not "
            f"installed under {root}; on Debian / Ubuntu: sudo apt-get install {PACKAGE}")
    return split_verses(read_verses(MODULE, root))
