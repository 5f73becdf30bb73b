import pytest

from attnlab.errors import ConfigError, DataError
from attnlab.tokenizers.captions import (
    encode_captions,
    framed_length,
    train_caption_tokenizer,
)

CAPTIONS = ["a large three to the left of a small seven", "a grinning face", "a red apple"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_caption_tokenizer(CAPTIONS, vocab_size=300)


def test_specials_keep_eos_off_id_2(tokenizer):
    # transformers' CLIP pools at argmax(input_ids) when eos_token_id == 2
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 2)


def test_framing_padding_and_mask(tokenizer):
    ids, mask = encode_captions(tokenizer, ["A Grinning Face", CAPTIONS[0]], 40)
    assert ids.shape == mask.shape == (2, 40)
    n = int(mask[0].sum())
    assert ids[0, 0] == 0 and ids[0, n - 1] == 1 and (ids[0, n:] == 2).all()
    assert tokenizer.decode(ids[0].tolist()) == "a grinning face"  # lower-cased
    assert framed_length(tokenizer, CAPTIONS) == int(mask[1].sum())


def test_truncation_keeps_the_end_token(tokenizer):
    ids, mask = encode_captions(tokenizer, [CAPTIONS[0]], 5)
    assert mask.all() and ids[0, -1] == 1 and ids[0, 0] == 0


def test_bad_arguments(tokenizer):
    with pytest.raises(ConfigError, match="max_len"):
        encode_captions(tokenizer, ["x"], 2)
    with pytest.raises(DataError, match="string"):
        encode_captions(tokenizer, "a caption", 8)
    with pytest.raises(ConfigError, match="vocab_size"):
        train_caption_tokenizer(CAPTIONS, vocab_size=100)
    with pytest.raises(DataError, match="no captions"):
        train_caption_tokenizer([], vocab_size=300)


def test_fit_pixels_converts_channels_and_size():
    import torch

    from attnlab.tokenizers.image_processor import fit_pixels

    grey = torch.full((2, 1, 8, 8), 200, dtype=torch.uint8)
    rgb = fit_pixels(grey, 3, 16)
    assert rgb.shape == (2, 3, 16, 16) and rgb.dtype == torch.uint8 and (rgb == 200).all()
    mixed = torch.stack([torch.full((8, 8), v, dtype=torch.uint8) for v in (0, 90, 255)])[None]
    assert (fit_pixels(mixed, 1, 8) == 115).all()  # the mean of 0, 90, 255
    assert fit_pixels(rgb, 3, 16).data_ptr() == rgb.data_ptr() or torch.equal(
        fit_pixels(rgb, 3, 16), rgb)
    with pytest.raises(DataError, match="channels"):
        fit_pixels(torch.zeros(1, 4, 8, 8, dtype=torch.uint8), 3, 8)
