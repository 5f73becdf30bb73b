"""Cross-attention alignments: shapes, distributions, layer choice, the PNG."""

from __future__ import annotations

import pytest
import torch

from attnlab.models import build_model
from attnlab.tasks.alignment import Alignment, cross_attention, plot_alignment
from attnlab.tokenizers import Tokenizer

TEXT = ["the red cat sleeps on the mat .", "ka miro rudan dormas mat sur .", "a dog runs ."]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train_bpe(TEXT * 10, vocab_size=320)


def test_cross_attention_is_a_distribution_per_target_token(tokenizer):
    torch.manual_seed(0)
    model = build_model("transformer-tiny", vocab_size=tokenizer.vocab_size, n_layers=2)
    source, target = TEXT[0], TEXT[1]
    alignment = cross_attention(model, tokenizer, source, target)
    S = len(tokenizer.encode(source)) + 1  # + </s>
    T = len(tokenizer.encode(target)) + 1
    assert alignment.weights.shape == (2, 4, T, S)
    assert len(alignment.source_tokens) == S and len(alignment.target_tokens) == T
    assert alignment.source_tokens[-1] == alignment.target_tokens[-1] == "</s>"
    torch.testing.assert_close(alignment.weights.sum(-1), torch.ones(2, 4, T))


def test_sharpest_layer_is_the_lowest_entropy_one():
    flat = torch.full((4, 5, 5), 0.2)
    peaked = torch.eye(5).expand(4, 5, 5)
    labels = [str(i) for i in range(5)]
    assert Alignment(torch.stack([flat, peaked, flat]), labels, labels).sharpest_layer() == 1


def test_plot_alignment_writes_a_png_and_checks_the_layer(tmp_path):
    labels = [str(i) for i in range(5)]
    alignment = Alignment(torch.softmax(torch.randn(2, 4, 5, 5), -1), labels, labels)
    path = plot_alignment(alignment, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\), got 5"):
        plot_alignment(alignment, tmp_path / "b.png", layer=5)
