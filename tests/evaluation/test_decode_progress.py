"""Test-set decoding shows a progress bar (sentences done / total) on stderr when asked, and
says nothing otherwise (library calls, per-validation decoding)."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import build_model
from attnlab.tasks.translation_decode import evaluate_pairs, translate
from attnlab.tokenizers import Tokenizer

PAIRS = [("the cat sleeps", "ka miro dormas"), ("the dog eats bread", "ka hundo panok mangas"),
         ("a bird sings", "un vogo kantas")]


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    tokenizer = Tokenizer.train_bpe([s for p in PAIRS for s in p], vocab_size=300,
                                    min_frequency=1)
    model = build_model("transformer-tiny", vocab_size=tokenizer.vocab_size)
    return model, tokenizer


def test_decoding_shows_a_bar_only_with_progress(untrained, capsys):
    model, tokenizer = untrained
    sources = [s for s, _ in PAIRS]
    # max_tokens=12: one sentence a batch (9-11 subwords each): the bar sums three batches
    quiet = translate(model, tokenizer, sources, beam_size=1, max_tokens=12)
    assert capsys.readouterr().err == ""
    loud = translate(model, tokenizer, sources, beam_size=1, max_tokens=12, progress=True)
    err = capsys.readouterr().err
    assert loud == quiet
    assert "decode" in err and "3/3" in err and "sent" in err


def test_evaluate_pairs_passes_progress_to_the_decoder(untrained, capsys):
    model, tokenizer = untrained
    evaluate_pairs(model, tokenizer, PAIRS, beam_size=2)
    assert "decode" not in capsys.readouterr().err
    evaluate_pairs(model, tokenizer, PAIRS, beam_size=2, progress=True)
    assert "3/3" in capsys.readouterr().err
