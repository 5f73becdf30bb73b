"""What the image and audio classification tasks share on the run routine: examples held as one
tensor per split, seeded per-batch augmentation (so a resumed run sees the very batches it would
have seen), label-smoothed cross-entropy (Szegedy et al. 2016), AdamW with warmup and cosine
decay to the planned end of the run, accuracy, and the final report: metrics.json with
per-class accuracy and a confusion-matrix PNG.

A task subclasses `TensorClassificationTask` and supplies `read_splits` (the data as
`Examples`), `build(out)` (a new model and its preprocessor file), `augment` and the name of
the model's input (`pixel_values` for ViT, `input_values` for AST).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.data.batching import ShuffledRows
from attnlab.data.checks import MIN_VALID_EXAMPLES, require_splits, warn_small_split
from attnlab.errors import DataError
from attnlab.models.auto import from_pretrained
from attnlab.tasks.common import PlannedSettings, PlannedTask, planned
from attnlab.training.run import model_device, run_model_folder
from attnlab.training.settings import (
    check_range,
    setting,
)
from attnlab.training.trainer import TrainResult
from attnlab.viz.confusion import plot_confusion

SPLITS = ("train", "valid", "test")


@dataclass
class TensorClassifySettings(PlannedSettings):
    """The settings every tensor-input classification task shares (`train image`, `train
    audio`); each task adds its data and model fields."""

    weight_decay: float = planned("weight_decay", 0.05, "AdamW weight decay (not on biases, "
                                                        "norms, tokens and position tables)")
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy (Szegedy et "
                                          "al. 2016)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "label_smoothing", 0.0, 1.0)


@dataclass
class Examples:
    """One split: `inputs` (N, ...) as the task stores them (uint8 images, float features),
    `labels` (N,), and where each example came from (for messages)."""

    inputs: Tensor
    labels: Tensor
    sources: list[str]


class AugmentedBatches(ShuffledRows):
    """Shuffled batches of a split, each augmented with a generator seeded by (seed, batch
    index): batch i is a pure function of them, so exact resume stays one counter."""

    def __init__(self, train: Examples, batch_size: int, seed: int,
                 make_batch: Callable[[Tensor, Tensor, torch.Generator], dict[str, Tensor]]
                 ) -> None:
        super().__init__(len(train.labels), batch_size, seed)
        self.train, self.make_batch = train, make_batch

    def next(self) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index)
        rows = self.next_rows()
        return self.make_batch(self.train.inputs[rows], self.train.labels[rows], generator)


class TensorClassificationTask(PlannedTask):
    """Classification of fixed-size tensors on the run routine; subclasses say how to read,
    prepare and augment them."""

    best_metric = ("valid_accuracy", "max")
    input_name = "pixel_values"
    decay_token_tables = False  # the ViT / DeiT recipe
    settings: TensorClassifySettings
    splits: dict[str, Examples]
    classes: list[str]

    # -- what a task supplies ------------------------------------------------------------------
    def read_splits(self) -> tuple[dict[str, Examples], list[str]]:
        """{"train", "valid", "test"} -> Examples, and the class names."""
        raise NotImplementedError

    def build(self, out: Path) -> nn.Module:
        """A new model for `self.classes`, with its preprocessing file written in `out`."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, out: Path) -> None:
        """Turn `self.splits` into model inputs (called once the model exists)."""

    def to_model_input(self, inputs: Tensor) -> Tensor:
        """A stored batch (inputs as held in Examples) -> the model's float input."""
        return inputs

    def augment(self, inputs: Tensor, generator: torch.Generator) -> Tensor:
        """Training-time augmentation of a batch as stored (before `to_model_input`)."""
        return inputs

    # -- the run routine's hooks ---------------------------------------------------------------
    def load_data(self) -> None:
        self.splits, self.classes = self.read_splits()
        if len(self.classes) < 2:
            raise DataError(f"{self.settings.data}: need at least 2 classes, got "
                            f"{self.classes}")
        require_splits(self.settings.data, {k: len(v.labels) for k, v in self.splits.items()})
        warn_small_split(f"{self.settings.data} (valid)", len(self.splits["valid"].labels),
                         "examples", MIN_VALID_EXAMPLES, "add validation examples")

    def new_model(self, out: Path) -> nn.Module:
        model = self.build(out)
        self.prepare(model, out)
        return model

    def restore(self, out: Path) -> nn.Module:
        model = from_pretrained(run_model_folder(out))
        self.prepare(model, out)
        return model

    def make_batch(self, inputs: Tensor, labels: Tensor,
                   generator: torch.Generator) -> dict[str, Tensor]:
        return {self.input_name: self.to_model_input(self.augment(inputs, generator)),
                "labels": labels}

    def batches(self, model: nn.Module) -> AugmentedBatches:
        s = self.settings
        return AugmentedBatches(self.splits["train"], s.batch_size, s.seed, self.make_batch)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        logits = model(batch[self.input_name]).logits  # (B, classes)
        loss = F.cross_entropy(logits.float(), batch["labels"],
                               label_smoothing=self.settings.label_smoothing)
        return loss, int(batch["labels"].numel())

    # -- measuring -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, examples: Examples) -> Tensor:
        """Predicted class of every example (N,)."""
        model.eval()
        device = model_device(model)
        predictions = []
        size = self.settings.eval_batch_size
        for start in range(0, len(examples.labels), size):
            x = self.to_model_input(examples.inputs[start:start + size]).to(device)
            predictions.append(model(x).logits.argmax(-1).cpu())
        return torch.cat(predictions)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        valid = self.splits["valid"]
        right = (self.predict(model, valid) == valid.labels).float().mean()
        return {"valid_accuracy": round(float(right), 5)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        test = self.splits["test"]
        predicted = self.predict(model, test)
        n = len(self.classes)
        confusion = torch.zeros(n, n, dtype=torch.long)  # rows: true class, columns: predicted
        confusion.index_put_((test.labels, predicted), torch.ones_like(predicted),
                             accumulate=True)
        per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist()
        plot_confusion(confusion, self.classes, Path(s.out) / "confusion_matrix.png",
                       title=f"{self.name}: test accuracy "
                             f"{float((predicted == test.labels).float().mean()):.1%}")
        return {
            "test_accuracy": round(float((predicted == test.labels).float().mean()), 5),
            "valid_accuracy": self.kept_evaluation(result)["valid_accuracy"],
            "per_class_test_accuracy": {c: round(a, 4) for c, a in zip(self.classes, per_class,
                                                                        strict=True)},
            "confusion_matrix": confusion.tolist(),
            "classes": self.classes,
            "examples": {split: len(self.splits[split].labels) for split in SPLITS},
            "steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_examples_per_second": round(result.tokens_per_second, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "preset": s.preset, "precision": precision, "evaluations": result.evaluations,
        }
