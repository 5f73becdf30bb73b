"""builtin:web (attnlab.data.web_corpus): the World English Bible split by book. The split rules
on verses made here and on a zText module written here (no package needed); the installed
module's split sizes where Debian's sword-text-web is installed (skipped, saying so, where not).
"""

from __future__ import annotations

import pytest
from test_sword import write_module  # tests/data/test_sword.py: a zText module from verses

from attnlab.data import sword
from attnlab.data.web_corpus import (
    MODULE,
    TEST_BOOKS,
    VALID_BOOKS,
    book_of,
    load_web,
    split_verses,
)
from attnlab.errors import DataError, MissingFileError

HELD_OUT = (*VALID_BOOKS, *TEST_BOOKS)


def verses_of(books: dict[str, int]) -> dict[tuple[str, int], str]:
    """Two verses per chapter, `books[b]` chapters per book, text naming its place."""
    return {(f"{b}.{c}", v): f"{b} {c}:{v} text" for b, n in books.items()
            for c in range(1, n + 1) for v in (1, 2)}


def test_books_go_whole_to_their_split_and_chapters_end_with_a_blank_line():
    books = {"Gen": 2, **dict.fromkeys(HELD_OUT, 1), "Matt": 1, "1John": 1}
    corpus = split_verses(verses_of(books))
    assert corpus.books == {"train": ("Gen", "Matt", "1John"), "valid": VALID_BOOKS,
                            "test": TEST_BOOKS}
    assert corpus.lines["train"][:6] == ("Gen 1:1 text", "Gen 1:2 text", "",
                                         "Gen 2:1 text", "Gen 2:2 text", "")
    assert corpus.lines["train"][-3:] == ("1John 1:1 text", "1John 1:2 text", "")
    assert corpus.lines["valid"][:3] == ("Judg 1:1 text", "Judg 1:2 text", "")
    for split, lines in corpus.lines.items():  # no verse of another split's book
        assert {ln.split()[0] for ln in lines if ln} == set(corpus.books[split])
    assert corpus.stats()["train"] == {"books": 3, "chapters": 4, "verses": 8,
                                       "characters": sum(len(ln) for ln in
                                                         corpus.lines["train"])}
    assert book_of("1John.3") == "1John"


def test_a_module_without_a_held_out_book_is_refused():
    books = {"Gen": 1, **dict.fromkeys(HELD_OUT, 1)}
    del books["Amos"]
    with pytest.raises(DataError, match=r"lacks the held-out book\(s\) \['Amos'\]"):
        split_verses(verses_of(books))


def test_reads_a_module_and_names_the_package_when_it_is_missing(tmp_path):
    with pytest.raises(MissingFileError, match="apt-get install sword-text-web"):
        load_web(tmp_path / "nothing")
    chapter = ["In the beginning.", "And then."]
    ot = {b: [chapter] for b in ("Gen", "Josh", "Judg", "Eccl", "Song", "Hos", "Amos")}
    nt = {b: [chapter, chapter] for b in ("Matt", "John", "Rom", "Heb", "Jas")}
    write_module(tmp_path, MODULE, ot, nt)
    corpus = load_web(tmp_path)
    assert corpus.books["train"] == ("Gen", "Matt")
    assert corpus.lines["test"][:3] == ("In the beginning.", "And then.", "")
    assert corpus.stats()["test"]["chapters"] == 1 + 1 + 1 + 2 + 2  # Josh, Song, Amos, John, Jas
    assert load_web(tmp_path) is corpus  # read once per process


@pytest.mark.skipif(not sword.is_installed(MODULE),
                    reason=f"SWORD module {MODULE} not installed (apt-get install "
                           "sword-text-web; scripts/debian-packages.sh)")
def test_the_installed_bible_splits_about_5_percent_each():
    corpus = load_web()
    stats = corpus.stats()
    assert {s: v["books"] for s, v in stats.items()} == {"train": 70, "valid": 5, "test": 5}
    total = sum(v["characters"] for v in stats.values())
    assert 4_000_000 < total < 5_500_000
    for split in ("valid", "test"):
        assert 0.04 < stats[split]["characters"] / total < 0.06, split
        assert stats[split]["verses"] > 1000
    assert corpus.lines["valid"][0].startswith("After the death of Joshua")
    assert corpus.lines["test"][0].startswith("Now after the death of Moses")
