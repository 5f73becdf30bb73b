import pytest
import torch
from PIL import Image

from attnlab.viz.text_to_image import plot_word_regions, word_region_attention


def test_region_k_reads_the_query_that_sampled_it():
    text_len, grid = 3, (2, 2)
    T = text_len + 4
    w = torch.zeros(2, T, T)  # (H, T, T)
    # query text_len - 1 + k drew region k; give it weight k + 1 on text position 1 (head 0)
    for k in range(4):
        w[0, text_len - 1 + k, 1] = k + 1.0
    out = word_region_attention([w, w.unsqueeze(0)], text_len, grid, words=[1, 2])
    assert out.shape == (2, 2, 2, 2)
    # mean over the 2 heads: (k + 1) / 2, laid out row-major
    assert torch.equal(out[0, 0], torch.tensor([[0.5, 1.0], [1.5, 2.0]]))
    assert torch.equal(out[1, 1], torch.zeros(2, 2))


def test_bad_arguments():
    w = torch.zeros(1, 5, 5)
    with pytest.raises(ValueError, match="words"):
        word_region_attention([w], 3, (1, 2), words=[3])
    with pytest.raises(ValueError, match="cannot hold"):
        word_region_attention([w], 3, (2, 2), words=[0])
    with pytest.raises(ValueError, match="at least one"):
        word_region_attention([], 3, (1, 1), words=[0])


def test_plot_writes_a_png(tmp_path):
    image = torch.randint(0, 256, (1, 16, 16), dtype=torch.uint8)
    weights = torch.rand(2, 3, 4, 4)
    path = plot_word_regions(image, weights, ["a", "large", "three"], tmp_path / "w.png",
                             caption="a large three")
    with Image.open(path) as png:
        assert png.size[0] > 200
    with pytest.raises(ValueError, match="names"):
        plot_word_regions(image, weights, ["a"], tmp_path / "x.png")
