"""Metaspace BPE's pre-tokenization: punctuation and digits split off, still exactly
reversible; the tokenizer's own Unicode normaliser (NFC by default) saved with it."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.data.corpus import generate_corpus
from attnlab.errors import ConfigError
from attnlab.tokenizers import Tokenizer

CORPUS = ["Hello, world. The year 2023 was fine; 1999 was not!",
          "« Bonjour », dit-elle : l'été à Paris coûte 12,50 €.",
          "Der Bäcker backt 3 Brötchen (frisch) — \"sagt er\".",
          "It's 10:45 a.m.; call 555-0199, or e-mail x@y.org?"] * 30
SENTENCES = ["Hello, world.", "The year 2023 was fine; 1999 was not!",
             "« Bonjour », dit-elle : l'été à Paris coûte 12,50 €.",
             "\"Quoted,\" she said... (maybe) [or not]?!", "Ça coûte 3,14 € — d'accord?",
             "a  b   c", "ends with spaces  ", "tabs\tand\nnew lines", "x,y.z;1a2b",
             "日本語、中文。2024年", "emoji 🙂, ok.", "nothing-seen: ŋ ʒ ɐ ǂ 42"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train_bpe(CORPUS, vocab_size=600)


@pytest.mark.parametrize("text", SENTENCES)
def test_round_trip_with_punctuation_digits_accents_quotes(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs")) | st.just(" ")
               | st.sampled_from(",.;:!?'\"()-0123456789"), max_size=40))
def test_round_trip_of_nfc_text(tokenizer, text):
    # Leading spaces are not restored (Metaspace's convention, as before); a literal "▁" reads
    # as a space and special-token text ("<pad>") as the token: both are left out here.
    text = unicodedata.normalize("NFC", text).lstrip(" ").replace("▁", "").replace("<", "")
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_punctuation_is_its_own_token(tokenizer):
    assert tokenizer.tokens("Hello, world.") == ["▁Hello", ",", "▁world", "."]
    assert set(tokenizer.tokens("world, world. world!")) == {"▁world", ",", ".", "!"}
    pieces = tokenizer.backend.pre_tokenizer.pre_tokenize_str("a , b,c")
    assert [p for p, _ in pieces] == ["▁a", "▁,", "▁b", ",", "c"]  # a space stays with its mark
    learnt = [t.removeprefix("▁") for t in tokenizer.backend.get_vocab()]
    assert not [t for t in learnt if len(t) > 1 and any(c in ",.;:!?()'\"«»" for c in t)]


def test_numbers_are_split_into_digits(tokenizer):
    assert tokenizer.tokens("2023") == ["▁2", "0", "2", "3"]
    digits = [t for t in tokenizer.tokens("in 1999 and 12,50") if any(c.isdigit() for c in t)]
    assert digits == ["▁1", "9", "9", "9", "▁1", "2", "5", "0"]
    learnt = [t for t in tokenizer.backend.get_vocab() if not t.startswith("<0x")]
    assert not [t for t in learnt if sum(c.isdigit() for c in t) > 1]


def test_double_spaces_are_kept_one_marker_each(tokenizer):
    # Unchanged from the Metaspace-only tokenizer: every space is one "▁" (inside, at the end);
    # a leading space is the word-initial marker the decoder drops.
    assert tokenizer.decode(tokenizer.encode("a  b")) == "a  b"
    assert tokenizer.decode(tokenizer.encode("  a")) == " a"


def test_nfd_input_encodes_like_nfc(tokenizer, tmp_path):
    nfc, nfd = "l'été à Paris coûte", unicodedata.normalize("NFD", "l'été à Paris coûte")
    assert nfc != nfd and tokenizer.encode(nfd) == tokenizer.encode(nfc)
    tokenizer.save(tmp_path)  # the normaliser travels in tokenizer.json
    assert Tokenizer.load(tmp_path).encode(nfd) == tokenizer.encode(nfc)


def test_options_turn_each_step_off():
    plain = Tokenizer.train_bpe(CORPUS, vocab_size=400, split_punctuation=False,
                                split_digits=False, normalize="none")
    assert "," not in plain.tokens("Hello, world.")  # "," stays inside "▁Hello,"
    assert plain.decode(plain.encode("2023, ok.")) == "2023, ok."
    nfd = unicodedata.normalize("NFD", "été")
    assert plain.encode(nfd) != plain.encode("été")
    nfkc = Tokenizer.train_bpe(CORPUS, vocab_size=400, normalize="nfkc")
    assert nfkc.encode("\ufb01n") == nfkc.encode("fin")


def test_space_separated_text_without_digits_tokenizes_as_before():
    # The built-in corpus writes " ." and " ,": its vocabulary and ids are Metaspace's alone.
    corpus = [s for pair in generate_corpus(seed=0, train_size=300, valid_size=1,
                                            test_size=1)["train"] for s in pair]
    new = Tokenizer.train_bpe(corpus, vocab_size=500)
    old = Tokenizer.train_bpe(corpus, vocab_size=500, split_punctuation=False,
                              split_digits=False, normalize="none")
    assert new.backend.get_vocab() == old.backend.get_vocab()
    assert new.encode_batch(corpus[:50]) == old.encode_batch(corpus[:50])


def test_a_bad_normal_form_is_refused():
    with pytest.raises(ConfigError, match=r"normalize must be one of nfc, nfkc, none, got 'NFD'"):
        Tokenizer.train_bpe(CORPUS, vocab_size=400, normalize="NFD")
