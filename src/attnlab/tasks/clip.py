"""Train CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision") on captioned images: the built-in digit scenes ("a large three to the left of a
small seven") or emoji (Debian's Noto Color Emoji named in English), or a folder of images
with DIR/captions.tsv (`attnlab.data.captions`).

captions -> lower-cased byte-level BPE learnt on the training captions
(`tokenizers/captions.py`), framed to the longest training caption (capped) -> text
Transformer; images (uint8) -> optional small random translation, seeded per batch ->
per-channel normalisation fitted on the training images (preprocessor_config.json) -> ViT;
both projected and L2-normalised -> the symmetric contrastive loss over the pairs of a batch
(the paper's Figure 3). Identical captions in one batch would be each other's false
negatives (a digit-scene caption occurs ~12 times in 20,000 scenes, so a batch of 256 holds
about 20 such pairs): by default their cross-pair logits are masked out, so a pair is only
pushed away from captions that really differ (`mask_duplicates`).

AdamW (no decay on vectors, the logit scale, class and position tables), warmup and cosine
decay to the planned end, on the one run routine (checkpoints, exact resume, --keep best by
validation image->text recall@1). Final metrics: test recall@1/5 in both directions (all test
pairs the candidates; an identical caption counts as found: evaluation/retrieval.py) and
zero-shot accuracy on a class probe the model never trained on: the REAL scikit-learn digits
of the digits test split drawn as one large digit in the middle of the canvas, prompts
"a large {digit}" (digit scenes), or Fashion-MNIST's test images inverted to dark-on-white
with clothing prompts named like emoji (emoji), with zero_shot_confusion.png.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.data.checks import MIN_VALID_EXAMPLES, require_splits, warn_small_split
from attnlab.errors import MissingFileError
from attnlab.evaluation.retrieval import (
    caption_groups,
    confusion_matrix,
    retrieval_recall,
    zero_shot_predict,
)
from attnlab.models import build_model, list_models
from attnlab.tasks import zero_shot as probes
from attnlab.tasks.common import PlannedSettings, PlannedTask, planned
from attnlab.tasks.perception import AugmentedBatches, Examples
from attnlab.tasks.zero_shot import ZeroShotProbe
from attnlab.tokenizers.captions import (
    caption_specials,
    encode_captions,
    framed_length,
    train_caption_tokenizer,
)
from attnlab.tokenizers.image_processor import ImageProcessor
from attnlab.training.run import model_device
from attnlab.training.settings import (
    SettingError,
    check_choice,
    check_non_negative_ints,
    check_positive_ints,
    setting,
)
from attnlab.training.trainer import TrainResult

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
ZERO_SHOT_CHOICES = ("auto", "digits", "fashion-mnist", "none")


def clip_presets() -> list[str]:
    return list_models("clip")


@dataclass
class CLIPSettings(PlannedSettings):
    """Everything `attnlab train clip` takes; saved as `train_settings.json`."""

    data: str = setting("builtin:digit-scenes", "builtin:digit-scenes, builtin:emoji, or a "
                                                "folder of images with DIR/captions.tsv "
                                                "(file<TAB>caption per line)", data=True)
    out: str = setting("runs/clip", "output folder (model, checkpoints, metrics)")
    preset: str = setting("clip-digits", "CLIP preset (image size, channels, vocabulary and "
                                         "text length come from the data)",
                          choices=clip_presets)
    image_size: int = setting(0, "square side images are resized to (0: the data's own size)")
    vocab_size: int = setting(1000, "largest caption BPE vocabulary (a small caption set "
                                    "learns fewer merges)")
    max_text_len: int = setting(32, "longest caption in tokens with start and end; the model "
                                    "takes the longest training caption up to this")
    batch_size: int = planned("batch_size", 256, "image-caption pairs per batch (each pair's "
                                                 "negatives are the other pairs of its batch)")
    eval_batch_size: int = planned("eval_batch_size", 512, "pairs per batch when embedding for "
                                                           "evaluation")
    weight_decay: float = planned("weight_decay", 0.1, "AdamW weight decay (not on biases, "
                                                       "norms, the logit scale, class and "
                                                       "position tables)")
    mask_duplicates: bool = setting(True, "identical captions in a batch are not used as each "
                                          "other's negatives")
    shift: int = setting(0, "random translation of training images by up to N pixels, the "
                            "border filled with the image's corner colour (0: off)")
    zero_shot: str = setting("auto", "zero-shot probe at the end: digits (real scikit-learn "
                                     "test digits, prompts 'a large {}'), fashion-mnist "
                                     "(inverted Fashion-MNIST test images), none; auto: "
                                     "digits for digit scenes, fashion-mnist for emoji",
                             choices=ZERO_SHOT_CHOICES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("vocab_size",))
        check_non_negative_ints(self, ("image_size", "shift"))
        check_choice(self, "zero_shot", ZERO_SHOT_CHOICES)
        if not isinstance(self.max_text_len, int) or self.max_text_len < 3:
            raise SettingError("max_text_len", f"max_text_len must be an integer >= 3 (start, "
                                               f"one token, end), got {self.max_text_len!r}")
        if not isinstance(self.mask_duplicates, bool):
            raise SettingError("mask_duplicates", f"mask_duplicates must be true or false, "
                                                  f"got {self.mask_duplicates!r}")
        if self.preset not in clip_presets():
            raise SettingError("preset", f"preset must be a CLIP model, one of "
                                         f"{clip_presets()}, got {self.preset!r}")
        if not self.data:
            raise SettingError("data", "data must be builtin:digit-scenes, builtin:emoji or a "
                                       "folder, got ''")


def masked_contrastive_loss(logits_per_text: Tensor, groups: Tensor) -> Tensor:
    """CLIP's symmetric cross-entropy over a batch's pairs (float32), with the logits between
    two DIFFERENT pairs of the SAME caption group set to -inf: neither is the other's negative.
    logits_per_text (B, B) (text i against image j), groups (B,) caption group ids. With no
    repeated caption this is exactly the paper's loss."""
    logits = logits_per_text.float()
    same = groups[:, None] == groups[None, :]  # (B, B)
    false_negative = same & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    logits = logits.masked_fill(false_negative, float("-inf"))
    targets = torch.arange(len(groups), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """uint8 (B, C, H, W) -> the same shape, each image moved by up to `max_shift` pixels in x
    and y (seeded), the uncovered border filled with its top-left pixel (the background of a
    scene or an emoji). No flips: they would swap "left of" and "right of"."""
    if max_shift == 0:
        return images
    B, C, H, W = images.shape
    p = max_shift
    padded = images[:, :, :1, :1].expand(B, C, H + 2 * p, W + 2 * p).clone()
    padded[:, :, p:p + H, p:p + W] = images  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * p + 1, (B, 1), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (B, 1), generator=generator)
    rows = (dy + torch.arange(H))[:, :, None]  # (B, H, 1)
    cols = (dx + torch.arange(W))[:, None, :]  # (B, 1, W)
    batch = torch.arange(B)[:, None, None]  # (B, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def read_captioned(data: str, image_size: int | None) -> dict[str, Any]:
    """{"train", "valid", "test"} -> CaptionedImages of `data` (`attnlab.data.captions`)."""
    from attnlab.data.captions import load_captioned

    return load_captioned(data, image_size=image_size, seed=0)


class CLIPTask(PlannedTask):
    name = "clip"
    best_metric = ("valid_image_to_text_recall@1", "max")
    betas = (0.9, 0.98)  # Radford et al. 2021, sec. 2.5 (0.98 for stability)
    decay_token_tables = False  # no decay on the class embedding and position tables
    settings: CLIPSettings

    # -- data ----------------------------------------------------------------------------------
    def load_data(self) -> None:
        s = self.settings
        self.splits = read_captioned(s.data, s.image_size or None)
        require_splits(s.data, {k: len(v) for k, v in self.splits.items()})
        H, W = self.splits["train"].images.shape[-2:]
        if H != W:
            raise SettingError("image_size", f"{s.data}: images are {H}x{W}; CLIP's ViT takes "
                                             "square images: give --image-size N")
        warn_small_split(f"{s.data} (valid)", len(self.splits["valid"]), "pairs",
                         MIN_VALID_EXAMPLES, "add validation pairs")

    def prepare_new_run(self) -> None:
        s = self.settings
        captions = self.splits["train"].captions
        self.tokenizer = train_caption_tokenizer(captions, s.vocab_size)
        self.text_len = min(framed_length(self.tokenizer, captions), s.max_text_len)

    def new_model(self, out: Path) -> nn.Module:
        if self.tokenizer is None:
            self.prepare_new_run()
        assert self.tokenizer is not None
        s = self.settings
        images = self.splits["train"].images  # (N, C, H, W) uint8
        bos, eos, pad = caption_specials(self.tokenizer)
        model = build_model(s.preset, **{
            "vocab_size": self.tokenizer.vocab_size, "text_max_len": self.text_len,
            "image_size": images.size(-1), "num_channels": images.size(1),
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
            **s.model_overrides})
        ImageProcessor.fitted(images, size=images.size(-1)).save(out)
        self.prepare(model, out)
        return model

    def restore(self, out: Path) -> nn.Module:
        model = super().restore(out)
        self.prepare(model, out)
        return model

    def prepare(self, model: nn.Module, out: Path) -> None:
        """Captions of every split as framed ids at the model's text length; the processor."""
        assert self.tokenizer is not None
        self.processor = ImageProcessor.load(out)
        self.text_len = model.config.text_max_len
        self.encoded = {split: encode_captions(self.tokenizer, self.splits[split].captions,
                                               self.text_len) for split in SPLITS}
        self.truncated = {split: sum(len(ids) + 2 > self.text_len for ids in
                                     self.tokenizer.encode_batch(self.splits[split].captions))
                          for split in SPLITS}
        self.train_groups = caption_groups(self.splits["train"].captions)

    # -- training ------------------------------------------------------------------------------
    def make_batch(self, images: Tensor, rows: Tensor,
                   generator: torch.Generator) -> dict[str, Tensor]:
        ids, mask = self.encoded["train"]
        images = random_shift(images, self.settings.shift, generator)
        return {"pixel_values": self.processor(images), "input_ids": ids[rows],
                "attention_mask": mask[rows], "groups": self.train_groups[rows]}

    def batches(self, model: nn.Module) -> AugmentedBatches:
        s = self.settings
        train = self.splits["train"]
        rows = Examples(train.images, torch.arange(len(train)), train.sources)
        return AugmentedBatches(rows, s.batch_size, s.seed, self.make_batch)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """The model's contrastive loss (its logits scaled by the clamped temperature), or the
        same loss with repeated captions kept out of each other's negatives."""
        out = model(batch["input_ids"], batch["pixel_values"], batch["attention_mask"],
                    return_loss=True)
        pairs = int(batch["input_ids"].size(0))
        if not self.settings.mask_duplicates:
            return out.loss, pairs
        return masked_contrastive_loss(out.logits_per_text, batch["groups"]), pairs

    # -- measuring -----------------------------------------------------------------------------
    @torch.no_grad()
    def image_embeddings(self, model: nn.Module, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) -> (N, P) L2-normalised."""
        model.eval()
        device, size = model_device(model), self.settings.eval_batch_size
        out = [model.get_image_features(self.processor(images[i:i + size]).to(device)).float()
               for i in range(0, len(images), size)]
        return F.normalize(torch.cat(out).cpu(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
        """Framed ids and mask (N, L) -> (N, P) L2-normalised."""
        model.eval()
        device, size = model_device(model), self.settings.eval_batch_size
        out = [model.get_text_features(ids[i:i + size].to(device),
                                       mask[i:i + size].to(device)).float()
               for i in range(0, len(ids), size)]
        return F.normalize(torch.cat(out).cpu(), dim=-1)

    def retrieval(self, model: nn.Module, split: str, ks: tuple[int, ...]) -> dict[str, float]:
        pairs = self.splits[split]
        images = self.image_embeddings(model, pairs.images)
        texts = self.text_embeddings(model, *self.encoded[split])
        return retrieval_recall(images, texts, pairs.captions, ks)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        scores = self.retrieval(model, "valid", (1,))
        return {"valid_image_to_text_recall@1": scores["image_to_text_recall@1"]}

    def probe(self, model: nn.Module) -> ZeroShotProbe | None:
        s = self.settings
        which = s.zero_shot
        if which == "auto":
            which = {"builtin:digit-scenes": "digits", "builtin:emoji": "fashion-mnist"}.get(
                s.data, "none")
        if which == "none":
            return None
        config = model.config
        make = probes.digit_probe if which == "digits" else probes.fashion_probe
        return make(config.image_size, config.num_channels)

    def zero_shot(self, model: nn.Module) -> dict[str, Any]:
        """Accuracy of the nearest class prompt on the probe, with zero_shot_confusion.png."""
        from attnlab.viz.confusion import plot_confusion

        try:
            probe = self.probe(model)
        except MissingFileError as error:  # e.g. Debian's dataset-fashion-mnist not installed
            log.warning("zero-shot probe skipped: %s", error)
            return {"skipped": str(error)}
        if probe is None:
            return {"skipped": f"no zero-shot probe for {self.settings.data} "
                               "(--zero-shot digits or fashion-mnist to run one)"}
        assert self.tokenizer is not None
        ids, mask = encode_captions(self.tokenizer, probe.prompts, self.text_len)
        predicted = zero_shot_predict(self.image_embeddings(model, probe.images),
                                      self.text_embeddings(model, ids, mask))
        confusion = confusion_matrix(probe.labels, predicted, len(probe.classes))
        accuracy = float((predicted == probe.labels).float().mean())
        per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
        plot_confusion(confusion, probe.classes, Path(self.settings.out) /
                       "zero_shot_confusion.png",
                       title=f"CLIP zero-shot on {probe.name.split(' (')[0]}: {accuracy:.1%}")
        return {"accuracy": round(accuracy, 5), "images": probe.name,
                "template": probe.template, "prompts": probe.prompts, "classes": probe.classes,
                "per_class_accuracy": {c: round(float(a), 4) for c, a in
                                       zip(probe.classes, per_class, strict=True)},
                "confusion_matrix": confusion.tolist(), "chance": round(1 / len(probe.classes),
                                                                        5)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        test = {f"test_{k}": v for k, v in self.retrieval(model, "test", (1, 5)).items()}
        zero_shot = self.zero_shot(model)
        assert self.tokenizer is not None
        return {
            **test,
            "zero_shot_accuracy": zero_shot.get("accuracy"),
            "zero_shot": zero_shot,
            "valid_image_to_text_recall@1":
                self.kept_evaluation(result)["valid_image_to_text_recall@1"],
            "pairs": {split: len(self.splits[split]) for split in SPLITS},
            "distinct_captions": {split: len(set(self.splits[split].captions))
                                  for split in SPLITS},
            "captions_truncated": self.truncated,
            "vocab_size": self.tokenizer.vocab_size, "text_max_len": self.text_len,
            "steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_pairs_per_second": round(result.tokens_per_second, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "preset": s.preset, "precision": precision, "evaluations": result.evaluations,
        }
