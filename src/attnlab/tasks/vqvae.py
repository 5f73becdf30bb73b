"""Train a VQ-VAE (van den Oord et al. 2017; EMA codebook of Razavi et al. 2019) as the image
tokenizer of text-to-image (Ramesh et al. 2021, stage one): `attnlab train vqvae`.

images of `attnlab.data.captions.load_captioned` (builtin:digit-scenes, builtin:emoji or a
folder with captions.tsv; the captions are not used here) as uint8 -> [-1, 1] (`to_unit`) ->
the VQ-VAE's loss (reconstruction MSE + beta * commitment; the codebook follows its EMA) on the
run routine: seeded shuffled batches (exact resume), AdamW with warmup and cosine decay to the
planned end, the best weights by validation MSE -> test reconstruction MSE and PSNR (on the
rounded uint8 pixels: 10 log10(255^2 / MSE) over the whole test set), the share of the
codebook the test images use and the perplexity of their codes, reconstructions.png (test
originals over their reconstructions) and, for the digit scenes, how often the independent
scene reader reads the reconstructions right (next to its score on the real scenes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.batching import ShuffledRows
from attnlab.data.captions import CaptionedImages
from attnlab.data.checks import MIN_VALID_EXAMPLES, warn_small_split
from attnlab.errors import DataError
from attnlab.models import build_model, list_models
from attnlab.models.auto import from_pretrained
from attnlab.models.vqvae import to_pixels, to_unit
from attnlab.tasks.common import PlannedSettings, PlannedTask, planned
from attnlab.training.run import model_device, run_model_folder
from attnlab.training.settings import (
    SettingError,
    check_non_negative_ints,
    check_positive_ints,
    setting,
)
from attnlab.training.trainer import TrainResult

SPLITS = ("train", "valid", "test")
DIGIT_SCENES = "builtin:digit-scenes"


def vqvae_presets() -> list[str]:
    return list_models("vqvae")


@dataclass
class VQVAESettings(PlannedSettings):
    """Everything `attnlab train vqvae` takes; saved as `train_settings.json`."""

    data: str = setting("builtin:digit-scenes", "builtin:digit-scenes, builtin:emoji, or a "
                                                "folder DIR with DIR/captions.tsv (file<TAB>"
                                                "caption per line; the images are used)",
                        data=True)
    out: str = setting("runs/vqvae", "output folder (model, checkpoints, metrics)")
    preset: str = setting("vqvae-scenes", "model (a VQ-VAE preset; image size and channels "
                                          "come from the data)", choices=vqvae_presets)
    image_size: int = setting(0, "square side images are resized to (0: the data's own size)")
    warmup_steps: int = planned("warmup_steps", 50)
    weight_decay: float = planned("weight_decay", 0.0, "AdamW weight decay (not on biases)")
    pictures: int = setting(16, "test images drawn in reconstructions.png")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("pictures",))
        check_non_negative_ints(self, ("image_size",))
        if self.preset not in vqvae_presets():
            raise SettingError("preset", f"preset must be a VQ-VAE, one of {vqvae_presets()}, "
                                         f"got {self.preset!r}")
        if not self.data:
            raise SettingError("data", "data must be builtin:digit-scenes, builtin:emoji or a "
                                       "folder, got ''")


def load_splits(data: str, image_size: int | None, seed: int = 0
                ) -> dict[str, CaptionedImages]:
    """{"train", "valid", "test"} -> the captioned images of `data` (uint8 (N, C, H, W))."""
    from attnlab.data.captions import load_captioned

    return load_captioned(data, image_size=image_size, seed=seed)


class ImageBatches(ShuffledRows):
    """Shuffled batches of the training images as the model reads them; batch i is a pure
    function of (seed, i), so exact resume keeps one counter."""

    def __init__(self, images: Tensor, batch_size: int, seed: int) -> None:
        super().__init__(len(images), batch_size, seed)
        self.images = images

    def next(self) -> dict[str, Tensor]:
        return {"pixel_values": to_unit(self.images[self.next_rows()])}  # (B, C, H, W)


@dataclass
class Measured:
    """One pass of a model over a split."""

    mse: float  # on the [-1, 1] scale (the training loss's)
    pixel_mse: float  # on the rounded uint8 pixels
    usage: Tensor  # (K,) long: code counts over the split
    reconstructions: Tensor  # (n, C, H, W) uint8: the first `keep` images' reconstructions

    @property
    def psnr(self) -> float:
        return 10 * math.log10(255.0**2 / max(self.pixel_mse, 1e-12))

    @property
    def codebook_usage(self) -> float:
        return float((self.usage > 0).float().mean())

    @property
    def perplexity(self) -> float:
        share = self.usage.double() / self.usage.sum().clamp(min=1)
        return float(torch.exp(-(share * share.clamp(min=1e-30).log()).sum()))


class VQVAETask(PlannedTask):
    name = "vqvae"
    best_metric = ("valid_mse", "min")
    settings: VQVAESettings
    splits: dict[str, Tensor]  # split -> uint8 images (N, C, H, W)
    captions: dict[str, list[str]]

    def load_data(self) -> None:
        s = self.settings
        captioned = load_splits(s.data, s.image_size or None)
        self.splits = {name: part.images for name, part in captioned.items()}
        self.captions = {name: part.captions for name, part in captioned.items()}
        for split in SPLITS:
            images = self.splits.get(split)
            if images is None or len(images) == 0:
                raise DataError(f"{s.data}: the {split} split holds no images")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise DataError(f"{s.data}: the {split} images must be uint8 (N, C, H, W), got "
                                f"{images.dtype} {tuple(images.shape)}")
        warn_small_split(f"{s.data} (valid)", len(self.splits["valid"]), "images",
                         MIN_VALID_EXAMPLES, "add validation images")

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        C, H, W = self.splits["train"].shape[1:]
        if H != W:
            raise SettingError("image_size", f"images are {H}x{W}; the VQ-VAE takes square "
                                             "images: give --image-size N")
        model = build_model(s.preset, **{"image_size": H, "num_channels": C,
                                         **s.model_overrides})
        model.start_output_at(to_unit(self.splits["train"]).mean(dim=(0, 2, 3)))  # (C,)
        return model

    def restore(self, out: Path) -> nn.Module:
        return from_pretrained(run_model_folder(out))

    def batches(self, model: nn.Module) -> ImageBatches:
        s = self.settings
        return ImageBatches(self.splits["train"], s.batch_size, s.seed)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        pixels = batch["pixel_values"]
        return model(pixels).loss, int(pixels.size(0))

    @torch.no_grad()
    def measure(self, model: nn.Module, images: Tensor, keep: int = 0) -> Measured:
        """Reconstruction errors and code counts of `images` (uint8) in eval mode."""
        model.eval()
        device = model_device(model)
        squared = pixel_squared = 0.0
        usage = torch.zeros(model.config.codebook_size, dtype=torch.long)
        kept = []
        for start in range(0, len(images), self.settings.eval_batch_size):
            batch = images[start:start + self.settings.eval_batch_size]  # (b, C, H, W) uint8
            out = model(to_unit(batch).to(device))
            squared += float((out.reconstruction.float().cpu() - to_unit(batch)).pow(2).sum())
            pixels = to_pixels(out.reconstruction.cpu())  # (b, C, H, W) uint8
            pixel_squared += float((pixels.float() - batch.float()).pow(2).sum())
            usage += out.usage.cpu()
            if sum(len(k) for k in kept) < keep:
                kept.append(pixels)
        n = images.numel()
        return Measured(squared / n, pixel_squared / n, usage,
                        torch.cat(kept)[:keep] if kept else images[:0])

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        measured = self.measure(model, self.splits["valid"])
        return {"valid_mse": round(measured.mse, 6),
                "valid_codebook_usage": round(measured.codebook_usage, 4)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        test = self.splits["test"]
        scenes = s.data == DIGIT_SCENES and test.shape[1:] == (1, 32, 32)
        measured = self.measure(model, test, keep=len(test) if scenes else s.pictures)
        plot_reconstructions(test[:s.pictures], measured.reconstructions[:s.pictures],
                             Path(s.out) / "reconstructions.png",
                             title=f"test: originals (top) and reconstructions, PSNR "
                                   f"{measured.psnr:.1f} dB")
        config = model.config
        read = read_scenes(test, measured.reconstructions, self.captions["test"]) if scenes \
            else {}
        return {
            "test_mse": round(measured.mse, 6),
            "test_psnr": round(measured.psnr, 3),
            "test_pixel_mse": round(measured.pixel_mse, 3),
            "codebook_usage": round(measured.codebook_usage, 4),
            "test_perplexity": round(measured.perplexity, 2),
            "codebook_size": config.codebook_size,
            "grid": list(config.grid),
            **read,
            "valid_mse": self.kept_evaluation(result)["valid_mse"],
            "examples": {split: len(self.splits[split]) for split in SPLITS},
            "steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_examples_per_second": round(result.tokens_per_second, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "preset": s.preset, "precision": precision, "evaluations": result.evaluations,
        }


def read_scenes(real: Tensor, reconstructed: Tensor, captions: list[str]
                ) -> dict[str, dict[str, float]]:
    """Do digits stay readable? The independent scene reader (`evaluation.digit_scenes`, an SVM
    on real train digits) scores the real test scenes (its ceiling) and their
    reconstructions against their captions."""
    from attnlab.data.digit_scenes import parse_caption
    from attnlab.evaluation.digit_scenes import SceneReader

    reader = SceneReader.fit()
    specs = [parse_caption(caption) for caption in captions]
    return {"scene_reader": {
        "reconstructed": {k: round(v, 4) for k, v in reader.score(reconstructed, specs).items()},
        "real": {k: round(v, 4) for k, v in reader.score(real, specs).items()}}}


def plot_reconstructions(originals: Tensor, reconstructions: Tensor, path: Path,
                         title: str = "") -> None:
    """Two rows of uint8 (n, C, H, W) images, originals over reconstructions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.viz.figures import save_png

    n = len(originals)
    figure, axes = plt.subplots(2, n, figsize=(max(1.0 * n, 2.0), 2.4), squeeze=False)
    for row, images in enumerate((originals, reconstructions)):
        for i in range(n):
            axis = axes[row][i]
            picture = images[i].permute(1, 2, 0).numpy()  # (H, W, C)
            if picture.shape[2] == 1:
                axis.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255)
            else:
                axis.imshow(picture)
            axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    save_png(figure, path, dpi=100, tight=False, bbox_inches="tight")


__all__ = ["ImageBatches", "VQVAESettings", "VQVAETask", "load_splits", "plot_reconstructions",
           "read_scenes"]
