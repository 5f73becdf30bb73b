"""Morphology of both languages: English inflection, and Veskan's suffix tables, function
words and the sound change that turns an English word into a Veskan stem.

The sound change (`cognate`): digraphs simplify, c/k/q merge to k, then the consonants b/p, d/t,
g/k and f/v swap and the vowels rotate a -> e -> i -> a, o <-> u. Names and city names are only
transliterated (the digraph step). `invented` gives the irregular stems.
"""

from __future__ import annotations

import random
import zlib

# Noun cases (suffix rows) and the noun suffixes, singular and plural.
NOM, ACC, DAT, LOC, GEN = range(5)
NOUN_SUFFIX = (("", "k", "mu", "sa", "n"), ("ri", "rik", "rimu", "risa", "rin"))
ANIMATE_CLASSES = frozenset("PA")
TENSES = ("present", "past", "future", "progressive")
TENSE_SUFFIX = {"present": "a", "past": "eta", "future": "ora", "progressive": "ando"}
AGREEMENT = {(1, False): "m", (2, False): "s", (3, False): "", (1, True): "mu", (3, True): "n"}
RELATIVE = "vi"  # replaces agreement on the verb of a relative clause
COPULA = "es"
NEGATION = "ne"
ADVERB_SUFFIX = "ul"

DETERMINERS = {
    "the": "ka", "a": "un", "an": "un", "this": "si", "that": "su", "these": "sir",
    "those": "sur", "some": "kel", "many": "mol", "my": "men", "your": "ten", "his": "sen",
    "her": "sen", "our": "nen", "their": "len",
}
NUMERALS = {
    "two": "du", "three": "tri", "four": "kvar", "five": "pen", "six": "ses", "seven": "sep",
    "eight": "okt", "nine": "nev", "ten": "dek", "eleven": "undek", "twelve": "dudek",
    "twenty": "duvin", "thirty": "trivin", "forty": "kvarvin", "fifty": "penvin",
}
# (english subject, english object, person, plural, animate, veskan stem)
PRONOUNS = (
    ("i", "me", 1, False, True, "mi"), ("you", "you", 2, False, True, "tu"),
    ("he", "him", 3, False, True, "lo"), ("she", "her", 3, False, True, "lo"),
    ("it", "it", 3, False, False, "lo"), ("we", "us", 1, True, True, "nu"),
    ("they", "them", 3, True, True, "li"),
)
# Prepositions: "in"/"at" become the locative case, "to" the dative; the rest are
# postpositions after a genitive noun phrase.
POSTPOSITIONS = {"near": "nar", "behind": "bak", "under": "unt", "with": "kon",
                 "without": "vuk", "from": "dal"}
CONJUNCTIONS = {"and": "e", "but": "ma", "because": "kausa", "when": "kvan",
                "although": "tamen"}
# Time adverbs (clause-initial in Veskan) with the tenses they combine with.
TIME_ADVERBS = {
    "yesterday": ("ister", ("past",)), "today": ("hoje", TENSES),
    "tomorrow": ("morgo", ("future",)), "now": ("nun", ("progressive", "present")),
    "soon": ("bal", ("future",)), "recently": ("nedavo", ("past",)), "again": ("ankor", TENSES),
}
# Frequency adverbs stand before the English verb (present and past, not negated only).
FREQUENCY_ADVERBS = {"often": "ofta", "always": "sempa", "sometimes": "kelvez",
                     "usually": "solit"}


# -- English morphology ------------------------------------------------------------------------

def _consonant_y(word: str) -> bool:
    return word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou"


def english_plural(sg: str) -> str:
    if sg.endswith(("s", "x", "z", "ch", "sh")):
        return sg + "es"
    return sg[:-1] + "ies" if _consonant_y(sg) else sg + "s"


def english_third(base: str) -> str:
    if base in ("go", "do"):
        return base + "es"
    if base.endswith(("s", "x", "z", "ch", "sh")):
        return base + "es"
    return base[:-1] + "ies" if _consonant_y(base) else base + "s"


def english_past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    return base[:-1] + "ied" if _consonant_y(base) else base + "ed"


def english_ing(base: str, past: str) -> str:
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if past == base + base[-1] + "ed":  # doubled consonant: stop/stopped/stopping
        return base + base[-1] + "ing"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    return base + "ing"


def article_for(next_word: str) -> str:
    vowel = next_word[0] in "aeiou" and not next_word.startswith(("uni", "use", "eu", "one"))
    return "an" if vowel or next_word.startswith(("hour", "honest")) else "a"


# -- Veskan word derivation ----------------------------------------------------------------------

_DIGRAPHS = (("tion", "sion"), ("ph", "f"), ("th", "t"), ("sh", "s"), ("ch", "k"), ("ck", "k"),
             ("qu", "kw"), ("wh", "w"), ("gh", ""), ("ee", "i"), ("oo", "u"), ("ea", "e"),
             ("ou", "o"), ("ai", "e"), ("ay", "e"), ("ey", "i"), ("ow", "au"), ("aw", "o"),
             ("oa", "o"), ("x", "ks"), ("c", "k"), ("q", "k"), ("z", "s"))
_SHIFT = str.maketrans("bpdtgkfvaeiou", "pbtdkgvfeiauo")
VOWELS = "aeiou"


def transliterate(word: str, drop_silent_e: bool = True) -> str:
    """Spelling simplification only (names and city names keep a final e)."""
    if drop_silent_e and word.endswith("e") and len(word) > 3 and word[-2] not in VOWELS:
        word = word[:-1]  # silent final e
    for old, new in _DIGRAPHS:
        word = word.replace(old, new)
    word = ("j" + word[1:]) if word.startswith("y") else word
    word = word.replace("y", "i")
    out = [c for i, c in enumerate(word) if i == 0 or c != word[i - 1]]  # no double letters
    return "".join(out)


def cognate(word: str) -> str:
    """The sound change: transliterate, then shift consonants and rotate vowels."""
    return transliterate(word).translate(_SHIFT)


def invented(key: str) -> str:
    """An unrelated two- or three-syllable stem, a pure function of `key`."""
    rng = random.Random("vk/" + key)
    n = 2 + (rng.random() < 0.3)
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(n))


def is_irregular(key: str, rank: int) -> bool:
    h = zlib.crc32(key.encode()) % 100
    return h < 35 if rank < 12 else h < 6


def strip_vowel(stem: str) -> str:
    """Drop a final vowel unless it is the stem's only one."""
    if stem[-1] in VOWELS and any(c in VOWELS for c in stem[:-1]):
        return stem[:-1]
    return stem


def case_suffix(stem: str, plural: bool, case: int) -> str:
    suffix = NOUN_SUFFIX[plural][case]
    return "e" + suffix if suffix and stem[-1] not in VOWELS else suffix
