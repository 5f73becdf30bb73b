"""`attnlab train image`: a ViT learns a folder of separable images end to end, resumes
exactly, writes a folder transformers loads with its processor, and `attnlab classify` reads
it; the augmentation is seeded and shape-preserving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlab.cli.main import main
from attnlab.models.auto import from_pretrained
from attnlab.tasks.image_classification import (
    ImageClassificationTask,
    ImageSettings,
    random_crop_flip,
)
from attnlab.training.run import run_task
from attnlab.training.settings import SettingError

CLASSES = ("bars", "blob", "cross")


def pattern(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy grayscale image whose class is its shape, wherever it sits."""
    image = rng.integers(0, 60, (size, size)).astype(np.uint8)
    y, x = rng.integers(2, size - 10, 2)
    if kind == "bars":
        image[y:y + 8, x:x + 8:2] = 255
    elif kind == "blob":
        image[y:y + 6, x:x + 6] = 230
    else:
        image[y + 3, x:x + 8] = 255
        image[y:y + 8, x + 3] = 255
    return image


def write_folder(root, per_class=(40, 12), seed=0):
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(pattern(kind, rng)).save(folder / f"{i}.png")
    return root


def flags(data, out, steps=60):
    return ["train", "image", "--data", str(data), "--out", str(out), "--preset", "vit-tiny",
            "--set", "patch_size=4", "--max-steps", str(steps), "--batch-size", "24",
            "--warmup-steps", "10", "--lr", "2e-3", "--save-every", "0", "--crop-padding", "1",
            "--evaluations", "2"]


def test_learns_shapes_and_every_reader_agrees(tmp_path, capsys):
    data = write_folder(tmp_path / "images")
    out = tmp_path / "run"
    assert main(flags(data, out, steps=80)) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(CLASSES)
    assert metrics["test_accuracy"] >= 0.8, metrics
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["examples"]["test"] == 36
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    model = from_pretrained(out)
    assert model.config.labels == CLASSES and model.config.num_channels == 1

    # attnlab classify reads the folder's processor: the top class of a clear image
    rng = np.random.default_rng(7)
    probe = tmp_path / "probe.png"
    Image.fromarray(pattern("cross", rng)).save(probe)
    assert main(["classify", "--model", str(out), str(probe), "--top-k", "2", "--json"]) == 0
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top"]
    assert len(top) == 2 and top[0]["probability"] >= top[1]["probability"]

    # transformers loads the folder and its image processor and computes the same logits
    transformers = pytest.importorskip("transformers")
    hf = transformers.ViTForImageClassification.from_pretrained(out).eval()
    processor = transformers.ViTImageProcessor.from_pretrained(out)
    image = Image.open(probe)
    pixels = processor(images=np.array(image)[:, :, None], return_tensors="pt",
                       input_data_format="channels_last")["pixel_values"]
    ours_pixels = __import__("attnlab.data.model_inputs", fromlist=["x"]).model_inputs(
        out, model.config, [probe]).values
    torch.testing.assert_close(pixels, ours_pixels, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(hf(pixels).logits, model(pixels).logits, atol=1e-4,
                                   rtol=1e-4)
    assert hf.config.id2label[2] == "cross"


def test_resume_equals_uninterrupted(tmp_path):
    data = write_folder(tmp_path / "images", per_class=(16, 4))
    # warmup longer than the run: the schedule of steps 1-6 does not depend on max_steps
    base = dict(data=str(data), preset="vit-tiny", batch_size=8, warmup_steps=10,
                save_every=3, lr=1e-3, model_overrides={"patch_size": 4})
    whole = run_task(ImageClassificationTask(ImageSettings(out=str(tmp_path / "a"),
                                                           max_steps=6, **base)))
    run_task(ImageClassificationTask(ImageSettings(out=str(tmp_path / "b"), max_steps=3,
                                                   **base)))
    resumed = run_task(ImageClassificationTask(ImageSettings(out=str(tmp_path / "b"),
                                                             max_steps=6, **base)), resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_random_crop_flip_is_seeded_and_keeps_pixels():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    a = random_crop_flip(images, 2, True, torch.Generator().manual_seed(3))
    b = random_crop_flip(images, 2, True, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    # no padding: only flips, so each row is the original row or its mirror
    flipped = random_crop_flip(images, 0, True, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(-1))
    # padding only: the crop is a shifted window of the zero-padded image
    shifted = random_crop_flip(images, 1, False, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    windows = [padded[0, :, y:y + 6, x:x + 6] for y in range(3) for x in range(3)]
    assert any(torch.equal(shifted[0], w) for w in windows)


def test_bad_settings_name_the_flag(tmp_path):
    with pytest.raises(SettingError, match="preset must be an image model"):
        ImageSettings(preset="bert-tiny")
    with pytest.raises(SettingError, match="channels"):
        ImageSettings(channels=2)
    assert main(["train", "image", "--data", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "r"), "--preset", "vit-tiny"]) == 2


def test_the_shipped_recipes_are_valid_settings():
    from attnlab.tasks.audio_classification import AudioSettings
    from attnlab.tasks.translation import RECIPES
    from attnlab.training.settings import load_config

    image = ImageSettings(**load_config("fashion-mnist", ImageSettings, RECIPES / "image"))
    assert image.data == "builtin:fashion-mnist" and image.preset == "vit-hybrid-fashion"
    audio = AudioSettings(**load_config("spoken-words", AudioSettings, RECIPES / "audio"))
    assert audio.data == "builtin:spoken-words" and audio.preset == "ast-words"
