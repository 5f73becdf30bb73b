"""`attnlab train text2image` for a few steps on tiny models and fake captioned images: the run
folder (caption tokenizer, VQ-VAE copy, samples grid, metrics), resume, the pipeline reading the
folder back, CLIP reranking and the digit-scene reader; bad settings name their field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from attnlab.errors import ConfigError, FolderError, MissingFileError
from attnlab.models import build_model
from attnlab.tasks import text2image as t2i
from attnlab.tasks.imagine import imagine, load_pipeline
from attnlab.tasks.text2image import TextToImageSettings, TextToImageTask
from attnlab.tokenizers.captions import train_caption_tokenizer
from attnlab.tokenizers.image_processor import ImageProcessor
from attnlab.training.run import run_task

WORDS = ["red", "blue", "green", "round", "square", "small", "big"]


@dataclass
class Captioned:  # the interface of data.captions.CaptionedImages
    images: torch.Tensor
    captions: list[str]
    sources: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def fake_splits(size: int = 16, channels: int = 1, captions: list[str] | None = None):
    g = torch.Generator().manual_seed(0)
    splits = {}
    for split, n in (("train", 24), ("valid", 6), ("test", 6)):
        images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
        caps = captions[:n] if captions else [
            f"a {WORDS[i % 7]} {WORDS[(3 * i + 1) % 7]} thing" for i in range(n)]
        splits[split] = Captioned(images, caps, [f"fake:{split}:{i}" for i in range(n)], caps)
    return splits


def vq_folder(tmp_path, size: int = 16, channels: int = 1):
    torch.manual_seed(0)
    folder = tmp_path / "vq"
    build_model("vqvae-tiny", image_size=size, num_channels=channels).save_pretrained(folder)
    return folder


def clip_folder(tmp_path, captions):
    torch.manual_seed(0)
    folder = tmp_path / "clip"
    tokenizer = train_caption_tokenizer(captions, vocab_size=300)
    build_model("clip-tiny", vocab_size=tokenizer.vocab_size).save_pretrained(
        folder, tokenizer=tokenizer)
    ImageProcessor(32, (0.5,) * 3, (0.5,) * 3).save(folder)
    return folder


def settings(tmp_path, **values) -> TextToImageSettings:
    base = dict(data="builtin:fake", image_tokenizer=str(tmp_path / "vq"),
                out=str(tmp_path / "run"), preset="text2image-tiny", max_steps=3,
                batch_size=4, eval_batch_size=8,
                eval_captions=3, eval_samples=2, grid_captions=2, warmup_steps=1,
                text_vocab_size=300, device="cpu", save_every=0)
    return TextToImageSettings(**{**base, **values})


def test_a_short_run_writes_a_folder_that_imagine_reads(tmp_path, monkeypatch):
    splits = fake_splits()
    monkeypatch.setattr(t2i, "load_captioned", lambda data: splits)
    vq_folder(tmp_path)
    clip = clip_folder(tmp_path, splits["train"].captions)
    s = settings(tmp_path, clip=str(clip))
    outcome = run_task(TextToImageTask(s), progress=False)
    m, out = outcome.metrics, tmp_path / "run"
    for name in ("config.json", "tokenizer.json", "image_tokenizer/config.json", "samples.png",
                 "metrics.json", "train_settings.json"):
        assert (out / name).is_file(), name
    assert m["grid"] == 4 and m["codes"] == 32 and m["steps"] == 3
    assert 0 < m["test_bits_per_code"] < 10 and m["sampled"]["captions"] == 3
    assert set(m["clip_score"]) == {"first_sample", "clip_best_sample", "real_test_images"}
    assert m["clip_score"]["clip_best_sample"] >= m["clip_score"]["first_sample"]
    assert json.loads((out / "metrics.json").read_text())["test_image_loss"] == m[
        "test_image_loss"]

    pipeline = load_pipeline(out)  # the folder alone: model, tokenizer.json, image_tokenizer/
    images = imagine(pipeline, ["a red round thing", "a blue square thing"], 3, seed=1)
    assert images.shape == (2, 3, 1, 16, 16) and images.dtype == torch.uint8


def test_a_run_resumes_from_its_own_copy_of_the_vq_vae(tmp_path, monkeypatch):
    splits = fake_splits()
    monkeypatch.setattr(t2i, "load_captioned", lambda data: splits)
    vq = vq_folder(tmp_path)
    first = run_task(TextToImageTask(settings(tmp_path, max_steps=2, eval_captions=0)),
                     progress=False)
    assert "sampled" not in first.metrics and first.metrics["steps"] == 2
    (vq / "model.safetensors").unlink()  # the run reads OUT/image_tokenizer, not the original
    more = run_task(TextToImageTask(settings(tmp_path, max_steps=4, eval_captions=0)),
                    resume=True, progress=False)
    assert more.metrics["steps"] == 4


def test_digit_scenes_are_read_without_and_with_clip(tmp_path, monkeypatch):
    captions = ["a large three to the left of a small seven", "a small five",
                "a small one above a large two", "a large eight"] * 6
    splits = fake_splits(size=32, captions=captions)
    monkeypatch.setattr(t2i, "load_captioned", lambda data: splits)
    vq_folder(tmp_path, size=32)
    clip = clip_folder(tmp_path, captions)
    s = settings(tmp_path, data="builtin:digit-scenes", clip=str(clip), max_steps=2,
                 eval_captions=4)
    m = run_task(TextToImageTask(s), progress=False).metrics
    parts = {"fully_right", "digits_right", "sizes_right", "relation_right", "unreadable"}
    assert set(m["scenes"]) == {"first_sample", "clip_best_sample", "real_test_scenes"}
    assert all(set(v) == parts for v in m["scenes"].values())
    assert m["grid"] == 8


def test_bad_settings_and_folders_name_the_field(tmp_path, monkeypatch):
    splits = fake_splits()
    monkeypatch.setattr(t2i, "load_captioned", lambda data: splits)
    with pytest.raises(ConfigError, match="image_tokenizer: give the folder of a VQ-VAE"):
        run_task(TextToImageTask(settings(tmp_path, image_tokenizer="")), progress=False)
    with pytest.raises(MissingFileError, match="image_tokenizer: no folder"):
        run_task(TextToImageTask(settings(tmp_path)), progress=False)
    vq_folder(tmp_path, channels=3)  # RGB VQ-VAE, grey data
    with pytest.raises(ConfigError, match=r"image_tokenizer: the VQ-VAE reads images of "
                                          r"\(3, 16, 16\).* has \(1, 16, 16\)"):
        run_task(TextToImageTask(settings(tmp_path)), progress=False)
    build_model("gpt2-tiny").save_pretrained(tmp_path / "gpt")
    with pytest.raises(FolderError, match="clip: .* holds a GPT model, expected a CLIP"):
        run_task(TextToImageTask(settings(tmp_path, image_tokenizer=str(vq_folder(
            tmp_path / "grey")), clip=str(tmp_path / "gpt"))), progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    for values, message in ((dict(preset="gpt2-tiny"), "preset must be a text-to-image"),
                            (dict(text_vocab_size=100), "text_vocab_size must be an integer"),
                            (dict(eval_samples=0), "eval_samples must be a positive"),
                            (dict(temperature=0), "temperature must be a positive number")):
        with pytest.raises(ConfigError, match=message):
            settings(tmp_path, **values)
    with pytest.raises(MissingFileError, match="model_dir: no folder"):
        load_pipeline(tmp_path / "nothing")
    with pytest.raises(FolderError, match="model_dir: .* holds a GPT model"):
        load_pipeline(tmp_path / "gpt")


@pytest.mark.parametrize("name", ["digit-scenes", "emoji"])
def test_the_recipes_are_valid_and_chain_the_vq_and_clip_recipes(name):
    from attnlab.training.settings import load_config

    values = load_config(name, TextToImageSettings, t2i.RECIPES)
    s = TextToImageSettings(**values)
    vq = json.loads((t2i.RECIPES.parent / "vqvae" / f"{name}.json").read_text())
    clip = json.loads((t2i.RECIPES.parent / "clip" / f"{name}.json").read_text())
    assert s.image_tokenizer == vq["out"] and s.clip == clip["out"]
    assert s.data == vq["data"] == clip["data"]
