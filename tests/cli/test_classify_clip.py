"""`attnlab classify --labels` with a CLIP folder: the probabilities are the softmax of
logits_per_image over the prompts; a template may come as --template or as the first label;
bad combinations name their flag; a ViT folder keeps its own path."""

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

NAMES = ["zero", "one", "two", "three"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clip(tmp_path):
    tokenizer = train_caption_tokenizer([f"a large {n}" for n in NAMES] * 4, 300)
    torch.manual_seed(1)
    model = build_model("clip-tiny", vocab_size=tokenizer.vocab_size, image_size=16,
                        num_channels=1, patch_size=4).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.0)  # probabilities far from uniform
    folder = tmp_path / "clip"
    ImageProcessor(size=16, mean=(0.5,), std=(0.5,)).save(folder)
    model.save_pretrained(folder, tokenizer=tokenizer)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(rng.integers(0, 256, (16, 16)).astype(np.uint8)).save(paths[-1])
    return folder, model, tokenizer, paths


def run_json(capsys, argv):
    assert main(["classify", *argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_probabilities_are_the_softmax_of_logits_per_image(clip, capsys):
    folder, model, tokenizer, paths = clip
    rows = run_json(capsys, ["--model", str(folder), *map(str, paths), "--top-k", "9",
                             "--labels", *NAMES, "--template", "a large {}"])
    ids, mask = encode_captions(tokenizer, [f"a large {n}" for n in NAMES],
                                model.config.text_max_len)
    pixels = ImageProcessor(size=16, mean=(0.5,), std=(0.5,))(torch.stack(
        [torch.from_numpy(np.array(Image.open(p)))[None] for p in paths]))
    with torch.no_grad():
        probs = model(ids, pixels, mask).logits_per_image.softmax(-1)  # (3 images, 4 labels)
    for row, path, expected in zip(rows, paths, probs, strict=True):
        assert row["file"] == str(path) and len(row["top"]) == 4  # top-k capped at 4 labels
        got = {t["label"]: t["probability"] for t in row["top"]}
        np.testing.assert_allclose([got[n] for n in NAMES], expected.numpy(), atol=1e-4)
        assert row["top"][0]["label"] == NAMES[int(expected.argmax())]
    # the template as the first label gives the same answer; the table form names the file
    assert run_json(capsys, ["--model", str(folder), *map(str, paths), "--top-k", "9",
                             "--labels", "a large {}", *NAMES]) == rows
    assert main(["classify", "--model", str(folder), str(paths[0]), "--top-k", "2",
                 "--labels", *NAMES]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("d0.png: ") and line.count("%") == 2


def test_bad_labels_and_templates_name_the_flag(clip, capsys, tmp_path):
    folder, _, _, paths = clip
    image = str(paths[0])
    for argv, flag in (([], "--labels: a CLIP model classifies zero-shot"),
                       (["--labels", "one"], "--labels: a CLIP model"),
                       (["--labels", "one", "one", "two"], "each class name once"),
                       (["--labels", "one", "two", "--template", "a large"], "--template"),
                       (["--labels", "a {}", "one", "two", "--template", "the {}"],
                        "--labels: the first label")):
        assert main(["classify", "--model", str(folder), image, *argv]) == 2
        assert flag in capsys.readouterr().err, argv
    vit = build_model("vit-tiny", image_size=16, patch_size=4, num_channels=1)
    ImageProcessor(size=16, mean=(0.5,), std=(0.5,)).save(tmp_path / "vit")
    vit.save_pretrained(tmp_path / "vit")
    assert main(["classify", "--model", str(tmp_path / "vit"), image, "--labels", "a",
                 "b"]) == 2
    assert "--labels: zero-shot labels need a CLIP model folder" in capsys.readouterr().err
    # without --labels the ViT path is unchanged: its own 10 classes
    rows = run_json(capsys, ["--model", str(tmp_path / "vit"), image, "--top-k", "3"])
    assert [t["label"] for t in rows[0]["top"]][0].startswith("LABEL_")
