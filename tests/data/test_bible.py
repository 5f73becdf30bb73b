"""The verse-aligned Bible corpus (attnlab.data.bible): the rules on a tiny pair of modules
written here, and the real corpora on Debian's modules where they are installed."""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

import pytest
from test_sword import write_module  # tests/data/test_sword.py: a zText module from verses

from attnlab.data import bible
from attnlab.data.bible import HELD_OUT_EVERY, PAIRS, build_bible_corpus
from attnlab.data.parallel import load_corpus
from attnlab.data.sword import SWORD_ROOT, is_installed, read_verses
from attnlab.errors import ConfigError

# -- the rules, on a tiny pair of modules -------------------------------------------------

CHAPTERS = HELD_OUT_EVERY // 2 + 2  # Gen.1 is test, Gen.21 valid, the others train


def tiny_pair(root: Path) -> None:
    """es-en's two module names with `CHAPTERS` chapters of Genesis and one of Matthew; every
    verse says where it is. Gen.2 has 3 verses in Spanish and 4 in English (a versification
    difference); Gen.3.2 is missing in English only."""
    def book(lang: str) -> list[list[str]]:
        chapters = []
        for c in range(1, CHAPTERS + 1):
            count = 4 if (c == 2 and lang == "en") else 3
            chapters.append(["" if (lang == "en" and (c, v) == (3, 2)) else
                             f"{lang} Gen.{c}.{v}" for v in range(1, count + 1)])
        return chapters

    for name, lang in (("spaRV1909eb", "es"), ("engWEB2015eb", "en")):
        write_module(root, name, {"Gen": book(lang)},
                     {"Matt": [[f"{lang} Matt.1.1", f"{lang} Matt.1.2"]]})


def place(pair: tuple[str, str]) -> str:
    """The verse a tiny pair comes from, checking both sides say the same one."""
    source, target = pair
    assert source.startswith("es ") and target.startswith("en "), pair
    assert source[3:] == target[3:], f"misaligned pair {pair}"
    return source[3:]


def test_tiny_pair_aligns_by_verse_skips_renumbered_chapters_and_holds_out_chapters(tmp_path):
    tiny_pair(tmp_path)
    corpus = build_bible_corpus("es-en", tmp_path)
    assert corpus.chapters_skipped == ["Gen.2"]
    places = {split: [place(pair) for pair in pairs] for split, pairs in corpus.splits.items()}
    assert places["test"] == ["Gen.1.1", "Gen.1.2", "Gen.1.3"]  # chapter 0 of the order
    assert places["valid"] == ["Gen.21.1", "Gen.21.2", "Gen.21.3"]  # chapter 20
    assert not any(p.startswith("Gen.2.") for split in places.values() for p in split)
    assert "Gen.3.2" not in places["train"]  # one side lacks it: dropped, nothing shifted
    assert places["train"][:3] == ["Gen.3.1", "Gen.3.3", "Gen.4.1"]
    assert places["train"][-2:] == ["Matt.1.1", "Matt.1.2"]  # the New Testament too
    assert len(places["train"]) == 3 * (CHAPTERS - 3) - 1 + 2


def test_write_gives_a_corpus_folder_that_load_corpus_reads(tmp_path):
    tiny_pair(tmp_path / "sword")
    corpus = build_bible_corpus("es-en", tmp_path / "sword")
    corpus.write(tmp_path / "out")
    loaded = load_corpus(tmp_path / "out", "es", "en")
    assert {split: list(pairs) for split, pairs in loaded.pairs.items()} == corpus.splits
    readme = (tmp_path / "out" / "README.txt").read_text(encoding="utf-8")
    assert "Reina-Valera 1909" in readme and "left out for different verse numbering: 1" in readme


def test_unknown_pair_is_refused():
    with pytest.raises(ConfigError, match=r"pair must be one of \['es-en', 'kjv-web'\], got 'en'"):
        build_bible_corpus("en")


# -- the real corpora ----------------------------------------------------------------------

MODULES = sorted({module for pair in PAIRS.values() for module in pair[:2]})


MISSING = [m for m in MODULES if not is_installed(m)]

@functools.cache
def verses(module: str) -> dict[tuple[str, int], str]:
    """Each real module read once for this file (the World English Bible is in both pairs)."""
    return read_verses(module)


@pytest.fixture(scope="module", params=sorted(PAIRS))
def real(request):
    if MISSING:
        pytest.skip(f"SWORD modules {MISSING} not installed under {SWORD_ROOT}/mods.d "
                    "(apt-get install sword-text-web sword-text-kjv sword-text-sparv)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bible, "read_verses", lambda module, root: verses(module))
        return build_bible_corpus(request.param)


def test_real_corpus_sizes_and_no_empty_side(real):
    sizes = {split: len(pairs) for split, pairs in real.splits.items()}
    assert sizes["train"] > 25_000 and sizes["valid"] > 500 and sizes["test"] > 500, sizes
    for split, pairs in real.splits.items():
        for source, target in pairs:
            assert source.strip() and target.strip(), (split, source, target)
            assert "\n" not in source + target and "<" not in source + target
            assert len(source) < 1000 and len(target) < 1000  # no glossary or preface glued on


def test_real_corpus_test_chapters_are_not_in_train(real):
    """Each pair is traced back to its chapter through its text, where the text of the pair
    occurs once (refrains such as "The LORD spoke to Moses, saying," occur in many)."""
    src_module, tgt_module = PAIRS[real.name][:2]
    source, target = verses(src_module), verses(tgt_module)
    chapters = defaultdict(set)
    for key, text in source.items():
        if key in target:
            chapters[text, target[key]].add(key[0])
    traced = {split: {next(iter(chapters[pair])) for pair in pairs if len(chapters[pair]) == 1}
              for split, pairs in real.splits.items()}
    assert all(chapters[pair] for pairs in real.splits.values() for pair in pairs)
    assert len(traced["test"]) > 15 and len(traced["train"]) > 1000
    assert not traced["test"] & traced["train"], sorted(traced["test"] & traced["train"])
    assert not traced["valid"] & (traced["train"] | traced["test"])


def test_real_corpus_known_alignments(real):
    first = {"es-en": ("EN el principio crió Dios los cielos y la tierra.",
                       "In the beginning, God created the heavens and the earth."),
             "kjv-web": ("In the beginning God created the heaven and the earth.",
                         "In the beginning, God created the heavens and the earth.")}
    assert real.splits["test"][0] == first[real.name]  # Gen.1, the first chapter: test
    john = {"es-en": "Porque de tal manera amó Dios al mundo",
            "kjv-web": "For God so loved the world, that he gave his only begotten Son"}
    found = [t for pairs in real.splits.values() for s, t in pairs if s.startswith(john[real.name])]
    assert len(found) == 1 and found[0].startswith("For God so loved the world, that he gave")
    last = real.splits["train"][-1]  # Rev.22.21, without the WEB's glossary
    assert last[1] == "The grace of the Lord Jesus Christ be with all the saints. Amen.", last
