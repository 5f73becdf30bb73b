"""TextStream (generation/detokenize.py): the pieces joined equal the decoded output, no piece
holds half a character, a stop string is never shown (not even its first characters)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.generation.detokenize import TextStream
from attnlab.tokenizers import Tokenizer

LINES = ["the cat sat on the mat; naïve café — 東京 ☕ done.", "stop here STOP there"] * 20


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train_byte_level(LINES, vocab_size=280, specials=["<|endoftext|>"])


def _pieces(tokenizer, ids, context=(), stop=()):
    stream = TextStream(tokenizer, context, stop)
    pieces = []
    for token in ids:
        pieces.append(stream.push(token))
        if stream.stopped:
            break
    pieces.append(stream.flush())
    return pieces, stream


def test_pieces_join_to_the_text_and_never_split_a_character(tokenizer):
    text = "naïve café — 東京 ☕ the cat"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.split())  # several tokens per word: characters span tokens
    pieces, stream = _pieces(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids) == stream.output
    assert all("\ufffd" not in p for p in pieces)


def test_a_prompt_tail_gives_the_first_token_its_context(tokenizer):
    prompt, continuation = tokenizer.encode("the cat"), tokenizer.encode(" sat on")
    pieces, _ = _pieces(tokenizer, continuation, context=prompt)
    assert "".join(pieces) == " sat on"


def test_a_stop_string_ends_the_text_and_is_never_shown(tokenizer):
    ids = tokenizer.encode("stop here STOP there")
    pieces, stream = _pieces(tokenizer, ids, stop=("STOP",))
    assert "".join(pieces) == "stop here " and stream.stopped
    assert not any("S" in p for p in pieces)  # not even the start of STOP was streamed early


def test_the_earliest_of_several_stop_strings_wins_and_text_held_back_comes_out(tokenizer):
    ids = tokenizer.encode("the cat sat on the mat")
    pieces, stream = _pieces(tokenizer, ids, stop=("mat", "sat"))
    assert "".join(pieces) == "the cat " and stream.stopped
    # "the m" could start "mat" until the end says otherwise: flushed at the end
    pieces, stream = _pieces(tokenizer, tokenizer.encode("the cat on the ma"), stop=("mat",))
    assert "".join(pieces) == "the cat on the ma" and not stream.stopped
    assert pieces[-1].endswith("ma")


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab é東☕\n", min_size=1, max_size=30),
       st.sampled_from(["é東", "b\n", "☕"]))
def test_streamed_text_equals_the_text_cut_at_the_stop_string(tokenizer, text, stop):
    ids = tokenizer.encode(text)
    pieces, _ = _pieces(tokenizer, ids, stop=(stop,))
    full = tokenizer.decode(ids)
    expected = full[: full.find(stop)] if stop in full else full
    assert "".join(pieces) == expected


def test_empty_stop_strings_are_refused(tokenizer):
    with pytest.raises(ValueError, match="non-empty"):
        TextStream(tokenizer, stop=("",))
