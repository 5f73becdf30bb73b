"""The built-in translation corpus: English -> Veskan (`en` -> `vk`), a seeded synthetic
language pair that needs attention.

Veskan is an invented agglutinative SOV language. Adjectives follow their noun in mirror
order, relative clauses come before their noun and end in a verb, prepositions become case
suffixes or postpositions, the verb agrees with a subject that may be many words away, and
subordinate clauses move to the front. One test sentence in seven holds an ambiguous English
noun ("bank", "bat", "crane", ...) whose Veskan word depends on a cue noun elsewhere in the
sentence ("river" or "coin"); they form the test bucket `test.ambiguous`, scored with BLEU and
with `sense_accuracy`. A word-by-word translation with a perfect lexicon (the right sense
included) scores far below 30 BLEU (`word_by_word_baseline`, about 6.5 on the default test
split), so the corpus separates models that attend from models that do not, while every
target is still a function of its source (a model can in principle reach 100).

Layout: `words` (English word lists, pure data), `morphology` (inflection, Veskan suffixes
and function words, the sound change), `lexicon` (entries and stems), `grammar` (sentence
trees), `render` (both languages), `baseline` (senses, the word-by-word baseline), and this
module (splits, files, statistics). Generation is pure Python and deterministic: the same seed
gives byte-identical files; the test split does not depend on the train size. Default sizes
(300k / 1k / 2k pairs) take about 8 s on one CPU core.

    corpus = generate_corpus(seed=0, train_size=300_000)
    src, tgt = corpus["test"][0]
    write_corpus("data/en-vk", seed=0)      # train/valid/test .en/.vk, README.txt
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.data.corpus.baseline import cued_senses, sense_accuracy, word_by_word_baseline
from attnlab.data.corpus.grammar import Generator
from attnlab.data.corpus.lexicon import LEXICON
from attnlab.data.corpus.morphology import GEN
from attnlab.data.corpus.render import english, veskan

SRC_LANG, TGT_LANG = "en", "vk"
LANGUAGE_NAME = "Veskan"
SPLITS = ("train", "valid", "test")
MIN_LENGTH, MAX_LENGTH = 4, 60  # English tokens, punctuation included

__all__ = [
    "LANGUAGE_NAME", "MAX_LENGTH", "MIN_LENGTH", "SRC_LANG", "TGT_LANG", "Corpus",
    "baseline_bleu", "corpus_stats", "generate_corpus", "lexicon_sizes", "sample_pair",
    "sense_accuracy", "word_by_word_baseline", "write_corpus",
]


@dataclass(frozen=True)
class Corpus:
    """Parallel splits: `corpus["train"]` is a list of (english, veskan) sentence pairs;
    `ambiguous_test` holds the indices of test pairs with an ambiguous word."""

    splits: dict[str, list[tuple[str, str]]]
    ambiguous_test: list[int]
    seed: int
    seconds: float = field(default=0.0, compare=False)

    def __getitem__(self, split: str) -> list[tuple[str, str]]:
        if split == "test.ambiguous":
            return [self.splits["test"][i] for i in self.ambiguous_test]
        if split not in self.splits:
            raise KeyError(f"split must be one of {[*SPLITS, 'test.ambiguous']}, got {split!r}")
        return self.splits[split]


def sample_pair(generator: Generator) -> tuple[str, str, bool] | None:
    """One (english, veskan, has_ambiguous_word), or None when the sentence is rejected: its
    length is outside [MIN_LENGTH, MAX_LENGTH] or the cues came out ambiguous."""
    units = generator.sentence()
    src, amb = english(units)
    if not MIN_LENGTH <= len(src) <= MAX_LENGTH:
        return None
    if amb:
        cued = cued_senses(src)
        if any(cued.get(word) != {sense} for word, sense in amb):
            return None
    return " ".join(src), " ".join(veskan(units)), bool(amb)


def _check_size(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def generate_corpus(seed: int = 0, train_size: int = 300_000, valid_size: int = 1000,
                    test_size: int = 2000) -> Corpus:
    """Generate the splits. Test is drawn first, then valid, then train, each from its own
    seeded stream, and a source sentence never appears twice across (or within) splits."""
    _check_size("seed", seed, -(2**63))
    sizes = {"test": _check_size("test_size", test_size, 0),
             "valid": _check_size("valid_size", valid_size, 0),
             "train": _check_size("train_size", train_size, 0)}
    start = time.perf_counter()
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str]]] = {}
    ambiguous: list[int] = []
    for split, size in sizes.items():
        generator = Generator(random.Random(f"attnlab-corpus/{seed}/{split}"))
        pairs: list[tuple[str, str]] = []
        budget = 50 * size + 1000
        while len(pairs) < size:
            budget -= 1
            if budget < 0:
                raise RuntimeError(f"could not find {size} distinct {split} sentences")
            pair = sample_pair(generator)
            if pair is None or pair[0] in seen:
                continue
            seen.add(pair[0])
            if split == "test" and pair[2]:
                ambiguous.append(len(pairs))
            pairs.append((pair[0], pair[1]))
        splits[split] = pairs
    splits = {s: splits[s] for s in SPLITS}
    return Corpus(splits, ambiguous, seed, time.perf_counter() - start)


def lexicon_sizes() -> dict[str, int]:
    """Sizes of the lexicon: lemmas per part of speech and English surface forms."""
    return {
        "nouns": sum(len(ns) for ns in LEXICON.nouns.values()),
        "ambiguous_nouns": len(LEXICON.ambiguous),
        "names": len(LEXICON.names),
        "cities": len(LEXICON.cities),
        "verbs": len(LEXICON.verbs),
        "adjectives": len(LEXICON.adjectives),
        "adverbs": len(LEXICON.adverbs),
        "english_word_forms": len(LEXICON.english_index()),
    }


def _length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    return {"min": min(lengths), "mean": round(statistics.fmean(lengths), 2),
            "median": statistics.median(lengths), "max": max(lengths),
            "share_ge_40": round(sum(n >= 40 for n in lengths) / len(lengths), 4)}


def corpus_stats(corpus: Corpus) -> dict[str, object]:
    """Sizes, train vocabulary (word types) and sentence lengths in tokens."""
    train = corpus["train"]
    src_len = [len(s.split()) for s, _ in train]
    tgt_len = [len(t.split()) for _, t in train]
    return {
        "seed": corpus.seed,
        "pairs": {s: len(corpus[s]) for s in SPLITS},
        "test_ambiguous": len(corpus.ambiguous_test),
        "train_tokens": {"en": sum(src_len), "vk": sum(tgt_len)},
        "train_types": {"en": len({w for s, _ in train for w in s.split()}),
                        "vk": len({w for _, t in train for w in t.split()})},
        "train_length_en": _length_stats(src_len),
        "train_length_vk": _length_stats(tgt_len),
        "seconds": round(corpus.seconds, 2),
    }


def baseline_bleu(pairs: list[tuple[str, str]]):
    """sacreBLEU of `word_by_word_baseline` on the pairs (a `sacrebleu` BLEUScore)."""
    import sacrebleu

    hyps = [word_by_word_baseline(src) for src, _ in pairs]
    # The corpus is tokenized on purpose (punctuation is a token of its own), and the
    # default 13a tokenizer leaves it as it is; `force` only silences the warning about that.
    return sacrebleu.corpus_bleu(hyps, [[tgt for _, tgt in pairs]], force=True)


README = """\
English -> {name} ({src} -> {tgt}): the built-in corpus of attnlab, generated with seed {seed}.

Files: {{train,valid,test}}.{src} and .{tgt} hold one sentence per line, tokens separated by
spaces, line i of .{src} translating to line i of .{tgt}. test.ambiguous.{src}/.{tgt} are the test
pairs with an ambiguous English noun, test.ambiguous.ids their 0-based line numbers in test.*.

{name} is an invented language:
- word order is subject-object-verb; adverbs of time open the clause, manner adverbs and the
  negation "ne" stand right before the verb;
- a noun phrase is: determiner [relative clause] [genitive] noun adjectives, the adjectives
  in mirror order ("the big old farmer" -> "{farmer}");
- nouns end in -a (people, animals) or -o (everything else) and take number and case
  suffixes: plural -ri; accusative -k, dative -mu, locative -sa, genitive -n;
- "in"/"at" become the locative, "to" the dative; other prepositions are postpositions after
  a genitive ("near the river" -> "{river}");
- adjectives agree with their noun: -a/-o by class, plus -r in the plural;
- the verb ends in tense (-a present, -eta past, -ora future, -ando progressive) and agrees
  with the subject (-m I, -s you, nothing he/she, -mu we, -n they); subject pronouns are
  dropped;
- relative clauses precede the noun, keep their pronouns and end in a verb with -vi;
- "because", "when", "although" clauses come first and end with kausa / kvan / tamen;
- {n_ambiguous} English nouns are ambiguous (bank, bat, crane, ...); the sense, and so the
  {name} word, is set by a cue noun elsewhere in the sentence ("bank" is "{bank0}" in a
  sentence with a banker or a coin, "{bank1}" in one with a river or a fisherman).
Stems are cognates of the English words by a fixed sound change, with some irregular ones.

Statistics:
{stats}

Examples from test:
{examples}
"""


def _readme(corpus: Corpus, stats: dict[str, object]) -> str:
    noun, adj = LEXICON.noun, LEXICON.adjective
    farmer = f"ka {noun('farmer').stem} {adj('old').vk(True, False)} {adj('big').vk(True, False)}"
    examples = [f"  {SRC_LANG}: {src}\n  {TGT_LANG}: {tgt}" for src, tgt in corpus["test"][:3]]
    return README.format(
        name=LANGUAGE_NAME, src=SRC_LANG, tgt=TGT_LANG, seed=corpus.seed, farmer=farmer,
        river=f"ka {noun('river').vk(False, GEN)} nar", n_ambiguous=len(LEXICON.ambiguous),
        bank0=noun("bank", 0).stem, bank1=noun("bank", 1).stem,
        stats="\n".join(f"  {key}: {value}" for key, value in stats.items()),
        examples="\n".join(examples))


def write_corpus(out_dir: str | Path, seed: int = 0, train_size: int = 300_000,
                 valid_size: int = 1000, test_size: int = 2000) -> dict[str, object]:
    """Write the splits as plain UTF-8 text files plus README.txt; return the statistics."""
    corpus = generate_corpus(seed, train_size, valid_size, test_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {**{s: corpus[s] for s in SPLITS}, "test.ambiguous": corpus["test.ambiguous"]}
    for name, pairs in files.items():
        for lang, column in ((SRC_LANG, 0), (TGT_LANG, 1)):
            _write_lines(out / f"{name}.{lang}", [pair[column] for pair in pairs])
    _write_lines(out / "test.ambiguous.ids", [str(i) for i in corpus.ambiguous_test])
    stats = corpus_stats(corpus)
    stats["baseline_bleu_test"] = (round(baseline_bleu(corpus["test"]).score, 2)
                                   if test_size else None)
    text = _readme(corpus, stats)
    _write_lines(out / "README.txt", text.rstrip("\n").split("\n"))
    return stats


def _write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    tmp.replace(path)
