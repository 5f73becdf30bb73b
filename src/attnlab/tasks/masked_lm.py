"""Pre-train a BERT-style encoder with masked language modelling on a text file (Devlin et al.
2019, sec. 3.1): 15% of the positions are chosen; of those 80% become [MASK], 10% a random
token and 10% stay, and the model predicts the original token at every chosen position.

text file -> byte-level BPE with [PAD] [MASK] [CLS] [SEP] -> one stream, the last
`valid_fraction` held out -> [CLS] + random windows -> the run routine -> masked-token accuracy and
loss on the held-out stream -> a folder `transformers` loads as BertForMaskedLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.checks import split_held_out
from attnlab.errors import DataError
from attnlab.models import build_model, list_models
from attnlab.tasks.common import FamilyTask, read_text
from attnlab.tasks.language_model import WindowBatches
from attnlab.tokenizers import Tokenizer
from attnlab.training.run import model_device, run_summary, run_task
from attnlab.training.settings import (
    RunSettings,
    SettingError,
    check_positive_ints,
    check_positive_numbers,
    check_range,
    setting,
)
from attnlab.training.trainer import TrainResult

SPECIALS = ["[PAD]", "[MASK]", "[CLS]", "[SEP]"]  # ids 0..3
PAD, MASK, CLS, SEP = range(4)


def encoder_presets() -> list[str]:
    return list_models("bert")


@dataclass
class MLMSettings(RunSettings):
    """Everything `attnlab train mlm` takes; saved as `train_settings.json`."""

    text: str = setting("", "UTF-8 text file", data=True)
    out: str = setting("runs/mlm", "output folder (model, checkpoints, metrics)")
    preset: str = setting("bert-tiny", "model size", choices=encoder_presets)
    vocab_size: int = setting(2000, "tokenizer vocabulary size")
    block_size: int = setting(128, "tokens per training window, [CLS] included")
    batch_size: int = setting(16, "sequences per batch")
    max_steps: int = setting(2000, "optimizer steps")
    lr: float = setting(1e-3, "peak AdamW learning rate")
    warmup_steps: int = setting(100, "linear warmup steps, then cosine decay to lr/10")
    mask_prob: float = setting(0.15, "share of the positions chosen for prediction")
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and norms)")
    valid_fraction: float = setting(0.05, "share of the text's tokens held out (the end)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("vocab_size", "block_size", "batch_size", "warmup_steps"))
        check_range(self, "mask_prob", 0.0, 1.0, low_open=True)
        if self.block_size < 2:
            raise SettingError("block_size", f"block_size must hold [CLS] and a token (>= 2), "
                                             f"got {self.block_size}")
        check_range(self, "valid_fraction", 0.0, 0.5, low_open=True)
        check_positive_numbers(self, ("lr",))
        if self.preset not in encoder_presets():
            raise SettingError("preset", f"preset must be an encoder, one of "
                                         f"{encoder_presets()}, got {self.preset!r}")


def mask_tokens(ids: Tensor, vocab_size: int, mask_prob: float,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT's 80/10/10 corruption of (B, T) ids ([CLS] at position 0 is never chosen) ->
    (inputs, labels with -100 at the positions not chosen)."""
    chosen = torch.rand(ids.shape, generator=generator) < mask_prob  # (B, T)
    chosen[:, 0] = False
    labels = ids.masked_fill(~chosen, -100)
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.masked_fill(chosen & (roll < 0.8), MASK)
    random_ids = torch.randint(len(SPECIALS), vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs = torch.where(swap, random_ids, inputs)
    return inputs, labels


class MaskedWindows(WindowBatches):
    """[CLS] + a random window of the stream, corrupted by `mask_tokens`; batch i depends only
    on (seed, i)."""

    def __init__(self, stream: Tensor, block_size: int, batch_size: int, seed: int,
                 vocab_size: int, mask_prob: float) -> None:
        super().__init__(stream, block_size - 2, batch_size, seed)
        self.vocab_size, self.mask_prob = vocab_size, mask_prob

    def next(self) -> dict[str, Tensor]:
        index = self.index
        windows = super().next()["input_ids"]  # (B, block_size - 1)
        ids = torch.cat([torch.full((windows.size(0), 1), CLS), windows], dim=1)
        generator = torch.Generator().manual_seed(self.seed * 7_919 + index + 1)
        inputs, labels = mask_tokens(ids, self.vocab_size, self.mask_prob, generator)
        return {"input_ids": inputs, "labels": labels}


def freeze_pooler(model: nn.Module) -> nn.Module:
    """The pooler is off the masked-LM loss's path (transformers' BertForMaskedLM has none), so
    it never gets a gradient: marked frozen, DDP does not wait for one (its weights stay as
    initialised, as they would anyway; fine-tuning with `train classify --init` trains it)."""
    model.pooler.requires_grad_(False)
    return model


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    return (model(batch["input_ids"], labels=batch["labels"]).loss,
            int((batch["labels"] != -100).sum()))


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[dict[str, Tensor]]) -> dict[str, float]:
    """Masked-token loss and accuracy on fixed held-out batches (which must choose at least
    one position: a DataError otherwise, never a loss of 0)."""
    if not any(bool((batch["labels"] != -100).any()) for batch in batches):
        raise DataError("the held-out batches choose no position to predict; use more text, a "
                        "larger --valid-fraction or a larger --mask-prob")
    model.eval()
    device = model_device(model)
    total = right = 0
    loss = 0.0
    for batch in batches:
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        out = model(ids, labels=labels)
        chosen = labels != -100
        n = int(chosen.sum())
        loss += out.loss.item() * n
        right += int((out.logits.argmax(-1)[chosen] == labels[chosen]).sum())
        total += n
    return {"valid_loss": loss / total, "valid_masked_accuracy": right / total}


class MaskedLMTask(FamilyTask):
    name = "mlm"
    best_metric = ("valid_loss", "min")
    settings: MLMSettings

    def load_data(self) -> None:
        if not self.settings.text:
            raise SettingError("text", "text must name a UTF-8 text file, got ''")
        self.lines = read_text(self.settings.text)

    def split_stream(self) -> None:
        """The token stream split into train and held out (`data.checks.split_held_out`) and
        the fixed held-out batches, checked to choose some position, before the run routine
        writes anything (new run) or trains (resume)."""
        s = self.settings
        ids: list[int] = []
        for line_ids in self.tokenizer.encode_batch([ln + "\n" for ln in self.lines]):
            ids.extend(line_ids)
        stream = torch.tensor(ids, dtype=torch.long)  # (N,)
        # A training row is [CLS] + block_size - 1 tokens drawn from at least block_size.
        self.train, held = split_held_out(stream, s.valid_fraction, s.text,
                                          block_size=s.block_size, train_needed=s.block_size)
        held_out = MaskedWindows(held, min(s.block_size, held.numel()), 8, s.seed + 1,
                                 self.tokenizer.vocab_size, s.mask_prob)
        self.valid = [held_out.next() for _ in range(4)]
        chosen = sum(int((batch["labels"] != -100).sum()) for batch in self.valid)
        if not chosen:
            raise DataError(
                f"{s.text}: --mask-prob {s.mask_prob} chose none of the {held.numel()} "
                f"held-out tokens to predict; use more text, a larger --valid-fraction or a "
                f"larger --mask-prob")

    def prepare_new_run(self) -> None:
        """A new run's tokenizer, its checked streams and held-out batches; writes nothing, so
        the run routine may call it before it creates or clears the run folder."""
        self.tokenizer = Tokenizer.train_byte_level(self.lines, self.settings.vocab_size,
                                                    SPECIALS)
        self.split_stream()

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        if self.tokenizer is None:  # not yet prepared by the run routine
            self.prepare_new_run()
        model = build_model(s.preset, **{"vocab_size": self.tokenizer.vocab_size,
                                         "pad_token_id": PAD,
                                         "max_seq_len": max(s.block_size, 16),
                                         **s.model_overrides})
        return freeze_pooler(model)

    def restore(self, out: Path) -> nn.Module:
        model = super().restore(out)
        self.split_stream()
        return freeze_pooler(model)

    def batches(self, model: nn.Module) -> MaskedWindows:
        s = self.settings
        return MaskedWindows(self.train, s.block_size, s.batch_size, s.seed,
                             self.tokenizer.vocab_size, s.mask_prob)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        return loss_fn(model, batch)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        return evaluate(model, self.valid)

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        summary = run_summary(result)
        metrics = {**self.kept_evaluation(result), "steps": result.step,
                   "stopped_by": result.stopped_by, "train_seconds": summary["train_seconds"],
                   "params": model.num_parameters(), "preset": self.settings.preset,
                   "precision": precision, "evaluations": result.evaluations}
        metrics.pop("step", None)
        return metrics


def train_masked_lm(settings: MLMSettings, resume: bool = False) -> dict[str, Any]:
    return run_task(MaskedLMTask(settings), resume).metrics
