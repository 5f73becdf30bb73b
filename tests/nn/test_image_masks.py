"""DALL-E's row / column / convolutional masks over [text ; image]: causal everywhere, all text
seen by every image token, each layout equal to a slow reference written from the paper's words."""

from __future__ import annotations

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.nn.image_masks import LAYOUTS, image_attention_mask, layer_layouts

SHAPES = [(1, 1), (3, 2), (4, 4), (6, 5)]  # (text_len, grid)


def reference(layout: str, text_len: int, grid: int, kernel: int) -> torch.Tensor:
    """One (query, key) pair at a time, from the definitions."""
    L = text_len + grid * grid
    mask = torch.zeros(L, L, dtype=torch.bool)
    for i in range(L):
        for j in range(L):
            if j > i:
                continue  # never the future
            if i < text_len or j < text_len:
                mask[i, j] = True  # text is causal; an image token sees all text
                continue
            p, q = i - text_len, j - text_len  # raster indices, q <= p
            (r, c), (rq, cq) = divmod(p, grid), divmod(q, grid)
            if layout == "dense":
                ok = True
            elif layout == "row":  # the grid tokens before it: its row, the previous row's tail
                ok = p - q <= grid
            elif layout == "column":
                ok = c == cq
            else:  # conv: earlier tokens of the k x k window centred on it
                ok = r - rq <= kernel // 2 and abs(c - cq) <= kernel // 2
            mask[i, j] = ok
    return mask


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("text_len", "grid"), SHAPES)
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_each_layout_equals_the_slow_reference(layout, text_len, grid, kernel):
    mask = image_attention_mask(layout, text_len, grid, conv_kernel=kernel)
    assert mask.dtype == torch.bool and mask.shape == (text_len + grid**2,) * 2
    assert torch.equal(mask, reference(layout, text_len, grid, kernel))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("text_len", "grid"), SHAPES)
def test_no_token_sees_a_later_one_and_image_tokens_see_all_text(layout, text_len, grid):
    mask = image_attention_mask(layout, text_len, grid, conv_kernel=5)
    L = mask.size(0)
    assert not torch.triu(mask, diagonal=1).any()  # every position, every layout
    assert mask.diagonal().all()  # a token always sees itself
    assert mask[text_len:, :text_len].all()  # image -> every text token
    text = mask[:text_len, :text_len]
    assert torch.equal(text, torch.ones(text_len, text_len, dtype=torch.bool).tril())
    assert not mask[:text_len, text_len:].any()
    assert L == text_len + grid * grid


def test_the_sparse_layouts_are_sparser_than_dense_and_the_row_band_is_grid_plus_one():
    dense = image_attention_mask("dense", 2, 4)
    for layout in ("row", "column", "conv"):
        mask = image_attention_mask(layout, 2, 4)
        assert (mask & ~dense).sum() == 0 and mask.sum() < dense.sum()
    row = image_attention_mask("row", 2, 4)[2:, 2:]  # image part
    assert int(row.sum(1).max()) == 4 + 1  # itself and the 4 tokens before it
    column = image_attention_mask("column", 2, 4)[2:, 2:]
    assert column[15].nonzero().squeeze(1).tolist() == [3, 7, 11, 15]


def test_the_dalle_schedule():
    assert layer_layouts("dalle", 6) == ("row", "column", "row", "row", "row", "conv")
    assert layer_layouts("dalle", 1) == ("conv",)
    assert layer_layouts("column", 3) == ("column",) * 3


@pytest.mark.parametrize(("call", "message"), [
    (lambda: image_attention_mask("diagonal", 2, 2), "attention_layout must be one of"),
    (lambda: image_attention_mask("dalle", 2, 2), "got 'dalle'"),
    (lambda: image_attention_mask("conv", 2, 2, conv_kernel=4), "conv_kernel must be odd"),
    (lambda: image_attention_mask("row", 0, 2), "text_len must be a positive integer, got 0"),
    (lambda: layer_layouts("rows", 2), r"attention_layout must be one of .* got 'rows'"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
