"""BPE through the `tokenizers` library: special ids, lossless round trips, save/load."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.tokenizers import Tokenizer

CORPUS = ["the old farmer sells red apples .", "ka ka karlarik gumvurdetavi drinira .",
          "der Bäcker backt Brötchen", "日本語 と 中文", "emoji 🙂 ok"] * 40


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train_bpe(CORPUS, vocab_size=400)


def test_special_ids(tokenizer):
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    ids = tokenizer.encode("the old farmer", add_eos=True)
    assert ids[-1] == tokenizer.eos_id and tokenizer.unk_id not in ids


def test_decode_stops_at_eos_and_skips_padding(tokenizer):
    ids = tokenizer.encode("red apples")
    assert tokenizer.decode([1, *ids, 2, 0, 0, *ids]) == "red apples"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")),
                        min_size=1, max_size=8), min_size=1, max_size=6))
def test_round_trip_any_unicode(tokenizer, words):
    # The tokenizer normalises to NFC (train_bpe's default), so NFC text comes back exactly.
    text = unicodedata.normalize("NFC", " ".join(words))
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_save_and_load(tmp_path, tokenizer):
    path = tokenizer.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = Tokenizer.load(tmp_path)
    assert loaded.encode("the red farmer") == tokenizer.encode("the red farmer")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        Tokenizer.load(tmp_path / "missing")


def test_vocab_size_validated():
    with pytest.raises(ValueError, match="vocab_size must be at least"):
        Tokenizer.train_bpe(CORPUS, vocab_size=100)
