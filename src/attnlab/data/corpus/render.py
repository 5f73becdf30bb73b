"""Rendering a sentence tree in English and in Veskan.

Veskan word order, for a clause: [time adverb] subject [adjuncts] [goal/recipient (dative)]
[object (accusative)] [manner adverb] [ne] verb. A noun phrase is [determiner or numeral]
[relative clause] [genitive] noun [adjectives, mirrored]; a prepositional phrase is a
locative noun phrase ("in", "at") or a genitive noun phrase plus a postposition. Subordinate
clauses come first and end with their conjunction. Subject pronouns are dropped where the verb
agrees (finite clauses) and kept in relative clauses, whose verb does not agree.
"""

from __future__ import annotations

from attnlab.data.corpus.grammar import NP, Clause, Unit
from attnlab.data.corpus.lexicon import LEXICON
from attnlab.data.corpus.morphology import (
    ACC,
    AGREEMENT,
    CONJUNCTIONS,
    COPULA,
    DAT,
    DETERMINERS,
    FREQUENCY_ADVERBS,
    GEN,
    LOC,
    NEGATION,
    NOM,
    NUMERALS,
    POSTPOSITIONS,
    PRONOUNS,
    RELATIVE,
    TENSE_SUFFIX,
    TIME_ADVERBS,
    article_for,
    case_suffix,
)

# English word -> Veskan word, for the closed classes and the adverbs.
DETERMINER_VK = {**DETERMINERS, **NUMERALS}
ADVERB_VK = {a.word: a.vk for a in LEXICON.adverbs}
TIME_VK = {**{w: vk for w, (vk, _) in TIME_ADVERBS.items()}, **FREQUENCY_ADVERBS}
_BE = {("present", 1, False): "am", ("present", 3, False): "is", ("past", 1, False): "was",
       ("past", 3, False): "was"}


def _be(tense: str, person: int, plural: bool) -> str:
    return _BE.get((tense, person, plural), "are" if tense == "present" else "were")


# -- English ---------------------------------------------------------------------------------

def english(units: list[Unit]) -> tuple[list[str], list[tuple[str, int]]]:
    """English tokens and the (ambiguous word, sense) pairs used, in order."""
    out: list[str] = []
    amb: list[tuple[str, int]] = []
    for i, unit in enumerate(units):
        if i:
            out.extend((",", "but") if unit.conj == "but" else ("and",))
        if unit.sub is not None and unit.sub_front:
            out.append(unit.sub_conj)
            _en_clause(unit.sub, None, out, amb)
            out.append(",")
            _en_clause(unit.main, None, out, amb)
        else:
            _en_clause(unit.main, None, out, amb)
            if unit.sub is not None:
                out.append(unit.sub_conj)
                _en_clause(unit.sub, None, out, amb)
    out.append(".")
    return out, amb


def _en_np(np: NP, subject: bool, out: list[str], amb: list) -> None:
    if np.pron >= 0:
        out.append(PRONOUNS[np.pron][0 if subject else 1])
        return
    noun = np.noun
    if noun.kind != "noun":
        out.append(noun.word)
    else:
        if noun.sense >= 0:
            amb.append((noun.word, noun.sense))
        head = noun.plural if np.plural else noun.word
        det = np.det
        if det == "a":
            det = article_for(np.adjs[0].word if np.adjs else head)
        if det:
            out.append(det)
        out.extend(a.word for a in np.adjs)
        out.append(head)
        if np.gen is not None:
            out.append("of")
            _en_np(np.gen, False, out, amb)
        if np.rel is not None:
            _en_clause(np.rel, np, out, amb)
    if np.conj is not None:
        out.append("and")
        _en_np(np.conj, subject, out, amb)


def _en_clause(c: Clause, head: NP | None, out: list[str], amb: list) -> None:
    if c.gap:
        out.append(c.rel_word)
    elif c.time and c.time_front:
        out.append(c.time)
    if c.gap != "subj":
        _en_np(c.subj, True, out, amb)
    person, plural, _ = (head if c.gap == "subj" else c.subj).agreement()
    tense, v = c.tense, c.verb
    neg = ("not",) if c.neg else ()
    if c.kind == "cop":
        if tense == "future":
            out.extend(("will", *neg, "be"))
        else:
            out.extend((_be(tense, person, plural), *neg))
        out.append(c.pred.word)
    else:
        third = person == 3 and not plural
        if c.time in FREQUENCY_ADVERBS:
            out.append(c.time)
        if tense == "present":
            out.extend((("does" if third else "do"), "not", v.base) if c.neg
                       else (v.third if third else v.base,))
        elif tense == "past":
            out.extend(("did", "not", v.base) if c.neg else (v.past,))
        elif tense == "future":
            out.extend(("will", *neg, v.base))
        else:
            out.extend((_be("present", person, plural), *neg, v.ing))
    if c.kind == "ditr":
        first, second = (c.dat, c.obj) if c.double else (c.obj, None)
        _en_np(first, False, out, amb)
        if second is not None:
            _en_np(second, False, out, amb)
        else:
            out.append("to")
            _en_np(c.dat, False, out, amb)
    elif c.kind == "tr" and c.gap != "obj":
        _en_np(c.obj, False, out, amb)
    elif c.goal is not None:
        out.append("to")
        _en_np(c.goal, False, out, amb)
    if c.manner:
        out.append(c.manner)
    for prep, np in c.pps:
        out.append(prep)
        _en_np(np, False, out, amb)
    if c.time and not c.time_front and c.time not in FREQUENCY_ADVERBS:
        out.append(c.time)


# -- Veskan ----------------------------------------------------------------------------------

def veskan(units: list[Unit]) -> list[str]:
    out: list[str] = []
    for i, unit in enumerate(units):
        if i:
            out.append(CONJUNCTIONS[unit.conj])
        if unit.sub is not None:
            _vk_clause(unit.sub, None, out)
            out.append(CONJUNCTIONS[unit.sub_conj])
        _vk_clause(unit.main, None, out)
    out.append(".")
    return out


def _vk_np(np: NP, case: int, out: list[str], keep_pronoun: bool = False) -> None:
    if np.pron >= 0:
        if case != NOM or keep_pronoun:
            stem = PRONOUNS[np.pron][5]
            out.append(stem + case_suffix(stem, False, case))
        return
    if np.det:
        out.append(DETERMINER_VK[np.det])
    if np.rel is not None:
        _vk_clause(np.rel, np, out)
    if np.gen is not None:
        _vk_np(np.gen, GEN, out)
    out.append(np.noun.forms[np.plural][case])
    if np.adjs:
        animate, plural = np.noun.animate, np.plural
        out.extend(a.vk(animate, plural) for a in reversed(np.adjs))
    if np.conj is not None:
        out.append(CONJUNCTIONS["and"])
        _vk_np(np.conj, case, out)


def _vk_clause(c: Clause, head: NP | None, out: list[str]) -> None:
    if c.time and not c.gap:
        out.append(TIME_VK[c.time])
    if c.gap != "subj":
        _vk_np(c.subj, NOM, out, keep_pronoun=bool(c.gap))
    for prep, np in c.pps:
        if prep in ("in", "at"):
            _vk_np(np, LOC, out)
        else:
            _vk_np(np, GEN, out)
            out.append(POSTPOSITIONS[prep])
    if c.goal is not None:
        _vk_np(c.goal, DAT, out)
    if c.dat is not None:
        _vk_np(c.dat, DAT, out)
    if c.obj is not None and c.gap != "obj":
        _vk_np(c.obj, ACC, out)
    person, plural, animate = (head if c.gap == "subj" else c.subj).agreement()
    if c.kind == "cop":
        out.append(c.pred.vk(animate, plural))
    if c.manner:
        out.append(ADVERB_VK[c.manner])
    if c.neg:
        out.append(NEGATION)
    stem = COPULA if c.kind == "cop" else c.verb.stem
    end = RELATIVE if c.gap else AGREEMENT[(person, plural)]
    out.append(stem + TENSE_SUFFIX[c.tense] + end)
