"""The split checks every training task runs before it starts (data/checks.py): a split that
cannot give a number is an error with the file, the counts and the fix; one whose number is
noisy is a warning with the counts."""

from __future__ import annotations

import logging

import pytest
import torch

from attnlab.data.checks import (
    MIN_VALID_TOKENS,
    require_content,
    split_held_out,
    warn_small_split,
)
from attnlab.errors import DataError


def test_an_empty_or_blank_file_is_named_with_the_fix():
    with pytest.raises(DataError, match=r"^d/train.txt is empty \(the file holds no text\); "
                                        r"add lines$"):
        require_content("d/train.txt", [], "add lines")
    with pytest.raises(DataError, match=r"^d/x.txt holds only blank lines"):
        require_content("d/x.txt", ["", "  "], "add lines")
    require_content("d/x.txt", ["", "a"], "add lines")  # one line of text is enough


def test_held_out_stream_must_hold_one_prediction():
    # 10 tokens, 5% held out: int(10 * 0.95) = 9 for training, 1 held out, no prediction.
    with pytest.raises(DataError, match=r"^t.txt: the text has 10 tokens and --valid-fraction "
                                        r"0.05 holds out 1, fewer than the 2 needed to score "
                                        r"one prediction; use more text or a larger "
                                        r"--valid-fraction$"):
        split_held_out(torch.arange(10), 0.05, "t.txt", block_size=2, train_needed=4)


def test_training_part_must_hold_one_window():
    with pytest.raises(DataError, match=r"^t.txt: the training part holds 8 tokens \(10 in the "
                                        r"text, 2 held out\), fewer than --block-size 8 needs "
                                        r"\(10\); use more text or a smaller --block-size"):
        split_held_out(torch.arange(10), 0.2, "t.txt", block_size=8, train_needed=10)


def test_a_short_held_out_part_is_a_warning_with_the_numbers(caplog):
    with caplog.at_level(logging.WARNING):
        train, held = split_held_out(torch.arange(100), 0.1, "t.txt", block_size=32,
                                     train_needed=34)
    assert train.tolist() == list(range(90)) and held.tolist() == list(range(90, 100))
    assert ("t.txt: the held-out part holds 10 tokens, less than one --block-size 32 window: "
            "the validation loss is measured on 9 predictions") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        split_held_out(torch.arange(1000), 0.1, "t.txt", block_size=32, train_needed=34)
    assert (f"t.txt: only 100 held-out tokens of validation data (fewer than "
            f"{MIN_VALID_TOKENS})") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        split_held_out(torch.arange(30_000), 0.05, "t.txt", block_size=32, train_needed=34)
    assert caplog.text == ""


def test_warn_small_split(caplog):
    with caplog.at_level(logging.WARNING):
        warn_small_split("d/valid.tsv", 12, "rows", 100, "add rows")
        warn_small_split("d/other.tsv", 100, "rows", 100, "add rows")
    assert "d/valid.tsv: only 12 rows of validation data (fewer than 100)" in caplog.text
    assert "other.tsv" not in caplog.text
