"""`attnlab imagine`: a text-to-image folder draws a PNG grid, reranked by CLIP when asked, the
same images for the same seed; bad input is one line naming the flag (exit 2)."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.tasks.imagine import (
    IMAGE_TOKENIZER,
    clip_scores,
    imagine,
    load_clip,
    load_pipeline,
    rerank,
)
from attnlab.tokenizers.captions import caption_specials, train_caption_tokenizer
from attnlab.tokenizers.image_processor import ImageProcessor

CAPTIONS = ["a smiling face with sunglasses", "a red apple", "a small five"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagine")
    torch.manual_seed(0)
    tokenizer = train_caption_tokenizer(CAPTIONS, vocab_size=300)
    bos, eos, pad = caption_specials(tokenizer)
    model = build_model("text2image-tiny", text_vocab_size=tokenizer.vocab_size, text_len=12,
                        grid=4, image_vocab_size=32, bos_token_id=bos, eos_token_id=eos,
                        pad_token_id=pad)
    model.save_pretrained(root / "t2i", tokenizer=tokenizer)
    build_model("vqvae-tiny").save_pretrained(root / "t2i" / IMAGE_TOKENIZER)  # 16x16 RGB, 4x4
    build_model("clip-tiny", vocab_size=tokenizer.vocab_size).save_pretrained(
        root / "clip", tokenizer=tokenizer)
    ImageProcessor(32, (0.5,) * 3, (0.5,) * 3).save(root / "clip")
    build_model("gpt2-tiny").save_pretrained(root / "gpt")
    return root


def test_imagine_writes_a_grid_png(folders, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["imagine", "--model", str(folders / "t2i"), *CAPTIONS[:2], "--samples", "3",
                 "--out", str(out), "--top-k", "8", "--temperature", "0.9", "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_imagine_with_clip_orders_samples_best_first(folders, tmp_path, capsys):
    out = tmp_path / "ranked.png"
    assert main(["imagine", "--model", str(folders / "t2i"), CAPTIONS[0], "--samples", "4",
                 "--out", str(out), "--clip", str(folders / "clip")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "best first by CLIP score" in lines[0]
    scores = [float(v) for v in lines[1].split("CLIP scores ")[1].split()]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert out.is_file()


def test_the_same_seed_draws_the_same_images(folders):
    pipeline = load_pipeline(folders / "t2i")
    a = imagine(pipeline, CAPTIONS, 2, seed=5)
    assert a.shape == (3, 2, 3, 16, 16)
    assert torch.equal(a, imagine(pipeline, CAPTIONS, 2, seed=5))
    assert not torch.equal(a, imagine(pipeline, CAPTIONS, 2, seed=6))


def test_rerank_orders_by_the_pairwise_clip_scores(folders):
    pipeline = load_pipeline(folders / "t2i")
    images = imagine(pipeline, CAPTIONS[:2], 3, seed=1)  # (2, 3, 3, 16, 16)
    order, scores = rerank(folders / "clip", CAPTIONS[:2], images)
    assert order.shape == scores.shape == (2, 3)
    assert torch.equal(scores.gather(1, order), scores.sort(1, descending=True).values)
    clip = load_clip(folders / "clip")
    torch.testing.assert_close(clip_scores(clip, [CAPTIONS[1]] * 3, images[1]), scores[1])
    assert scores.abs().max() <= 1.0 + 1e-5  # cosines


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "{root}/missing", "x"], "--model: no folder"),
    (["--model", "{root}/gpt", "x"], "--model: .* holds a GPT model, expected a text-to-image"),
    (["--model", "{root}/t2i", "x", "--clip", "{root}/gpt"], "--clip: .* holds a GPT model"),
    (["--model", "{root}/t2i", "x", "--out", "{root}/grid.jpg"], "--out must name a .png"),
    (["--model", "{root}/t2i", "x", "--temperature", "0"], "--temperature must be > 0"),
    (["--model", "{root}/t2i", " "], "CAPTION: every caption must be non-empty"),
    (["--model", "{root}/t2i", "x", "--top-k", "-1"], "expected an integer >= 0, got -1"),
    (["--model", "{root}/t2i", "x", "--samples", "0"], "expected a positive integer, got 0"),
])
def test_bad_input_names_the_flag(folders, capsys, argv, message):
    argv = [a.replace("{root}", str(folders)) for a in argv]
    try:
        code = main(["imagine", *argv])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_viz_shows_which_caption_words_each_region_attended_to(folders, tmp_path, capsys):
    out = tmp_path / "viz"
    assert main(["viz", "--model", str(folders / "t2i"), "--text", "a small five",
                 "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "caption tokens" in printed and "word_regions.png" in printed
    with Image.open(out / "word_regions.png") as png:
        assert png.size[0] > 300
    with Image.open(out / "generated.png") as png:
        assert png.size == (64, 64)  # the 16 x 16 image, 4x
    assert main(["viz", "--model", str(folders / "t2i"), "--text", "a small five",
                 "--out", str(out), "--layers", "9"]) == 2
    assert "layers" in capsys.readouterr().err
