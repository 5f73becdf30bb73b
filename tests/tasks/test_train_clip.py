"""`attnlab train clip`: a tiny CLIP learns captioned shapes end to end (retrieval both ways,
the folder read back by `attnlab classify --labels` and `attnlab embed`), resumes exactly; the
duplicate-masked loss equals the model's loss without duplicates and a float64 reference with
them; the shift augmentation is seeded; the zero-shot probes are what they claim to be."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import attnlab.tasks.clip as clip_task
import attnlab.tasks.zero_shot as probes
from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.models.auto import from_pretrained
from attnlab.models.clip import contrastive_loss
from attnlab.tasks.clip import (
    CLIPSettings,
    CLIPTask,
    masked_contrastive_loss,
    random_shift,
)
from attnlab.training.run import run_task
from attnlab.training.settings import SettingError

KINDS, SIDES = ("bar", "blob", "cross"), ("left", "right")


@dataclass
class Pairs:  # the fields of data.captions.CaptionedImages the task reads
    images: torch.Tensor
    captions: list[str]
    sources: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def shape_image(kind: str, side: str, rng: np.random.Generator) -> np.ndarray:
    """16x16 grey noise with a bright shape in the left or right half."""
    image = rng.integers(0, 40, (16, 16)).astype(np.uint8)
    y, x = int(rng.integers(1, 8)), int(rng.integers(0, 2)) + (0 if side == "left" else 8)
    if kind == "bar":
        image[y:y + 7, x + 2:x + 4] = 255
    elif kind == "blob":
        image[y:y + 5, x:x + 5] = 230
    else:
        image[y + 3, x:x + 7] = 255
        image[y:y + 7, x + 3] = 255
    return image


def shapes(count: int, seed: int) -> Pairs:
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for _ in range(count):
        kind, side = KINDS[rng.integers(3)], SIDES[rng.integers(2)]
        images.append(shape_image(kind, side, rng))
        captions.append(f"a {kind} on the {side}")
    return Pairs(torch.from_numpy(np.stack(images))[:, None], captions,
                 [f"shapes:{i}" for i in range(count)], captions)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models step ~10x faster on one thread than on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shape_data(monkeypatch):
    splits = {"train": shapes(480, 0), "valid": shapes(120, 1), "test": shapes(120, 2)}
    monkeypatch.setattr(clip_task, "read_captioned", lambda data, size: splits)
    return splits


def settings(out, **changes) -> CLIPSettings:
    data = out.parent / "data"  # an existing folder: the run fingerprints it (read_captioned
    data.mkdir(exist_ok=True)  # is replaced by the fixture)
    values = dict(data=str(data), preset="clip-tiny", out=str(out), max_steps=60,
                  batch_size=32, warmup_steps=10, lr=2e-3, save_every=0, evaluations=2,
                  zero_shot="none", model_overrides={"patch_size": 4})
    return CLIPSettings(**{**values, **changes})


def test_learns_shapes_and_the_folder_serves_embed_and_classify(shape_data, tmp_path, capsys):
    out, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    assert main(["train", "clip", "--data", str(data), "--out", str(out), "--preset",
                 "clip-tiny", "--set", "patch_size=4", "--max-steps", "60", "--batch-size",
                 "32", "--warmup-steps", "10", "--lr", "2e-3", "--save-every", "0",
                 "--evaluations", "2", "--keep", "best", "--zero-shot", "none"]) == 0
    summary = capsys.readouterr().out
    assert "test recall@1 / @5: image->text" in summary and "zero-shot: no zero-shot" in summary
    m = json.loads((out / "metrics.json").read_text())
    # 6 captions: chance recall@1 is about 1/6; the shapes are easy
    assert m["test_image_to_text_recall@1"] >= 0.7, m
    assert m["test_text_to_image_recall@1"] >= 0.7, m
    assert m["test_image_to_text_recall@5"] >= m["test_image_to_text_recall@1"]
    assert m["pairs"] == {"train": 480, "valid": 120, "test": 120}
    assert m["distinct_captions"]["test"] == 6 and m["captions_truncated"]["train"] == 0
    assert m["zero_shot_accuracy"] is None and "skipped" in m["zero_shot"]
    assert m["text_max_len"] == 7  # <start> a bar on the left <end>: the longest, framed
    assert m["kept"]["metric"] == "valid_image_to_text_recall@1"
    model = from_pretrained(out)
    assert model.config.num_channels == 1 and model.config.image_size == 16
    assert m["params"] == sum(p.numel() for p in model.parameters())
    for name in ("tokenizer.json", "preprocessor_config.json", "loss_curve.png"):
        assert (out / name).is_file(), name

    # the folder classifies a new image zero-shot, its own captions as the prompts
    probe = tmp_path / "cross.png"
    Image.fromarray(shape_image("cross", "right", np.random.default_rng(9))).save(probe)
    assert main(["classify", "--model", str(out), str(probe), "--json", "--labels",
                 "a {} on the right", "bar", "blob", "cross"]) == 0
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top"]
    assert top[0]["label"] == "cross" and sum(t["probability"] for t in top) == \
        pytest.approx(1.0, abs=1e-4)

    # embed: the right caption is the image's nearest text
    assert main(["embed", "--model", str(out), "--image", str(probe), "--text",
                 "a cross on the right", "a bar on the left"]) == 0
    table = capsys.readouterr().out
    row = [line for line in table.splitlines() if line.startswith("cross.png")][0]
    first, second = (float(v.rstrip("*")) for v in row.split()[1:])
    assert first > second and row.split()[1].endswith("*")


def test_a_folder_of_captioned_images_trains_and_bad_lines_name_the_file(tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(3)
    lines = []
    for i in range(60):
        kind, side = KINDS[i % 3], SIDES[i // 3 % 2]
        Image.fromarray(shape_image(kind, side, rng)).save(data / f"{i}.png")
        lines.append(f"{i}.png\ta {kind} on the {side}")
    (data / "captions.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert main(["train", "clip", "--data", str(data), "--out", str(out), "--preset",
                 "clip-tiny", "--set", "patch_size=4", "--max-steps", "4", "--batch-size", "16",
                 "--save-every", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert sum(m["pairs"].values()) == 60 and m["pairs"]["test"] >= 5
    assert from_pretrained(out).config.num_channels == 1  # grey PNGs stay one channel
    (data / "captions.tsv").write_text("0.png a bar without a tab\n")
    assert main(["train", "clip", "--data", str(data), "--out", str(tmp_path / "r2"),
                 "--preset", "clip-tiny", "--max-steps", "1"]) == 2
    assert "captions.tsv:1: no tab" in capsys.readouterr().err


def test_resume_equals_uninterrupted(shape_data, tmp_path):
    # warmup longer than the run: the learning rates of steps 1-6 do not depend on max_steps
    base = dict(warmup_steps=10, batch_size=16, save_every=3, evaluations=0, shift=1)
    whole = run_task(CLIPTask(settings(tmp_path / "a", max_steps=6, **base)))
    run_task(CLIPTask(settings(tmp_path / "b", max_steps=3, **base)))
    resumed = run_task(CLIPTask(settings(tmp_path / "b", max_steps=6, **base)), resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def reference_loss(logits: torch.Tensor, groups: list[int]) -> float:
    """Float64, loop by loop: each row's (and column's) softmax over itself and the pairs of
    other captions."""
    n, total = len(groups), 0.0
    for matrix in (logits.double(), logits.double().T):
        for i in range(n):
            kept = [j for j in range(n) if j == i or groups[j] != groups[i]]
            total -= float(matrix[i, i] - torch.logsumexp(matrix[i, kept], 0))
    return total / (2 * n)


def test_masked_loss_is_the_paper_loss_without_duplicates_and_masks_them():
    torch.manual_seed(0)
    logits = torch.randn(6, 6) * 3
    distinct = torch.arange(6)
    torch.testing.assert_close(masked_contrastive_loss(logits, distinct),
                               contrastive_loss(logits))
    groups = [0, 1, 0, 2, 1, 3]
    masked = masked_contrastive_loss(logits, torch.tensor(groups))
    assert float(masked) == pytest.approx(reference_loss(logits, groups), abs=1e-5)
    assert float(masked) < float(contrastive_loss(logits))  # fewer negatives
    # the gradient flows and never into a masked cell
    logits.requires_grad_(True)
    masked_contrastive_loss(logits, torch.tensor(groups)).backward()
    assert logits.grad[0, 2] == 0 and logits.grad[2, 0] == 0 and logits.grad[0, 1] != 0


def test_the_task_loss_is_the_models_loss_when_captions_differ(tmp_path):
    model = build_model("clip-tiny", image_size=16, num_channels=1, patch_size=4)
    task = CLIPTask(settings(tmp_path))
    ids = torch.tensor([[0, 5, 6, 1, 2], [0, 7, 1, 2, 2], [0, 8, 9, 10, 1]])
    batch = {"input_ids": ids, "attention_mask": (ids != 2).long(),
             "pixel_values": torch.randn(3, 1, 16, 16), "groups": torch.arange(3)}
    ours, count = task.loss(model, batch)
    theirs = model(ids, batch["pixel_values"], batch["attention_mask"], return_loss=True).loss
    assert count == 3 and float(ours.detach()) == pytest.approx(float(theirs.detach()),
                                                                 abs=1e-6)


def test_random_shift_is_seeded_and_fills_with_the_background():
    images = torch.full((3, 3, 8, 8), 255, dtype=torch.uint8)
    images[:, :, 3:5, 3:5] = 0  # a dark mark on white
    a = random_shift(images, 2, torch.Generator().manual_seed(1))
    b = random_shift(images, 2, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert torch.equal(random_shift(images, 0, torch.Generator()), images)
    for image in a:  # the mark moved by at most 2 pixels, the rest is the white background
        dark = (image[0] == 0).nonzero()
        assert len(dark) == 4 and int(dark.min()) >= 1 and int(dark.max()) <= 6
        assert int((image == 255).sum()) == 3 * (64 - 4)


def test_digit_probe_is_real_test_digits_drawn_large_in_the_middle():
    pytest.importorskip("sklearn")
    from attnlab.data.images import load_images

    probe = probes.digit_probe(32, 1)
    test = load_images("builtin:digits")["test"]
    assert probe.images.shape == (len(test), 1, 32, 32) and probe.images.dtype == torch.uint8
    assert torch.equal(probe.labels, test.labels)
    assert probe.prompts[3] == "a large three" and len(probe.prompts) == 10
    inside = probe.images[:, :, 8:23, 8:23].float().sum()
    assert float(probe.images.float().sum() - inside) == 0.0  # nothing off the 15x15 box
    # the same digit drawn: scaled back to 8x8 it correlates with the original
    back = torch.nn.functional.interpolate(probe.images[:, :, 8:23, 8:23].float(), size=8,
                                           mode="area")
    def corr(a, b):
        return np.corrcoef(a.flatten().numpy(), b.float().flatten().numpy())[0, 1]

    assert corr(back, test.images) > 0.8 > 0.6 > corr(back, test.images.roll(1, 0))
    rgb = probes.digit_probe(24, 3).images
    assert rgb.shape[1:] == (3, 24, 24) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_fashion_probe_is_inverted_rgb_with_one_prompt_per_class():
    from attnlab.data.images import FASHION_MNIST_DIR

    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    probe = probes.fashion_probe(32, 3)
    assert probe.images.shape == (10_000, 3, 32, 32) and len(probe.prompts) == 10
    assert float(probe.images[:, :, 0, 0].float().mean()) > 250  # white corners: inverted
    assert len(set(probe.prompts)) == 10 and probe.classes[1] == "Trouser"


def test_a_missing_probe_package_is_a_note_not_a_failure(shape_data, tmp_path, monkeypatch):
    from attnlab.errors import MissingFileError

    def missing(size, channels):
        raise MissingFileError("builtin:fashion-mnist needs dataset-fashion-mnist")

    monkeypatch.setattr(probes, "fashion_probe", missing)
    task = CLIPTask(settings(tmp_path, zero_shot="fashion-mnist"))
    model = build_model("clip-tiny", image_size=16, num_channels=1, patch_size=4)
    assert "dataset-fashion-mnist" in task.zero_shot(model)["skipped"]


def test_zero_shot_scores_a_probe_and_draws_its_confusion(shape_data, tmp_path, monkeypatch):
    task = CLIPTask(settings(tmp_path))
    task.load_data()
    task.prepare_new_run()
    tmp_path.mkdir(exist_ok=True)
    model = task.new_model(tmp_path)
    images = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    monkeypatch.setattr(task, "probe", lambda m: probes.ZeroShotProbe(
        "four black squares", images, torch.tensor([0, 1, 1, 0]), ["bar", "blob"],
        "a {} on the left", ["bar", "blob"]))
    result = task.zero_shot(model)
    # one image, four copies: all predicted alike, so exactly half are right
    assert result["accuracy"] == 0.5 and result["prompts"] == ["a bar on the left",
                                                               "a blob on the left"]
    assert np.array(result["confusion_matrix"]).sum() == 4
    assert (tmp_path / "zero_shot_confusion.png").stat().st_size > 1000
    assert math.isclose(result["chance"], 0.5)


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(SettingError, match="preset must be a CLIP model"):
        CLIPSettings(preset="vit-tiny")
    with pytest.raises(SettingError, match="zero_shot"):
        CLIPSettings(zero_shot="cifar")
    with pytest.raises(SettingError, match="max_text_len"):
        CLIPSettings(max_text_len=2)
    assert main(["train", "clip", "--preset", "bert-tiny", "--out", str(tmp_path / "r")]) == 2


def test_the_shipped_recipes_are_valid_settings():
    from attnlab.tasks.translation import RECIPES
    from attnlab.training.settings import load_config

    for name, data in (("digit-scenes", "builtin:digit-scenes"), ("emoji", "builtin:emoji")):
        recipe = CLIPSettings(**load_config(name, CLIPSettings, RECIPES / "clip"))
        assert recipe.data == data and recipe.keep == "best"
