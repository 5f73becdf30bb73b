"""A tiny run on real text (issue 17): Spanish -> English Bible verses from Debian's SWORD
modules, through the default pipeline (NFC, joint BPE sized from the corpus, length cap from
the data, the budget schedule, the best validation checkpoint), beats copying the source."""

from __future__ import annotations

import pytest

from attnlab.data.bible import build_bible_corpus
from attnlab.data.sword import is_installed
from attnlab.tasks.translation import TranslationSettings, train_translation

MODULES = ("spaRV1909eb", "engWEB2015eb")
pytestmark = pytest.mark.skipif(
    not all(is_installed(module) for module in MODULES),
    reason="needs Debian's sword-text-sparv and sword-text-web (`make test` and `make data` "
           "install them)")


def short(pairs, limit, words=14):
    return [(s, t) for s, t in pairs if len(s.split()) <= words and len(t.split()) <= words][
        :limit]


def test_a_tiny_real_text_run_beats_copying_the_source(tmp_path):
    corpus = build_bible_corpus("es-en")
    data = tmp_path / "data"
    data.mkdir()
    for split, limit in (("train", 8000), ("valid", 100), ("test", 150)):
        pairs = short(corpus.splits[split], limit)
        (data / f"{split}.es").write_text("".join(s + "\n" for s, _ in pairs), "utf-8")
        (data / f"{split}.en").write_text("".join(t + "\n" for _, t in pairs), "utf-8")
    settings = TranslationSettings(
        out=str(tmp_path / "run"), data=str(data), src_lang="es", tgt_lang="en",
        preset="transformer-mini", max_steps=400, max_tokens=3000, evaluations=3,
        eval_sentences=100, save_every=0, beam_size=2)
    metrics = train_translation(settings)
    copy = metrics["baselines"]["copy_source"]["bleu"]
    assert copy < 2  # Spanish copied as English: only names and numbers match
    assert metrics["beats_copy"] and metrics["bleu"] > copy + 2
    assert metrics["auto"]["vocab_size"]["value"] == 2000  # ~80k words: the smallest BPE
    assert metrics["kept"]["weights"] == "best"
