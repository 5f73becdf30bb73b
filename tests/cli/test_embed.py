"""`attnlab embed`: the printed, saved and compared embeddings are the model's own, normalised;
bad input names its flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.tokenizers.captions import encode_captions, train_caption_tokenizer
from attnlab.tokenizers.image_processor import ImageProcessor

CAPTIONS = ["a large three", "a small seven", "a large one above a small two"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip_folder(path):
    """An untrained tiny CLIP folder as `attnlab train clip` writes one: weights, caption
    tokenizer, 16x16 grey image processor."""
    tokenizer = train_caption_tokenizer(CAPTIONS * 5, 300)
    torch.manual_seed(0)
    model = build_model("clip-tiny", vocab_size=tokenizer.vocab_size, image_size=16,
                        num_channels=1, patch_size=4).eval()
    ImageProcessor(size=16, mean=(0.3,), std=(0.4,)).save(path)
    model.save_pretrained(path, tokenizer=tokenizer)
    return model, tokenizer


def images(tmp_path, count=2):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16)).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def expected(model, tokenizer, texts, paths):
    ids, mask = encode_captions(tokenizer, texts, model.config.text_max_len)
    pixels = ImageProcessor(size=16, mean=(0.3,), std=(0.4,))(torch.stack([
        torch.from_numpy(np.array(Image.open(p)))[None] for p in paths]))
    with torch.no_grad():
        text = torch.nn.functional.normalize(model.get_text_features(ids, mask), dim=-1)
        image = torch.nn.functional.normalize(model.get_image_features(pixels), dim=-1)
    return text, image


def test_printed_embeddings_are_the_models_normalised(tmp_path, capsys):
    model, tokenizer = clip_folder(tmp_path / "clip")
    paths = images(tmp_path)
    assert main(["embed", "--model", str(tmp_path / "clip"), "--text", *CAPTIONS[:2],
                 "--image", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    text, image = expected(model, tokenizer, CAPTIONS[:2], paths)
    assert [r.get("text") for r in rows[:2]] == CAPTIONS[:2] and rows[2]["image"] == str(paths[0])
    for row, vector in zip(rows, [*text, *image], strict=True):
        assert row["norm"] == pytest.approx(1.0, abs=1e-4) and row["dims"] == 32
        np.testing.assert_allclose(row["first"], vector[:8].numpy(), atol=1e-4)
    # the table: image rows, text columns, the cosine of each pair, the best starred
    similarity = image @ text.T  # (2 images, 2 texts)
    table = [line for line in lines if line.startswith("img")]
    for line, row in zip(table, similarity, strict=True):
        values = line.split()[1:]
        np.testing.assert_allclose([float(v.rstrip("*")) for v in values], row.numpy(),
                                   atol=1e-3)
        assert values[int(row.argmax())].endswith("*")
    assert "T1: a large three" in lines


def test_out_writes_texts_then_images_as_one_array(tmp_path, capsys):
    model, tokenizer = clip_folder(tmp_path / "clip")
    paths = images(tmp_path, 3)
    out = tmp_path / "e.npy"
    assert main(["embed", "--model", str(tmp_path / "clip"), "--image", *map(str, paths),
                 "--text", CAPTIONS[2], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rows 0-0 the texts, rows 1-3 the images" in printed and "{" not in printed
    saved = np.load(out)
    text, image = expected(model, tokenizer, [CAPTIONS[2]], paths)
    assert saved.shape == (4, 32) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, torch.cat([text, image]).numpy(), atol=1e-5)
    # texts alone: no table
    assert main(["embed", "--model", str(tmp_path / "clip"), "--text", "a small seven"]) == 0
    assert "cosine" not in capsys.readouterr().out


def test_bad_input_names_the_flag(tmp_path, capsys):
    clip_folder(tmp_path / "clip")
    folder = str(tmp_path / "clip")
    for argv, flag in ((["--model", folder], "--text / --image"),
                       (["--model", folder, "--text", "x", "--out", "e.txt"], "--out"),
                       (["--model", folder, "--image", str(tmp_path / "none.png")],
                        "none.png")):
        assert main(["embed", *argv]) == 2
        assert flag in capsys.readouterr().err
    vit = build_model("vit-tiny", image_size=16, patch_size=4, num_channels=1)
    vit.save_pretrained(tmp_path / "vit")
    assert main(["embed", "--model", str(tmp_path / "vit"), "--text", "x"]) == 2
    assert "--model: embed needs a CLIP model folder" in capsys.readouterr().err
