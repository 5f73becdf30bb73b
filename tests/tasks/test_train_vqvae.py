"""`attnlab train vqvae`: a tiny VQ-VAE trains on the images of a captioned set (the loader
replaced by synthetic splits), reports its reconstruction, codebook usage and perplexity, draws
reconstructions.png, writes a folder that loads, and resumes exactly. (Named test_train_vqvae:
pytest's default import mode needs a basename unlike tests/models/test_vqvae.py's.)"""

from __future__ import annotations

import json

import pytest
import torch

import attnlab
from attnlab.data.captions import CaptionedImages
from attnlab.models.vqvae import VQVAE
from attnlab.tasks import vqvae as task_module
from attnlab.tasks.vqvae import VQVAESettings, VQVAETask
from attnlab.training.run import run_task
from attnlab.training.settings import SettingError


def blobs(count: int, seed: int, size: int = 16) -> torch.Tensor:
    """(count, 3, size, size) uint8: a coloured square on white, at a random place."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.full((count, 3, size, size), 255, dtype=torch.uint8)
    for i in range(count):
        y, x = torch.randint(0, size - 6, (2,), generator=generator).tolist()
        colour = torch.randint(0, 200, (3, 1, 1), generator=generator, dtype=torch.uint8)
        images[i, :, y:y + 6, x:x + 6] = colour
    return images


def captioned(images: torch.Tensor) -> CaptionedImages:
    names = [f"blob {i}" for i in range(len(images))]
    return CaptionedImages(images, names, names, names)


@pytest.fixture
def fake_data(monkeypatch):
    splits = {"train": captioned(blobs(64, 0)), "valid": captioned(blobs(16, 1)),
              "test": captioned(blobs(12, 2))}
    calls = []

    def load(data, image_size, seed=0):
        calls.append((data, image_size))
        return splits

    monkeypatch.setattr(task_module, "load_splits", load)
    return calls


def settings(out, **values) -> VQVAESettings:
    base = dict(data="builtin:emoji", out=str(out), preset="vqvae-tiny", batch_size=16,
                warmup_steps=10, lr=3e-3, save_every=0, pictures=5)
    return VQVAESettings(**{**base, **values})


def test_trains_measures_and_writes_a_loadable_folder(tmp_path, fake_data):
    out = tmp_path / "run"
    outcome = run_task(VQVAETask(settings(out, max_steps=60, evaluations=2)))
    m = json.loads((out / "metrics.json").read_text())
    assert fake_data == [("builtin:emoji", None)]
    assert m["examples"] == {"train": 64, "valid": 16, "test": 12} and m["steps"] == 60
    assert m["grid"] == [4, 4] and m["codebook_size"] == 32
    assert 0 < m["codebook_usage"] <= 1 and 1 <= m["test_perplexity"] <= 32
    assert m["params"] == outcome.model.num_parameters()
    # the reconstruction beats a constant image at the data's mean (white squares dominate)
    test = task_module.to_unit(blobs(12, 2))
    assert m["test_mse"] < float((test - test.mean()).pow(2).mean()), m
    assert m["test_psnr"] == pytest.approx(10 * torch.log10(torch.tensor(255.0**2
                                                                         / m["test_pixel_mse"]))
                                           .item(), abs=1e-3)
    assert len(m["evaluations"]) == 2 and "valid_mse" in m["evaluations"][0]
    assert (out / "reconstructions.png").stat().st_size > 1000
    model = attnlab.from_pretrained(out)
    assert isinstance(model, VQVAE) and model.config.num_channels == 3
    assert model.config.image_size == 16
    for name, value in outcome.model.state_dict().items():
        assert torch.equal(model.state_dict()[name].cpu(), value.cpu()), name


def write_folder(root, count: int = 40):
    """A folder the real loader reads: PNGs of blobs and captions.tsv (split by image)."""
    from PIL import Image

    root.mkdir()
    lines = []
    for i, image in enumerate(blobs(count, 5)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / f"{i}.png")
        lines.append(f"{i}.png\ta blob number {i}")
    (root / "captions.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_a_folder_run_resumes_exactly(tmp_path):
    data = write_folder(tmp_path / "images")
    # warmup longer than the run: the schedule of steps 1-6 does not depend on max_steps;
    # restart_after=2 makes restarts (random draws) happen on both sides of the checkpoint
    extra = dict(data=str(data), warmup_steps=10, save_every=3,
                 model_overrides={"restart_after": 2})
    whole = run_task(VQVAETask(settings(tmp_path / "a", max_steps=6, **extra)))
    assert whole.metrics["examples"] == {"train": 32, "valid": 4, "test": 4}
    run_task(VQVAETask(settings(tmp_path / "b", max_steps=3, **extra)))
    resumed = run_task(VQVAETask(settings(tmp_path / "b", max_steps=6, **extra)), resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert attnlab.from_pretrained(tmp_path / "b").config.image_size == 16


def test_bad_settings_name_the_field():
    with pytest.raises(SettingError, match="preset must be a VQ-VAE"):
        VQVAESettings(preset="vit-tiny")
    with pytest.raises(SettingError, match="pictures"):
        VQVAESettings(pictures=0)


@pytest.mark.parametrize("name, data, preset", [("digit-scenes", "builtin:digit-scenes",
                                                 "vqvae-scenes"),
                                                ("emoji", "builtin:emoji", "vqvae-emoji")])
def test_the_shipped_recipes_are_valid_settings(name, data, preset):
    from attnlab.tasks.translation import RECIPES
    from attnlab.training.settings import load_config

    recipe = VQVAESettings(**load_config(name, VQVAESettings, RECIPES / "vqvae"))
    assert (recipe.data, recipe.preset, recipe.keep) == (data, preset, "best")


def test_the_command_line_trains_and_prints_the_figures(tmp_path, fake_data, capsys):
    from attnlab.cli.main import main

    out = tmp_path / "cli"
    assert main(["train", "vqvae", "--config", "digit-scenes", "--preset", "vqvae-tiny",
                 "--out", str(out), "--max-steps", "4", "--batch-size", "16", "--evaluations",
                 "0", "--keep", "last", "--save-every", "0", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "test reconstruction: PSNR" in printed and "of 32 codes used on test" in printed
    assert json.loads((out / "train_settings.json").read_text())["lr"] == 0.002  # the recipe's
    assert fake_data == [("builtin:digit-scenes", None)]


def test_digit_scenes_are_read_back_by_the_independent_reader(tmp_path, monkeypatch):
    from attnlab.data.digit_scenes import digit_scene_splits

    parts = digit_scene_splits(0, counts={"train": 64, "valid": 16, "test": 24})
    splits = {name: CaptionedImages(p["images"], p["captions"], p["sources"], p["groups"])
              for name, p in parts.items()}
    monkeypatch.setattr(task_module, "load_splits", lambda data, image_size, seed=0: splits)
    out = tmp_path / "scenes"
    run_task(VQVAETask(settings(out, data="builtin:digit-scenes", max_steps=3)))
    m = json.loads((out / "metrics.json").read_text())
    read = m["scene_reader"]
    assert set(read) == {"real", "reconstructed"}
    assert read["real"]["fully_right"] >= 0.75  # the reader's ceiling on real scenes
    assert 0 <= read["reconstructed"]["fully_right"] <= 1 and m["grid"] == [8, 8]
