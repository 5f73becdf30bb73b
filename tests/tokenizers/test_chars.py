"""Character-level tokenizer through `tokenizers`: one id per character, exact round trips
(whitespace included), unknown characters, the vocabulary cap, and tokenizer.json loaders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from attnlab.tokenizers import train_char_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n\tAll:  Speak, speak.\r\n"


def test_one_token_per_character_and_exact_round_trip():
    tokenizer = train_char_tokenizer([TEXT], specials=["<|endoftext|>"])
    assert tokenizer.token_to_id("<|endoftext|>") == 0 and tokenizer.token_to_id("<unk>") == 1
    assert tokenizer.get_vocab_size() == 2 + len(set(TEXT))
    encoding = tokenizer.encode(TEXT)
    assert encoding.tokens == list(TEXT)
    assert tokenizer.decode(encoding.ids) == TEXT
    commonest = max(set(TEXT), key=TEXT.count)  # first after the specials
    assert tokenizer.id_to_token(2) == commonest


def test_unseen_characters_become_unk_and_specials_are_skipped_when_decoding():
    tokenizer = train_char_tokenizer(["abc <>knu"], specials=["<|endoftext|>"])
    encoding = tokenizer.encode("ab zq<|endoftext|>c")
    assert encoding.tokens == ["a", "b", " ", "<unk>", "<unk>", "<|endoftext|>", "c"]
    assert tokenizer.decode(encoding.ids) == "ab <unk><unk>c"
    assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == (
        "ab <unk><unk><|endoftext|>c")
    # "<unk>" written in the text is five characters, not the unknown token
    assert tokenizer.encode("<unk>").tokens == list("<unk>")


def test_max_size_keeps_the_commonest_characters(caplog):
    tokenizer = train_char_tokenizer(["aaaa bbb cc d"], max_size=4)  # <unk> + 3 characters
    assert sorted(tokenizer.get_vocab()) == [" ", "<unk>", "a", "b"]
    assert "2 rare characters" in caplog.text
    assert tokenizer.encode("cab").tokens == ["<unk>", "a", "b"]


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="max_size must exceed the 2 special tokens"):
        train_char_tokenizer(["abc"], specials=["<s>"], max_size=2)
    with pytest.raises(ValueError, match="no characters"):
        train_char_tokenizer(["", ""])


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_round_trip_any_text(text):
    tokenizer = train_char_tokenizer([text])
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_saved_file_loads_in_tokenizers_and_transformers(tmp_path):
    tokenizer = train_char_tokenizer([TEXT], specials=["<|endoftext|>"])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert loaded.encode(TEXT).ids == tokenizer.encode(TEXT).ids
    assert loaded.decode(loaded.encode(TEXT).ids) == TEXT
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast.decode(fast(TEXT)["input_ids"]) == TEXT
