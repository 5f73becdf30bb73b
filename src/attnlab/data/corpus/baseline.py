"""Word senses and the word-by-word baseline.

An ambiguous English noun takes the sense whose cue nouns occur in the sentence (the generator
guarantees exactly one). `word_by_word_baseline` is the no-attention reference point: each
English word translated on its own with a perfect lexicon, in English order;
`sense_accuracy` scores the context-dependent word choice of any system.
"""

from __future__ import annotations

from attnlab.data.corpus.lexicon import LEXICON
from attnlab.data.corpus.morphology import (
    CONJUNCTIONS,
    NEGATION,
    NOM,
    POSTPOSITIONS,
    PRONOUNS,
)
from attnlab.data.corpus.render import ADVERB_VK, DETERMINER_VK, TIME_VK


def _cue_index() -> dict[str, list[tuple[str, int]]]:
    """English form of a cue noun (singular and plural) -> [(ambiguous word, sense), ...]."""
    index: dict[str, list[tuple[str, int]]] = {}
    for word, cue_lists in LEXICON.cue_words.items():
        for sense, cues in enumerate(cue_lists):
            for cue in cues:
                noun = LEXICON.noun(cue)
                for form in (noun.word, noun.plural):
                    index.setdefault(form, []).append((word, sense))
    return index


_CUES = _cue_index()
_AMBIGUOUS_FORMS = {form: (pair, plural) for pair in LEXICON.ambiguous.values()
                    for plural, form in enumerate((pair[0].word, pair[0].plural))}


def cued_senses(tokens: list[str]) -> dict[str, set[int]]:
    """For each ambiguous word, the senses whose cue nouns occur in the sentence."""
    senses: dict[str, set[int]] = {}
    for tok in tokens:
        for word, sense in _CUES.get(tok, ()):
            senses.setdefault(word, set()).add(sense)
    return senses


def sense_accuracy(sources: list[str], hypotheses: list[str]) -> float:
    """Share of ambiguous-noun occurrences translated with the right sense: some form of the
    cued sense's Veskan noun is in the hypothesis and no form of the other sense is. Meant for
    the `test.ambiguous` bucket; 1.0 for the references (nan if no ambiguous noun occurs)."""
    if len(sources) != len(hypotheses):
        raise ValueError(f"sources and hypotheses differ in length: {len(sources)} != "
                         f"{len(hypotheses)}")
    right = total = 0
    for src, hyp in zip(sources, hypotheses, strict=True):
        tokens, words = src.split(), set(hyp.split())
        cued = cued_senses(tokens)
        for tok in tokens:
            if tok in _AMBIGUOUS_FORMS:
                pair, _ = _AMBIGUOUS_FORMS[tok]
                sense = min(cued.get(pair[0].word, {0}))
                good, bad = pair[sense], pair[1 - sense]
                total += 1
                right += bool(words & {*good.forms[0], *good.forms[1]}) and not (
                    words & {*bad.forms[0], *bad.forms[1]})
    return right / total if total else float("nan")


def _baseline_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for n in [n for ns in LEXICON.nouns.values() for n in ns] + LEXICON.names + LEXICON.cities:
        table[n.word] = n.forms[0][NOM]
        if n.plural:
            table[n.plural] = n.forms[1][NOM]
    for v in LEXICON.verbs.values():
        table[v.base] = v.vk("present", 3, True)
        table[v.third] = v.vk("present", 3, False)
        table[v.past] = v.vk("past", 3, False)
        table[v.ing] = v.vk("progressive", 3, False)
    table.update({a.word: a.vk(False, False) for a in LEXICON.adjectives})
    table.update(ADVERB_VK)
    table.update(TIME_VK)
    table.update(DETERMINER_VK)
    table.update(POSTPOSITIONS)
    table.update(CONJUNCTIONS)
    for subj, obj, *_, stem in PRONOUNS:
        table[subj], table[obj] = "", stem  # subject pronouns are dropped
    table.update({"you": "tu", "her": "sen"})
    for w in ("in", "at", "to", "of", "who", "which", "will", "do", "does", "did", ","):
        table[w] = ""
    table.update({"not": NEGATION, "am": "esam", "is": "esa", "are": "esan", "was": "eseta",
                  "were": "esetan", "be": "esora", ".": "."})
    return table


_BASELINE = _baseline_table()


def word_by_word_baseline(src_sentence: str) -> str:
    """Translate each English word on its own with a perfect lexicon, in English order.

    The sense of an ambiguous noun is chosen right (from the sentence's cues), number and tense
    come from the English form, but case, agreement, relative-clause endings and word order are
    what a word-level system cannot know: nouns stay nominative, adjectives take the default
    (inanimate singular) form, English verb forms take their most plausible person.
    """
    tokens = src_sentence.split()
    senses = cued_senses(tokens)
    out = []
    for tok in tokens:
        if tok in _AMBIGUOUS_FORMS:
            pair, plural = _AMBIGUOUS_FORMS[tok]
            cued = senses.get(pair[0].word, {0})
            out.append(pair[min(cued)].forms[plural][NOM])
        else:
            out.append(_BASELINE.get(tok, tok))
    return " ".join(w for w in out if w)
