"""A verse-aligned parallel corpus from two Bible translations that Debian ships: real text on
both sides, written by people, installable offline (`data/sword.py` reads the modules).

The Bible is the classic massively parallel corpus of low-resource machine translation
(Resnik, Olsen and Diab 1999, "The Bible as a parallel corpus"; Christodouloupoulos and
Steedman 2015, "A massively parallel corpus: the Bible in 100 languages"): ~31,000 verses of
~25 words, aligned by verse number. Two pairings come from Debian's three modules:

- `es-en`: Reina-Valera 1909 (Spanish) -> World English Bible (2015): translation between two
  languages, where copying the source scores near 0 BLEU;
- `kjv-web`: King James Version (1611/1769 English) -> World English Bible: modernisation of
  real Early Modern English, where copying the source already scores ~40 BLEU, so a model must
  learn to beat that baseline, not only to produce English.

Verses are aligned by their (chapter, verse) names. A chapter whose verse numbering differs
between the two modules (a versification difference: e.g. a psalm title counted as verse 1 in
one and not the other) is left out, so no pair is shifted by a verse. Held-out splits are whole
chapters (every 40th chapter to test, the one 20 later to valid), so no test verse has its
neighbours in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnlab.data.sword import SWORD_ROOT, read_verses
from attnlab.errors import ConfigError
from attnlab.serialization import atomic_write

# name -> (source module, target module, source suffix, target suffix, description)
PAIRS: dict[str, tuple[str, str, str, str, str]] = {
    "es-en": ("spaRV1909eb", "engWEB2015eb", "es", "en",
              "Reina-Valera 1909 (Spanish) -> World English Bible"),
    "kjv-web": ("engKJV2006eb", "engWEB2015eb", "kjv", "web",
                "King James Version -> World English Bible (modernisation)"),
}
HELD_OUT_EVERY = 40  # chapter i goes to test when i % 40 == 0, to valid when i % 40 == 20


@dataclass(frozen=True)
class BibleCorpus:
    name: str
    src_lang: str
    tgt_lang: str
    splits: dict[str, list[tuple[str, str]]]
    chapters_skipped: list[str]

    def write(self, folder: str | Path) -> None:
        """`folder/{train,valid,test}.{src,tgt}` (one verse per line) and a README."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for split, pairs in self.splits.items():
            for side, lang in ((0, self.src_lang), (1, self.tgt_lang)):
                text = "".join(pair[side] + "\n" for pair in pairs)
                atomic_write(folder / f"{split}.{lang}",
                             lambda t, text=text: Path(t).write_text(text, encoding="utf-8"))
        counts = ", ".join(f"{split} {len(pairs):,}" for split, pairs in self.splits.items())
        note = (f"{PAIRS[self.name][4]}, aligned by verse (attnlab.data.bible).\n"
                f"Pairs: {counts}. Held out: whole chapters (every {HELD_OUT_EVERY}th to test, "
                f"the one {HELD_OUT_EVERY // 2} later to valid).\nChapters left out for "
                f"different verse numbering: {len(self.chapters_skipped)}.\n")
        atomic_write(folder / "README.txt",
                     lambda t: Path(t).write_text(note, encoding="utf-8"))


def build_bible_corpus(name: str, root: Path = SWORD_ROOT) -> BibleCorpus:
    """The aligned corpus `name` (one of PAIRS) from the modules installed under `root`."""
    if name not in PAIRS:
        raise ConfigError(f"pair must be one of {sorted(PAIRS)}, got {name!r}")
    src_module, tgt_module, src_lang, tgt_lang, _ = PAIRS[name]
    source, target = read_verses(src_module, root), read_verses(tgt_module, root)
    by_chapter: dict[str, list[int]] = {}
    for chapter, verse in target:
        by_chapter.setdefault(chapter, []).append(verse)
    src_chapters: dict[str, list[int]] = {}
    for chapter, verse in source:
        src_chapters.setdefault(chapter, []).append(verse)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    skipped = []
    shared = [c for c in src_chapters if c in by_chapter]  # canonical order of the source
    for i, chapter in enumerate(shared):
        if max(src_chapters[chapter]) != max(by_chapter[chapter]):
            skipped.append(chapter)
            continue
        split = ("test" if i % HELD_OUT_EVERY == 0 else
                 "valid" if i % HELD_OUT_EVERY == HELD_OUT_EVERY // 2 else "train")
        for verse in src_chapters[chapter]:
            if (chapter, verse) in target:
                splits[split].append((source[chapter, verse], target[chapter, verse]))
    return BibleCorpus(name, src_lang, tgt_lang, splits, skipped)
