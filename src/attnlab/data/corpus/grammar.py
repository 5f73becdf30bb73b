"""Sentence trees of the built-in corpus: sampled once, rendered in English and in Veskan.

A sentence is one to three coordinated units ("and", "but"); a unit is a main clause with an
optional subordinate clause ("because", "when", "although"). A clause has a subject, a verb
frame (intransitive, motion with a goal, transitive, ditransitive, copula with an adjective),
tense, polarity, and optional adjuncts (prepositional phrases, a manner adverb, a time or
frequency adverb). Noun phrases take determiners, adjectives, an "of" genitive and relative
clauses (subject or object gap, nested up to depth two), which is where long sentences and
long-range agreement come from.

Conventions that keep English -> Veskan a function (the English is never ambiguous for the
grammar, so a model can in principle reach 100 BLEU): a relative clause has no adjuncts, no
ditransitive verb, and a motion verb in it always states its goal, so everything after it
belongs to the main clause; a noun with a genitive takes no relative clause; a recipient in the
double-object form ("gave the merchant the apples") takes none either.

Ambiguous nouns: each use registers itself; after the tree is built, a cue noun of the chosen
sense is planted (as a genitive, as the subject, or in a prepositional phrase of the clause),
and `render` rejects the sentence if cues of both senses ended up in it.
"""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate

from attnlab.data.corpus.lexicon import LEXICON, Adjective, Lexicon, Noun, Verb
from attnlab.data.corpus.morphology import FREQUENCY_ADVERBS, PRONOUNS, TIME_ADVERBS

ZIPF = 0.75  # word weight 1 / (rank + 2) ** ZIPF within each list
CLASS_WEIGHT = {"P": 3.0, "A": 1.5, "F": 1.2, "D": 0.5, "T": 2.5, "L": 1.5, "S": 0.8}
KINDS = (("intr", 0.16), ("go", 0.10), ("tr", 0.46), ("ditr", 0.13), ("cop", 0.15))
TENSE_WEIGHTS = (("present", 0.3), ("past", 0.35), ("future", 0.2), ("progressive", 0.15))
COPULA_TENSE_WEIGHTS = TENSE_WEIGHTS[:3]
P_AMBIGUOUS = 0.05  # a noun slot holds an ambiguous noun
P_RELATIVE = (0.14, 0.07, 0.0)  # by depth
SUBJECT_PRONOUNS = (0, 1, 2, 3, 5, 6)  # i you he she we they


def _table(items: list, weights: list[float]) -> tuple[list, list[float]]:
    return items, list(accumulate(weights))


def _zipf(items: list) -> tuple[list, list[float]]:
    return _table(items, [1.0 / (rank + 2) ** ZIPF for rank in range(len(items))])


class NP:
    """A noun phrase: a noun (or a pronoun index), its modifiers, optionally a coordinated
    second noun phrase (subjects only)."""

    __slots__ = ("noun", "pron", "plural", "det", "adjs", "rel", "gen", "conj")

    def __init__(self, noun: Noun | None = None, pron: int = -1, plural: bool = False,
                 det: str = "") -> None:
        self.noun, self.pron, self.plural, self.det = noun, pron, plural, det
        self.adjs: list[Adjective] = []
        self.rel: Clause | None = None
        self.gen: NP | None = None
        self.conj: NP | None = None

    def agreement(self) -> tuple[int, bool, bool]:
        """(person, plural, animate) as the verb and a predicate adjective see them."""
        if self.conj is not None:
            return 3, True, True
        if self.pron >= 0:
            _, _, person, plural, animate, _ = PRONOUNS[self.pron]
            return person, plural, animate
        return 3, self.plural, self.noun.animate


class Clause:
    """A clause; `gap` is "" for a finite clause, "subj" or "obj" for a relative clause."""

    __slots__ = ("kind", "verb", "subj", "obj", "dat", "double", "goal", "pps", "tense", "neg",
                 "manner", "time", "time_front", "pred", "gap", "rel_word", "subj_classes")

    def __init__(self, kind: str, verb: Verb | None, tense: str, gap: str = "") -> None:
        self.kind, self.verb, self.tense, self.gap = kind, verb, tense, gap
        self.subj: NP | None = None
        self.obj = self.dat = self.goal = None
        self.double = self.neg = self.time_front = False
        self.pps: list[tuple[str, NP]] = []
        self.manner = self.time = self.rel_word = ""
        self.pred: Adjective | None = None
        self.subj_classes = ""


class Unit:
    __slots__ = ("conj", "main", "sub", "sub_conj", "sub_front")

    def __init__(self, conj: str, main: Clause) -> None:
        self.conj, self.main = conj, main
        self.sub: Clause | None = None
        self.sub_conj, self.sub_front = "", False


class Generator:
    """Samples sentence trees from one `random.Random` (only `random()` is used)."""

    def __init__(self, rng: random.Random, lexicon: Lexicon = LEXICON) -> None:
        self.rng, self.lex = rng, lexicon
        self.random = rng.random  # the only source of randomness
        self.nouns = {cls: _zipf(ns) for cls, ns in lexicon.nouns.items()}
        self.by_word = {n.word: n for ns in lexicon.nouns.values() for n in ns}
        self.amb: dict[str, list[Noun]] = {}
        for pair in lexicon.ambiguous.values():
            for sense in pair:
                self.amb.setdefault(sense.cls, []).append(sense)
        self.names, self.cities = _zipf(lexicon.names), _zipf(lexicon.cities)
        self.adjs = {c: _zipf([a for a in lexicon.adjectives if c in a.classes]) for c in "PAFDTLS"}
        frames: dict[str, list] = {}
        weights: dict[str, list[float]] = {}
        for subj, obj, dat, group in lexicon.verb_groups:
            kind = "go" if obj == "go" else "ditr" if dat else "tr" if obj else "intr"
            for rank, verb in enumerate(group):
                frames.setdefault(kind, []).append((verb, subj, obj, dat))
                weights.setdefault(kind, []).append(1.0 / (rank + 2) ** ZIPF)
        self.frames = {k: _table(frames[k], weights[k]) for k in frames}
        self._rel_tables: dict[tuple[str, str], tuple[list, list[float]]] = {}
        self.adverbs = _zipf(lexicon.adverbs)
        self._weighted: dict[int, tuple] = {}
        self._classes = {c: _table(list(c), [CLASS_WEIGHT[x] for x in c]) for c in
                         {"PA", "L", "PAT", "PAFDTLS"} | {g[0] for g in lexicon.verb_groups}
                         | {g[1] for g in lexicon.verb_groups} | {g[2] for g in lexicon.verb_groups}
                         if c and c != "go"}
        self._times = {t: [w for w, (_, ts) in TIME_ADVERBS.items() if t in ts]
                       for t in ("present", "past", "future", "progressive")}
        self._ctx: tuple[Clause, str] | None = None
        self.pending: list[tuple[NP, Clause, str]] = []

    # -- sampling helpers --------------------------------------------------------------------
    def pick(self, table: tuple[list, list[float]]):
        items, cum = table
        return items[bisect(cum, self.random() * cum[-1])]

    def choice(self, items):
        return items[int(self.random() * len(items))]

    def weighted(self, pairs: tuple):
        """Pick from constant ((item, weight), ...) tuples; their tables are cached by id."""
        entry = self._weighted.get(id(pairs))
        if entry is None:  # keep `pairs` alive so that its id stays unique
            entry = self._weighted[id(pairs)] = (_table([p[0] for p in pairs],
                                                        [p[1] for p in pairs]), pairs)
        return self.pick(entry[0])

    # -- noun phrases ------------------------------------------------------------------------
    def noun_phrase(self, classes: str, depth: int, role: str, rel: bool = True) -> NP:
        cls = self.pick(self._classes[classes])
        r = self.random()
        if cls == "P" and role != "gen" and r < 0.16:
            pron = self.choice(SUBJECT_PRONOUNS)
            return NP(pron=pron, plural=PRONOUNS[pron][3])
        if cls == "P" and r < 0.30:
            return NP(self.pick(self.names))
        if cls == "L" and r < 0.12:
            return NP(self.pick(self.cities))
        if cls in self.amb and self.random() < P_AMBIGUOUS:
            np = self.common(self.choice(self.amb[cls]))
            self.pending.append((np, *self._ctx))
        else:
            np = self.common(self.pick(self.nouns[cls]))
        if depth == 0 and role != "gen" and self.random() < 0.05:
            np.gen = self.noun_phrase("PA", 1, "gen", rel=False)
        elif rel and self.random() < P_RELATIVE[depth]:
            np.rel = self.relative(np, depth + 1)
        return np

    def common(self, noun: Noun) -> NP:
        np = NP(noun, plural=self.random() < 0.35)
        r = self.random()
        if np.plural:
            dets = (("the", 0.42), ("", 0.2), ("these", 0.04), ("those", 0.03), ("some", 0.04),
                    ("many", 0.03), ("possessive", 0.1), ("number", 0.14))
        else:
            dets = (("the", 0.6), ("a", 0.22), ("this", 0.04), ("that", 0.03),
                    ("possessive", 0.11))
        det = self.weighted(dets)
        if det == "possessive":
            det = self.choice(("my", "your", "his", "her", "our", "their"))
        elif det == "number":
            det = self.choice(("two", "three", "four", "five", "six", "seven", "eight", "nine",
                               "ten", "eleven", "twelve", "twenty", "thirty", "forty", "fifty"))
        np.det = det
        n_adj = 0 if r < 0.58 else 1 if r < 0.9 else 2
        for _ in range(n_adj):
            adj = self.pick(self.adjs[noun.cls])
            if adj not in np.adjs:
                np.adjs.append(adj)
        return np

    def relative(self, head: NP, depth: int) -> Clause:
        cls = head.noun.cls
        obj_table, subj_table = self._rel_table("obj", cls), self._rel_table("subj", cls)
        if obj_table[0] and (not subj_table[0] or self.random() < 0.4):
            verb, subj, _, _ = self.pick(obj_table)
            clause = Clause("tr", verb, self.tense(), gap="obj")
            clause.subj = self.noun_phrase(subj, depth, "subj", rel=depth < 2)
            clause.rel_word = "who" if cls == "P" and self.random() < 0.5 else "that"
        else:
            kind, (verb, subj, obj, _) = self.pick(subj_table)
            clause = Clause(kind, verb, self.tense(), gap="subj")
            if kind == "tr":
                clause.obj = self.noun_phrase(obj, depth, "obj", rel=depth < 2)
            elif kind == "go":
                clause.goal = self.noun_phrase("L", depth, "obj", rel=False)
            clause.rel_word = "who" if cls == "P" else "that"
        if clause.rel_word == "that" and cls != "P" and self.random() < 0.35:
            clause.rel_word = "which"
        clause.neg = self.random() < 0.12
        return clause

    def _rel_table(self, gap: str, cls: str) -> tuple[list, list[float]]:
        key = (gap, cls)
        if key not in self._rel_tables:
            items, weights = [], []
            for kind in ("tr",) if gap == "obj" else ("intr", "go", "tr"):
                frames, cum = self.frames[kind]
                for i, frame in enumerate(frames):
                    if cls in (frame[2] if gap == "obj" else frame[1]):
                        items.append(frame if gap == "obj" else (kind, frame))
                        weights.append(cum[i] - (cum[i - 1] if i else 0.0))
            self._rel_tables[key] = _table(items, weights)
        return self._rel_tables[key]

    # -- clauses -----------------------------------------------------------------------------
    def tense(self, copula: bool = False) -> str:
        if copula:
            return self.weighted(COPULA_TENSE_WEIGHTS)
        return self.weighted(TENSE_WEIGHTS)

    def clause(self) -> Clause:
        kind = self.weighted(KINDS)
        if kind == "cop":
            c = Clause("cop", None, self.tense(copula=True))
            c.subj_classes = "PAFDTLS"
        else:
            verb, subj, obj, dat = self.pick(self.frames[kind])
            c = Clause(kind, verb, self.tense())
            c.subj_classes = subj
        self._ctx = (c, "subj")
        if kind != "cop" and "P" in c.subj_classes and self.random() < 0.05:
            c.subj = self.noun_phrase(c.subj_classes, 1, "subj", rel=False)
            c.subj.conj = self.noun_phrase(c.subj_classes, 1, "subj", rel=False)
            if c.subj.pron >= 0 or c.subj.conj.pron >= 0:  # coordinate nouns only
                c.subj.conj = None
        else:
            c.subj = self.noun_phrase(c.subj_classes, 0, "subj")
        if kind == "cop":
            _, _, animate = c.subj.agreement()
            cls = c.subj.noun.cls if c.subj.noun else "P" if animate else "T"
            c.pred = self.pick(self.adjs[cls])
        self._ctx = (c, "obj")
        if kind in ("tr", "ditr"):
            c.obj = self.noun_phrase(obj, 0, "obj")
        if kind == "ditr":
            c.double = c.obj.pron < 0 and self.random() < 0.35
            c.dat = self.noun_phrase(dat, 0, "dat", rel=not c.double)
        if kind == "go" and self.random() < 0.7:
            c.goal = self.noun_phrase("L", 0, "goal")
        c.neg = self.random() < 0.15
        if kind != "cop" and self.random() < 0.12:
            c.manner = self.pick(self.adverbs).word
        if self.random() < 0.22:
            habitual = not c.neg and kind != "cop" and c.tense in ("present", "past")
            if habitual and self.random() < 0.3:
                c.time = self.choice(tuple(FREQUENCY_ADVERBS))
            else:
                c.time = self.choice(self._times[c.tense])
                c.time_front = self.random() < 0.5
        r = self.random()
        for _ in range(0 if r < 0.72 else 1 if r < 0.96 else 2):
            self.add_pp(c, self.weighted((("L", 0.6), ("PAT", 0.4))))
        return c

    def add_pp(self, c: Clause, classes: str, np: NP | None = None) -> None:
        self._ctx = (c, "pp")
        if np is None:
            np = self.noun_phrase(classes, 0, "pp", rel=self.random() < 0.5)
        cls = np.noun.cls if np.noun else "P"
        if cls == "L":
            preps = ("in", "at", "near", "behind") + (("from",) if c.kind == "go" else ())
        else:
            preps = ("with", "with", "without") + (("near",) if cls == "T" else ())
        c.pps.append((self.choice(preps), np))

    def sentence(self) -> list[Unit]:
        self.pending = []
        r = self.random()
        units = []
        for i in range(1 if r < 0.70 else 2 if r < 0.95 else 3):
            unit = Unit("" if i == 0 else self.weighted((("and", 0.6), ("but", 0.4))),
                        self.clause())
            if self.random() < 0.14:
                unit.sub = self.clause()
                unit.sub_conj = self.weighted((("because", 0.5), ("when", 0.3),
                                               ("although", 0.2)))
                unit.sub_front = i == 0 and self.random() < 0.35
            units.append(unit)
        self.plant_cues()
        return units

    def plant_cues(self) -> None:
        """Give every ambiguous noun a cue of its sense somewhere in its clause."""
        for np, clause, slot in self.pending:
            cues = self.lex.cue_words[np.noun.word][np.noun.sense]
            cue = self.common(self.by_word[self.choice(cues)])
            cue.adjs = []
            r = self.random()
            if r < 0.3 and np.rel is None and np.gen is None:
                cue.det = "the" if cue.det in ("a", "") else cue.det
                np.gen = cue
            elif (r < 0.6 and slot != "subj" and clause.subj.conj is None
                  and cue.noun.cls in clause.subj_classes and clause.kind != "cop"):
                clause.subj = cue
            else:
                self.add_pp(clause, "", cue)
