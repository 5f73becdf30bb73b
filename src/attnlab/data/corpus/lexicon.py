"""The two lexicons of the built-in corpus: English words with their inflections, and the
Veskan (`vk`) words derived from them.

Veskan stems are cognates: a fixed "sound change" rewrites the English spelling (digraphs
simplify, c/k/q merge to k, then the consonants b/p, d/t, g/k and f/v swap and the vowels
rotate a -> e -> i -> a, o <-> u), and a class ending is added (nouns end in -a if animate
and -o if not; adjective and verb stems lose their final vowel). About a third of the twelve
most frequent words of each list, and a few percent of the rest, get an unrelated stem drawn
from a generator seeded by the word itself; the two senses of an ambiguous word are cognates
of two different glosses. So subwords transfer, yet the words still have to be learned.
The language is fixed: it does not depend on the corpus seed.

Morphology is regular and agglutinative; the tables in `morphology` are the whole grammar of a
word: noun = stem + number + case, adjective = stem + class/number agreement, verb = stem +
tense + person/number (or the relative-clause ending). Names and city names are only
transliterated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnlab.data.corpus import words
from attnlab.data.corpus.morphology import (
    ADVERB_SUFFIX,
    AGREEMENT,
    ANIMATE_CLASSES,
    CONJUNCTIONS,
    DETERMINERS,
    FREQUENCY_ADVERBS,
    NUMERALS,
    POSTPOSITIONS,
    PRONOUNS,
    RELATIVE,
    TENSE_SUFFIX,
    TIME_ADVERBS,
    case_suffix,
    cognate,
    english_ing,
    english_past,
    english_plural,
    english_third,
    invented,
    is_irregular,
    strip_vowel,
    transliterate,
)

# -- Entries -------------------------------------------------------------------------------------

@dataclass(eq=False, slots=True)
class Noun:
    word: str  # English singular
    plural: str  # English plural ("" for names and cities)
    cls: str  # P A F D T L S
    kind: str  # "noun", "name" or "city"
    stem: str
    sense: int = -1  # 0 / 1 for the senses of an ambiguous word
    forms: tuple[tuple[str, ...], tuple[str, ...]] = field(default=((), ()))

    @property
    def animate(self) -> bool:
        return self.cls in ANIMATE_CLASSES

    def vk(self, plural: bool, case: int) -> str:
        return self.forms[plural][case]


@dataclass(eq=False, slots=True)
class Verb:
    base: str
    third: str
    past: str
    ing: str
    stem: str

    def vk(self, tense: str, person: int, plural: bool, relative: bool = False) -> str:
        end = RELATIVE if relative else AGREEMENT[(person, plural)]
        return self.stem + TENSE_SUFFIX[tense] + end


@dataclass(eq=False, slots=True)
class Adjective:
    word: str
    classes: str
    stem: str

    def vk(self, animate: bool, plural: bool) -> str:
        return self.stem + ("a" if animate else "o") + ("r" if plural else "")


@dataclass(eq=False, slots=True)
class Adverb:
    word: str
    vk: str


def _split(block: str) -> list[str]:
    return block.split()


class Lexicon:
    """All entries, built once (a few milliseconds) from `words`."""

    def __init__(self) -> None:
        self._used: dict[str, set[str]] = {"n": set(), "v": set(), "a": set()}
        self.nouns: dict[str, list[Noun]] = {}
        for cls, block in words.NOUNS.items():
            self.nouns[cls] = [self._noun(item, cls, rank) for rank, item in
                               enumerate(_split(block))]
        self.ambiguous: dict[str, tuple[Noun, Noun]] = {}
        for item, senses in words.AMBIGUOUS.items():
            pair = []
            for sense, spec in enumerate(senses):
                head, _cues = spec.split(":")
                cls, gloss = head.split()
                pair.append(self._noun(item, cls, 0, gloss=gloss, sense=sense))
            self.ambiguous[pair[0].word] = (pair[0], pair[1])
        self.cue_words: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            item.split("/")[0]: tuple(tuple(spec.split(":")[1].split()) for spec in senses)
            for item, senses in words.AMBIGUOUS.items()
        }
        self.names = [self._proper(w, "P", "name") for w in _split(words.NAMES)]
        self.cities = [self._proper(w, "L", "city") for w in _split(words.CITIES)]
        self.verbs: dict[str, Verb] = {}
        self.verb_groups: list[tuple[str, str, str, list[Verb]]] = []
        for spec, block in words.VERBS.items():
            subj, obj, *rest = spec.split(">")
            group = [self._verb(item, rank) for rank, item in enumerate(_split(block))]
            self.verb_groups.append((subj, obj, rest[0] if rest else "", group))
        self.adjectives: list[Adjective] = []
        for classes, block in words.ADJECTIVES.items():
            for rank, w in enumerate(_split(block)):
                self.adjectives.append(Adjective(w, classes, self._stem("a", w, rank)))
        self.adverbs = []
        for item in _split(words.ADVERBS):
            adverb, adjective = item.split("/")
            self.adverbs.append(Adverb(adverb, strip_vowel(cognate(adjective)) + ADVERB_SUFFIX))

    def _unique(self, pos: str, stem: str, ending: str = "") -> str:
        used = self._used[pos]
        for extra in ("", "l", "n", "r", "s", "t", "lm", "nd", "rk"):
            if stem + extra + ending not in used:
                used.add(stem + extra + ending)
                return stem + extra + ending
        raise AssertionError(f"no free stem for {stem!r}")

    def _stem(self, pos: str, key: str, rank: int, ending: str = "") -> str:
        irregular = is_irregular(pos + key, rank)
        stem = strip_vowel(invented(pos + key) if irregular else cognate(key))
        return self._unique(pos, stem, ending)

    def _noun(self, item: str, cls: str, rank: int, gloss: str = "", sense: int = -1) -> Noun:
        sg, _, pl = item.partition("/")
        ending = "a" if cls in ANIMATE_CLASSES else "o"
        if gloss:  # a sense of an ambiguous noun: always the cognate of its gloss
            stem = self._unique("n", strip_vowel(cognate(gloss)), ending)
        else:
            stem = self._stem("n", sg, rank, ending)
        noun = Noun(sg, pl or english_plural(sg), cls, "noun", stem, sense)
        noun.forms = tuple(tuple(stem + case_suffix(stem, p, c) for c in range(5))
                           for p in (False, True))
        return noun

    def _proper(self, word: str, cls: str, kind: str) -> Noun:
        stem = transliterate(word, drop_silent_e=False)
        noun = Noun(word, "", cls, kind, stem)
        forms = tuple(stem + case_suffix(stem, False, c) for c in range(5))
        noun.forms = (forms, forms)
        return noun

    def _verb(self, item: str, rank: int) -> Verb:
        base, *irregular = item.split("/")
        if base in self.verbs:
            return self.verbs[base]
        past = irregular[0] if irregular else english_past(base)
        ing = irregular[1] if len(irregular) > 1 else english_ing(base, past)
        verb = Verb(base, english_third(base), past, ing, self._stem("v", base, rank))
        self.verbs[base] = verb
        return verb


    def noun(self, word: str, sense: int = -1) -> Noun:
        """The entry of an English noun, name or city (`sense` 0/1 for an ambiguous noun)."""
        if word in self.ambiguous:
            if sense not in (0, 1):
                raise ValueError(f"{word!r} is ambiguous: pass sense=0 or 1, got {sense}")
            return self.ambiguous[word][sense]
        for n in [n for ns in self.nouns.values() for n in ns] + self.names + self.cities:
            if n.word == word:
                return n
        raise KeyError(f"no noun {word!r} in the lexicon")

    def adjective(self, word: str) -> Adjective:
        for a in self.adjectives:
            if a.word == word:
                return a
        raise KeyError(f"no adjective {word!r} in the lexicon")

    def english_index(self) -> dict[str, set[tuple[str, str]]]:
        """Every English surface form with its analyses (part of speech, lemma)."""
        index: dict[str, set[tuple[str, str]]] = {}

        def add(form: str, pos: str, lemma: str) -> None:
            index.setdefault(form, set()).add((pos, lemma))

        for nouns in self.nouns.values():
            for n in nouns:
                add(n.word, "noun", n.word)
                add(n.plural, "noun", n.word)
        for n, _ in self.ambiguous.values():
            add(n.word, "noun", n.word)
            add(n.plural, "noun", n.word)
        for n in self.names + self.cities:
            add(n.word, n.kind, n.word)
        for v in self.verbs.values():
            for form in (v.base, v.third, v.past, v.ing):
                add(form, "verb", v.base)
        for a in self.adjectives:
            add(a.word, "adj", a.word)
        for b in self.adverbs:
            add(b.word, "adv", b.word)
        for table, pos in ((DETERMINERS, "det"), (NUMERALS, "num"), (POSTPOSITIONS, "prep"),
                           (CONJUNCTIONS, "conj"), (TIME_ADVERBS, "time"),
                           (FREQUENCY_ADVERBS, "freq")):
            for w in table:
                add(w, pos, w)
        for subj, obj, *_ in PRONOUNS:
            add(subj, "pron", subj)
            add(obj, "pron", subj)
        for w in ("in", "at", "to", "of", "who", "which", "that", "not", "will", "be", "am",
                  "is", "are", "was", "were", "do", "does", "did", ".", ","):
            add(w, "function", w)
        return index

    def check(self) -> None:
        """Raise if an English form has two analyses the grammar could confuse."""
        allowed = {"that", "her", "you", "it"}
        errors = [f"{form!r} is {sorted(analyses)}"
                  for form, analyses in self.english_index().items()
                  if len({pos for pos, _ in analyses}) > 1 and form not in allowed]
        nouns = {n.word for ns in self.nouns.values() for n in ns}
        errors += [f"cue {cue!r} of {word!r} is not a plain noun"
                   for word, cue_lists in self.cue_words.items()
                   for cue in (c for cues in cue_lists for c in cues) if cue not in nouns]
        if errors:
            raise ValueError("lexicon conflicts: " + "; ".join(errors))


LEXICON = Lexicon()
LEXICON.check()
