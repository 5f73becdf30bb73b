"""Train a BERT-style encoder to classify texts, from a folder of TSV files: from scratch, or
fine-tuning a pre-trained encoder (`init`, see `encoder_init`).

DIR/train.tsv, DIR/valid.tsv (and optional DIR/test.tsv), one `text<TAB>label` per line ->
a BPE learnt on train.tsv (`tokenizers`), or the `init` folder's own tokenizer.json ->
[CLS] (`<s>` in our BPE; the position the pooler reads) + text + [SEP] (`</s>`), truncated to
`max_len` tokens (capped at the model's max_seq_len; metrics.json counts the truncated texts)
-> Trainer (AdamW, warmup + cosine decay, clipping, checkpoints, exact resume) -> accuracy ->
a folder `transformers` loads as BertForSequenceClassification (plus tokenizer.json and
labels.json) and metrics.json.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as HFTokenizer
from torch import Tensor, nn

from attnlab.data.batching import ShuffledRows
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
from attnlab.tasks.encoder_init import SpecialIds, init_classifier, special_ids
from attnlab.tokenizers import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class ClassifySettings:
    """Everything `attnlab train classify` takes; saved as `train_settings.json`."""

    data: str = ""
    out: str = "runs/classify"
    init: str | None = None  # pre-trained BERT folder to fine-tune; None: train from scratch
    preset: str = "bert-tiny"  # (from scratch only)
    vocab_size: int = 2000  # (from scratch only)
    max_len: int = 128  # tokens per text with [CLS] and [SEP]; longer texts are truncated
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
        if self.max_len < 3:
            raise ValueError(f"max_len must leave room for [CLS], a token and [SEP] (>= 3), "
                             f"got {self.max_len}")
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


class ShuffledBatches(ShuffledRows):
    """Epoch-wise shuffled, padded batches of (token ids, label) examples."""

    def __init__(self, examples: list[tuple[list[int], int]], batch_size: int, pad_id: int,
                 seed: int) -> None:
        super().__init__(len(examples), batch_size, seed)
        self.examples, self.pad_id = examples, pad_id

    def next(self) -> dict[str, Tensor]:
        return collate([self.examples[i] for i in self.next_rows().tolist()], self.pad_id)


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, Tensor]:
    longest = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, (ids, _) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention_mask[row, :len(ids)] = 1  # by length: a real token may share the pad id
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.tensor([label for _, label in examples])}


def encode(tokenizer: HFTokenizer, specials: SpecialIds, rows: list[tuple[str, str]],
           labels: list[str], max_len: int, where: str) -> tuple[list[tuple[list[int], int]], int]:
    """[CLS] text [SEP] ids (at most `max_len`) with label indices, and how many texts were
    truncated."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({label for _, label in rows} - set(index))
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} do not occur in train.tsv")
    ids = [e.ids for e in tokenizer.encode_batch([text for text, _ in rows],
                                                 add_special_tokens=False)]
    examples = [([specials.cls, *x[:max_len - 2], specials.sep], index[label])
                for x, (_, label) in zip(ids, rows, strict=True)]
    return examples, sum(len(x) > max_len - 2 for x in ids)


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


def new_run(settings: ClassifySettings, labels: list[str], texts: list[str],
            out: Path) -> tuple[nn.Module, HFTokenizer]:
    """The model and tokenizer a run starts with, saved in `out`: the `init` encoder with a
    fresh head and its tokenizer, or a new BPE and a `preset` BERT."""
    if settings.init:
        model, tokenizer = init_classifier(settings.init, len(labels))
    else:
        bpe = Tokenizer.train_bpe(texts, vocab_size=settings.vocab_size)
        tokenizer = bpe.backend
        model = build_model(settings.preset, vocab_size=bpe.vocab_size,
                            num_labels=len(labels), pad_token_id=bpe.pad_id,
                            max_seq_len=max(settings.max_len, 16))
    start_run(out, model, settings, lambda path: tokenizer.save(str(path)),
              extra={"labels.json": labels})
    return model, tokenizer


def capped_max_len(settings: ClassifySettings, model: nn.Module) -> int:
    """`max_len`, or the model's max_seq_len where that is shorter (with a warning)."""
    if settings.max_len <= model.config.max_seq_len:
        return settings.max_len
    log.warning("--max-len %d exceeds the model's max_seq_len %d: texts are truncated to %d "
                "tokens", settings.max_len, model.config.max_seq_len, model.config.max_seq_len)
    return model.config.max_seq_len


def train_classifier(settings: ClassifySettings, resume: bool = False) -> dict[str, Any]:
    data, out = Path(settings.data), Path(settings.out)
    train_rows = read_tsv(data / "train.tsv")
    valid_rows = read_tsv(data / "valid.tsv")
    test_rows = read_tsv(data / "test.tsv") if (data / "test.tsv").is_file() else None
    torch.manual_seed(settings.seed)
    if resume:
        check_resumable(out, "labels.json")
        labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
        tokenizer = HFTokenizer.from_file(str(out / "tokenizer.json"))
        model = from_pretrained(out)
    else:
        labels = sorted({label for _, label in train_rows})
        if len(labels) < 2:
            raise DataError(f"{data / 'train.tsv'}: need at least 2 labels, got {labels}")
        model, tokenizer = new_run(settings, labels, [text for text, _ in train_rows], out)
    specials = special_ids(tokenizer, str(out / "tokenizer.json"))
    max_len = capped_max_len(settings, model)

    def encoded(rows: list[tuple[str, str]], split: str) -> list[tuple[list[int], int]]:
        examples, truncated[split] = encode(tokenizer, specials, rows, labels, max_len,
                                            str(data / f"{split}.tsv"))
        return examples

    truncated: dict[str, int] = {}
    train, valid = encoded(train_rows, "train"), encoded(valid_rows, "valid")
    batches = ShuffledBatches(train, settings.batch_size, specials.pad, settings.seed)
    result = fit(model, settings, batches, loss_fn,
                 lambda m, step: {"valid_accuracy": accuracy(m, valid, specials.pad)},
                 out, resume)
    if result.stopped_by == "interrupt":
        return {"stopped_by": "interrupt", "step": result.step}
    metrics: dict[str, Any] = {
        "valid_accuracy": result.evaluations[-1]["valid_accuracy"], "labels": labels,
        "steps": result.step, "stopped_by": result.stopped_by,
        "train_seconds": round(result.train_seconds, 1),
        "params": model.num_parameters(),
        **({"init": settings.init} if settings.init else {"preset": settings.preset}),
        "max_len": max_len, "evaluations": result.evaluations,
    }
    if test_rows is not None:
        metrics["test_accuracy"] = accuracy(model, encoded(test_rows, "test"), specials.pad)
    metrics["truncated_texts"] = truncated
    write_metrics(out, metrics)
    return metrics
