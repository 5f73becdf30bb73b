"""Pre-train a BERT-style encoder with masked language modelling on a text file (Devlin et al.
2019, sec. 3.1): 15% of the positions are chosen; of those 80% become [MASK], 10% a random
token and 10% stay, and the model predicts the original token at every chosen position.

text file -> byte-level BPE with [PAD] [MASK] [CLS] [SEP] -> one stream, the last
`valid_fraction` held out -> [CLS] + random windows -> Trainer -> masked-token accuracy and
loss on the held-out stream -> a folder `transformers` loads as BertForMaskedLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from attnlab.interop.hf_folder import from_pretrained
from attnlab.models import build_model, list_models
from attnlab.models.common import check_positive_ints
from attnlab.tasks.common import (
    check_resumable,
    fit,
    read_text,
    start_run,
    train_byte_bpe,
    write_metrics,
)
from attnlab.tasks.language_model import WindowBatches

SPECIALS = ["[PAD]", "[MASK]", "[CLS]", "[SEP]"]  # ids 0..3
PAD, MASK, CLS, SEP = range(4)


@dataclass
class MLMSettings:
    """Everything `attnlab train mlm` takes; saved as `train_settings.json`."""

    text: str = ""
    out: str = "runs/mlm"
    preset: str = "bert-tiny"
    vocab_size: int = 2000
    block_size: int = 128  # tokens per window, [CLS] included
    batch_size: int = 16
    max_steps: int = 2000
    time_budget: float | None = None
    lr: float = 1e-3
    warmup_steps: int = 100
    mask_prob: float = 0.15
    weight_decay: float = 0.01
    valid_fraction: float = 0.05
    eval_every: int = 0
    save_every: int = 500
    keep_last: int = 3
    seed: int = 1

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "block_size", "batch_size", "max_steps",
                                   "warmup_steps", "keep_last"))
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")
        if self.preset not in list_models("bert"):
            raise ValueError(f"preset must be an encoder, one of {list_models('bert')}, "
                             f"got {self.preset!r}")


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


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    return (model(batch["input_ids"], labels=batch["labels"]).loss,
            int((batch["labels"] != -100).sum()))


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[dict[str, Tensor]]) -> dict[str, float]:
    """Masked-token loss and accuracy on fixed held-out batches."""
    model.eval()
    total = right = 0
    loss = 0.0
    for batch in batches:
        out = model(batch["input_ids"], labels=batch["labels"])
        chosen = batch["labels"] != -100
        n = int(chosen.sum())
        loss += out.loss.item() * n
        right += int((out.logits.argmax(-1)[chosen] == batch["labels"][chosen]).sum())
        total += n
    return {"valid_loss": loss / max(total, 1), "valid_masked_accuracy": right / max(total, 1)}


def train_masked_lm(settings: MLMSettings, resume: bool = False) -> dict[str, Any]:
    out = Path(settings.out)
    lines = read_text(settings.text)
    torch.manual_seed(settings.seed)
    if resume:
        check_resumable(out, "tokenizer.json")
        tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
        model = from_pretrained(out)
    else:
        tokenizer = train_byte_bpe(lines, settings.vocab_size, SPECIALS)
        model = build_model(settings.preset, vocab_size=tokenizer.get_vocab_size(),
                            pad_token_id=PAD, max_seq_len=max(settings.block_size, 16))
        start_run(out, model, settings, lambda path: tokenizer.save(str(path)))
    ids: list[int] = []
    for encoding in tokenizer.encode_batch([ln + "\n" for ln in lines]):
        ids.extend(encoding.ids)
    stream = torch.tensor(ids, dtype=torch.long)
    split = int(stream.numel() * (1 - settings.valid_fraction))
    vocab = tokenizer.get_vocab_size()
    batches = MaskedWindows(stream[:split], settings.block_size, settings.batch_size,
                            settings.seed, vocab, settings.mask_prob)
    held_out = MaskedWindows(stream[split:], min(settings.block_size, stream.numel() - split),
                             8, settings.seed + 1, vocab, settings.mask_prob)
    valid = [held_out.next() for _ in range(4)]
    result = fit(model, settings, batches, loss_fn, lambda m, step: evaluate(m, valid), out,
                 resume)
    if result.stopped_by == "interrupt":
        return {"stopped_by": "interrupt", "step": result.step}
    metrics = {**result.evaluations[-1], "steps": result.step, "stopped_by": result.stopped_by,
               "train_seconds": round(result.train_seconds, 1),
               "params": model.num_parameters(), "preset": settings.preset,
               "evaluations": result.evaluations}
    metrics.pop("step", None)
    write_metrics(out, metrics)
    return metrics
