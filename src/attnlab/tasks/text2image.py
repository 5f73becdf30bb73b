"""`attnlab train text2image`: DALL-E's second stage at CPU scale (Ramesh et al. 2021, "Zero-Shot
Text-to-Image Generation", sec. 2.2): a decoder-only Transformer over [caption tokens ; image
codes] trained on captioned images, the images tokenized once by a VQ-VAE trained before
(`attnlab train vqvae`, the paper's dVAE stage).

captions (built-in digit scenes, emoji, or a folder with captions.tsv: `data/captions.py`) ->
a caption BPE learnt on the training captions (`tokenizers/captions.py`) -> ids padded to
text_len; images -> VQ-VAE codes (grid x grid), once -> [text ; text_vocab_size + codes] rows ->
the paper's loss (text 1/8, image 7/8) with AdamW, warmup and cosine decay on the run routine;
validation = bits per image code. Final metrics sample `eval_samples` images for each of the
first `eval_captions` test captions (`tasks/imagine.py`): for digit scenes an independent reader
(`evaluation/digit_scenes.py`, fitted on real digits only) scores the first sample and, with
--clip, the CLIP-best one, next to its score on the real test scenes (its ceiling); with --clip,
the CLIP score (cosine) of generated and of real test images. samples.png shows a grid.

The run folder keeps tokenizer.json (the caption tokenizer) and the VQ-VAE in image_tokenizer/,
so `attnlab imagine --model OUT "caption"` needs nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.batching import ShuffledRows
from attnlab.data.checks import require_splits
from attnlab.io import load_tokenizer
from attnlab.models import build_model, list_models
from attnlab.models.auto import from_pretrained
from attnlab.models.text2image import TextToImage
from attnlab.models.vqvae import VQVAE, to_unit
from attnlab.tasks.common import PlannedSettings, PlannedTask, planned
from attnlab.tasks.imagine import (
    IMAGE_TOKENIZER,
    ClipScorer,
    Pipeline,
    check_image_tokenizer,
    clip_scores,
    imagine,
    load_clip,
    load_folder_as,
    rerank,
    save_grid,
)
from attnlab.tokenizers.captions import (
    caption_specials,
    encode_captions,
    framed_length,
    train_caption_tokenizer,
)
from attnlab.training.run import model_device, run_model_folder, run_summary
from attnlab.training.settings import (
    SettingError,
    check_non_negative_ints,
    check_positive_ints,
    check_positive_numbers,
    setting,
)
from attnlab.training.trainer import TrainResult

SPLITS = ("train", "valid", "test")
SCENES = "builtin:digit-scenes"
RECIPES = Path(__file__).parent / "recipes" / "text2image"


def text2image_presets() -> list[str]:
    return list_models(TextToImage.config_class.model_type)


def load_captioned(data: str) -> dict[str, Any]:
    """The captioned splits of `data` (data/captions.py), read here so tests can replace it."""
    from attnlab.data.captions import load_captioned as load

    return load(data, seed=0)


@dataclass
class TextToImageSettings(PlannedSettings):
    """Everything `attnlab train text2image` takes; saved as `train_settings.json`."""

    data: str = setting(SCENES, "builtin:digit-scenes, builtin:emoji, or a folder with "
                                "captions.tsv (file<TAB>caption per line)", data=True)
    image_tokenizer: str = setting("", "the VQ-VAE run folder (attnlab train vqvae on the same "
                                       "images); copied into OUT/image_tokenizer")
    clip: str = setting("", "a CLIP run folder (attnlab train clip) to rerank samples and "
                            "score them in the final metrics (empty: none)")
    out: str = setting("runs/text2image", "output folder (model, checkpoints, metrics)")
    preset: str = setting("text2image-scenes", "model (text vocabulary and length come from "
                                               "the captions, codes and grid from the VQ-VAE)",
                          choices=text2image_presets)
    text_vocab_size: int = setting(1000, "at most this many caption BPE tokens (>= 259)")
    batch_size: int = planned("batch_size", 64, "captioned images per batch")
    eval_batch_size: int = planned("eval_batch_size", 256, "rows per batch when validating and "
                                                           "sampling")
    warmup_steps: int = planned("warmup_steps", 200)
    eval_captions: int = setting(200, "test captions sampled for the final metrics")
    eval_samples: int = setting(8, "images sampled per test caption (CLIP picks the best)")
    top_k: int = setting(64, "sample among the k likeliest codes (0: all)")
    temperature: float = setting(1.0, "sampling temperature")
    grid_captions: int = setting(8, "captions (rows) in samples.png")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("eval_samples", "grid_captions"))
        check_non_negative_ints(self, ("eval_captions", "top_k"))
        check_positive_numbers(self, ("temperature",))
        if not isinstance(self.text_vocab_size, int) or self.text_vocab_size < 259:
            raise SettingError("text_vocab_size", f"text_vocab_size must be an integer >= 259 "
                                                  f"(256 bytes and 3 specials), got "
                                                  f"{self.text_vocab_size!r}")
        if self.preset not in text2image_presets():
            raise SettingError("preset", f"preset must be a text-to-image model, one of "
                                         f"{text2image_presets()}, got {self.preset!r}")
        if not self.data:
            raise SettingError("data", "data must be builtin:digit-scenes, builtin:emoji or a "
                                       "folder, got ''")


class Rows(ShuffledRows):
    """Shuffled batches of [text ; image] rows (batch i a pure function of (seed, i))."""

    def __init__(self, rows: Tensor, batch_size: int, seed: int) -> None:
        super().__init__(rows.size(0), batch_size, seed)
        self.rows = rows

    def next(self) -> dict[str, Tensor]:
        return {"input_ids": self.rows[self.next_rows()]}


class TextToImageTask(PlannedTask):
    name = "text2image"
    best_metric = ("valid_image_loss", "min")
    settings: TextToImageSettings

    # -- data and model ------------------------------------------------------------------------
    def load_data(self) -> None:
        s = self.settings
        self.splits = load_captioned(s.data)
        require_splits(s.data, {k: len(v) for k, v in self.splits.items()})

    def prepare_new_run(self) -> None:
        s = self.settings
        if not s.image_tokenizer:
            raise SettingError("image_tokenizer", "image_tokenizer: give the folder of a VQ-VAE "
                                                  "run (attnlab train vqvae --data ...), got ''")
        self.vq = load_folder_as(Path(s.image_tokenizer), VQVAE, "image_tokenizer", "a VQ-VAE")
        self.check_images(self.vq, "image_tokenizer")
        if s.clip:  # refused now, not after training
            self.clip: ClipScorer | None = load_clip(s.clip, what="clip")
        captions = self.splits["train"].captions
        self.tokenizer = train_caption_tokenizer(captions, vocab_size=s.text_vocab_size)
        self.text_len = max(3, framed_length(self.tokenizer, captions))

    def check_images(self, vq: VQVAE, what: str) -> None:
        c, images = vq.config, self.splits["train"].images
        wanted = (c.num_channels, c.image_size, c.image_size)
        if tuple(images.shape[1:]) != wanted:
            raise SettingError("image_tokenizer", f"{what}: the VQ-VAE reads images of "
                                                  f"{wanted} (channels, height, width), "
                                                  f"{self.settings.data} has "
                                                  f"{tuple(images.shape[1:])}")

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        self.vq.save_pretrained(out / IMAGE_TOKENIZER)
        bos, eos, pad = caption_specials(self.tokenizer)
        model = build_model(s.preset, **{
            "text_vocab_size": self.tokenizer.vocab_size, "text_len": self.text_len,
            "image_vocab_size": self.vq.config.codebook_size, "grid": self.vq.grid[0],
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
            **s.model_overrides})
        self.prepare(model, self.vq)
        return model

    def restore(self, out: Path) -> nn.Module:
        self.tokenizer = load_tokenizer(out)
        vq = load_folder_as(out / IMAGE_TOKENIZER, VQVAE, "--resume", "a VQ-VAE")
        self.check_images(vq, f"{out / IMAGE_TOKENIZER}")
        model = from_pretrained(run_model_folder(out))
        check_image_tokenizer(model, vq, str(out))
        self.prepare(model, vq)
        return model

    @torch.no_grad()
    def prepare(self, model: TextToImage, vq: VQVAE) -> None:
        """Every split as [text ; image] id rows (N, text_len + grid**2): codes computed once."""
        self.vq = vq.eval()
        c, size = model.config, 512
        self.rows: dict[str, Tensor] = {}
        self.cut: dict[str, int] = {}
        for split in SPLITS:
            data = self.splits[split]
            text, _ = encode_captions(self.tokenizer, data.captions, c.text_len)
            self.cut[split] = sum(len(t) + 2 > c.text_len
                                  for t in self.tokenizer.encode_batch(data.captions))
            codes = torch.cat([vq.encode(to_unit(data.images[i:i + size])).flatten(1)
                               for i in range(0, len(data), size)])  # (N, grid**2)
            self.rows[split] = torch.cat([text, codes + c.text_vocab_size], dim=1)

    # -- training ------------------------------------------------------------------------------
    def batches(self, model: nn.Module) -> Rows:
        s = self.settings
        return Rows(self.rows["train"], s.batch_size, s.seed)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        ids = batch["input_ids"]
        out = model(ids, labels=ids)
        return out.loss, ids.numel()

    def generation_settings(self) -> dict[str, Any]:
        s = self.settings
        return {"do_sample": True, "top_k": s.top_k, "temperature": s.temperature}

    # -- measuring -----------------------------------------------------------------------------
    @torch.no_grad()
    def image_loss(self, model: nn.Module, split: str) -> float:
        """Mean cross-entropy of the image codes of a split (nats per code)."""
        training = model.training
        model.eval()
        rows, size, device = self.rows[split], self.settings.eval_batch_size, model_device(model)
        total = 0.0
        for i in range(0, rows.size(0), size):
            batch = rows[i:i + size].to(device)
            total += float(model(batch, labels=batch).image_loss) * batch.size(0)
        model.train(training)
        return total / rows.size(0)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        nats = self.image_loss(model, "valid")
        return {"valid_image_loss": round(nats, 5),
                "valid_bits_per_code": round(nats / math.log(2), 5)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        model.eval()
        test_nats = self.image_loss(model, "test")
        m: dict[str, Any] = {
            "test_image_loss": round(test_nats, 5),
            "test_bits_per_code": round(test_nats / math.log(2), 5),
            "valid_image_loss": self.kept_evaluation(result)["valid_image_loss"],
            "examples": {split: len(self.splits[split]) for split in SPLITS},
            "captions_cut": self.cut, "text_len": model.config.text_len,
            "text_vocab_size": model.config.text_vocab_size,
            "codes": model.config.image_vocab_size, "grid": model.config.grid,
            "params": sum(p.numel() for p in model.parameters()), "preset": s.preset,
            "attention_layout": model.config.attention_layout, "precision": precision,
            **run_summary(result), "evaluations": result.evaluations,
        }
        if s.eval_captions:
            m.update(self.sample_metrics(model))
        return m

    def sample_metrics(self, model: TextToImage) -> dict[str, Any]:
        """Sample the first test captions, score the samples, write samples.png."""
        s = self.settings
        test = self.splits["test"]
        n = min(s.eval_captions, len(test))
        captions, real = list(test.captions[:n]), test.images[:n]
        pipeline = Pipeline(model, self.tokenizer, self.vq.to(model_device(model)))
        samples = imagine(pipeline, captions, s.eval_samples, top_k=s.top_k,
                          temperature=s.temperature, seed=s.seed,
                          batch_size=s.eval_batch_size)  # (n, S, C, H, W)
        m: dict[str, Any] = {"sampled": {"captions": n, "samples_per_caption": s.eval_samples,
                                         "top_k": s.top_k, "temperature": s.temperature}}
        clip = getattr(self, "clip", None)  # loaded by prepare_new_run, not on --resume
        if clip is None and s.clip:
            clip = load_clip(s.clip, what="clip")
        order = scores = None
        if clip is not None:
            clip.model.to(model_device(model))
            order, scores = rerank(clip, captions, samples)  # (n, S) each
            m["clip_score"] = {
                "first_sample": round(float(scores[:, 0].mean()), 4),
                "clip_best_sample": round(float(scores.max(1).values.mean()), 4),
                "real_test_images": round(float(clip_scores(clip, captions, real).mean()), 4)}
        if s.data == SCENES:
            m["scenes"] = self.read_scenes(captions, samples, real, order)
        self.write_grid(captions, samples, order, scores)
        return m

    def read_scenes(self, captions: list[str], samples: Tensor, real: Tensor,
                    order: Tensor | None) -> dict[str, Any]:
        """The independent reader's scores (fully_right and its parts)."""
        from attnlab.data.digit_scenes import parse_caption
        from attnlab.evaluation.digit_scenes import SceneReader

        reader = SceneReader.fit(seed=0)
        wanted = [parse_caption(caption) for caption in captions]

        def score(images: Tensor) -> dict[str, float]:
            return {k: round(float(v), 4) for k, v in reader.score(images, wanted).items()}

        scenes = {"first_sample": score(samples[:, 0]), "real_test_scenes": score(real)}
        if order is not None:
            best = samples[torch.arange(samples.size(0)), order[:, 0]]  # (n, C, H, W)
            scenes["clip_best_sample"] = score(best)
        return scenes

    def write_grid(self, captions: list[str], samples: Tensor, order: Tensor | None,
                   scores: Tensor | None) -> None:
        seen: dict[str, int] = {}
        for i, caption in enumerate(captions):
            seen.setdefault(caption, i)
        rows = list(seen.values())[: self.settings.grid_captions]  # distinct captions
        shown = samples[rows]
        if order is not None and scores is not None:
            index = order[rows]  # (R, S) best first
            shown = shown[torch.arange(len(rows))[:, None], index]
            scores = scores[rows].gather(1, index)
        save_grid(shown, Path(self.settings.out) / "samples.png",
                  [captions[i] for i in rows], scores)


__all__ = ["RECIPES", "TextToImageSettings", "TextToImageTask", "text2image_presets"]
