"""Train a BERT-style encoder to classify texts, from a folder of TSV files.

DIR/train.tsv, DIR/valid.tsv (and optional DIR/test.tsv), one `text<TAB>label` per line ->
joint BPE (`tokenizers`) -> `<s>` (the [CLS] position the pooler reads) + text + `</s>` ->
Trainer (AdamW, warmup + cosine decay, clipping, checkpoints, exact resume) -> accuracy ->
a folder `transformers` loads as BertForSequenceClassification (plus tokenizer.json and
labels.json) and metrics.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.parallel import DataError, read_lines
from attnlab.interop.hf_folder import from_pretrained
from attnlab.models import build_model, list_models
from attnlab.models.common import check_positive_ints
from attnlab.tasks.common import (
    check_resumable,
    fit,
    start_run,
    write_metrics,
)
from attnlab.tokenizers import Tokenizer


@dataclass
class ClassifySettings:
    """Everything `attnlab train classify` takes; saved as `train_settings.json`."""

    data: str = ""
    out: str = "runs/classify"
    preset: str = "bert-tiny"
    vocab_size: int = 2000
    max_len: int = 128  # subwords per text; longer texts are truncated
    batch_size: int = 32
    max_steps: int = 500
    time_budget: float | None = None
    lr: float = 5e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    eval_every: int = 0
    save_every: int = 200
    keep_last: int = 2
    seed: int = 1

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "max_len", "batch_size", "max_steps",
                                   "warmup_steps", "keep_last"))
        if self.preset not in list_models("bert"):
            raise ValueError(f"preset must be an encoder, one of {list_models('bert')}, "
                             f"got {self.preset!r}")


def read_tsv(path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs; a line without a tab, an empty text or label names file:line."""
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        text, tab, label = line.rpartition("\t")
        if not tab or not text.strip() or not label.strip():
            raise DataError(f"{path}:{number}: expected `text<TAB>label`, got {line[:60]!r}")
        rows.append((text, label.strip()))
    if not rows:
        raise DataError(f"{path}: no `text<TAB>label` lines")
    return rows


class ShuffledBatches:
    """Epoch-wise shuffled batches; batch i is a pure function of (seed, i), so the state to
    checkpoint is one counter."""

    def __init__(self, examples: list[tuple[list[int], int]], batch_size: int, pad_id: int,
                 seed: int) -> None:
        self.examples, self.batch_size, self.pad_id, self.seed = (
            examples, batch_size, pad_id, seed)
        self.per_epoch = max(1, len(examples) // batch_size)
        self.index = 0

    def next(self) -> dict[str, Tensor]:
        epoch, position = divmod(self.index, self.per_epoch)
        self.index += 1
        order = torch.randperm(len(self.examples),
                               generator=torch.Generator().manual_seed(self.seed + epoch))
        chosen = order[position * self.batch_size:(position + 1) * self.batch_size].tolist()
        return collate([self.examples[i] for i in chosen], self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, Tensor]:
    longest = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.tensor(ids)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long(),
            "labels": torch.tensor([label for _, label in examples])}


def encode(tokenizer: Tokenizer, rows: list[tuple[str, str]], labels: list[str],
           max_len: int, where: str) -> list[tuple[list[int], int]]:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({label for _, label in rows} - set(index))
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} do not occur in train.tsv")
    ids = tokenizer.encode_batch([text for text, _ in rows])
    return [([tokenizer.bos_id, *x[:max_len - 2], tokenizer.eos_id], index[label])
            for x, (_, label) in zip(ids, rows, strict=True)]


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=batch["labels"])
    return out.loss, int(batch["labels"].numel())


@torch.no_grad()
def accuracy(model: nn.Module, examples: list[tuple[list[int], int]], pad_id: int) -> float:
    model.eval()
    right = 0
    for start in range(0, len(examples), 64):
        batch = collate(examples[start:start + 64], pad_id)
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        right += int((logits.argmax(-1) == batch["labels"]).sum())
    return right / len(examples)


def train_classifier(settings: ClassifySettings, resume: bool = False) -> dict[str, Any]:
    data, out = Path(settings.data), Path(settings.out)
    train_rows = read_tsv(data / "train.tsv")
    valid_rows = read_tsv(data / "valid.tsv")
    test_rows = read_tsv(data / "test.tsv") if (data / "test.tsv").is_file() else None
    torch.manual_seed(settings.seed)
    if resume:
        check_resumable(out, "labels.json")
        labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.load(out / "tokenizer.json")
        model = from_pretrained(out)
    else:
        labels = sorted({label for _, label in train_rows})
        if len(labels) < 2:
            raise DataError(f"{data / 'train.tsv'}: need at least 2 labels, got {labels}")
        tokenizer = Tokenizer.train_bpe((text for text, _ in train_rows),
                                        vocab_size=settings.vocab_size)
        model = build_model(settings.preset, vocab_size=tokenizer.vocab_size,
                            num_labels=len(labels), pad_token_id=tokenizer.pad_id,
                            max_seq_len=max(settings.max_len, 16))
        start_run(out, model, settings, tokenizer.save, extra={"labels.json": labels})
    train = encode(tokenizer, train_rows, labels, settings.max_len, str(data / "train.tsv"))
    valid = encode(tokenizer, valid_rows, labels, settings.max_len, str(data / "valid.tsv"))
    batches = ShuffledBatches(train, settings.batch_size, tokenizer.pad_id, settings.seed)
    result = fit(model, settings, batches, loss_fn,
                 lambda m, step: {"valid_accuracy": accuracy(m, valid, tokenizer.pad_id)},
                 out, resume)
    if result.stopped_by == "interrupt":
        return {"stopped_by": "interrupt", "step": result.step}
    metrics: dict[str, Any] = {
        "valid_accuracy": result.evaluations[-1]["valid_accuracy"], "labels": labels,
        "steps": result.step, "stopped_by": result.stopped_by,
        "train_seconds": round(result.train_seconds, 1),
        "params": model.num_parameters(), "preset": settings.preset,
        "evaluations": result.evaluations,
    }
    if test_rows is not None:
        test = encode(tokenizer, test_rows, labels, settings.max_len, str(data / "test.tsv"))
        metrics["test_accuracy"] = accuracy(model, test, tokenizer.pad_id)
    write_metrics(out, metrics)
    return metrics
