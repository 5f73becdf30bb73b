"""Train a BERT-style encoder to classify texts, from a folder of TSV files: from scratch, or
fine-tuning a pre-trained encoder (`init`, see `encoder_init`).

DIR/train.tsv, DIR/valid.tsv (and optional DIR/test.tsv), one `text<TAB>label` per line ->
a BPE learnt on train.tsv (`tokenizers`), or the `init` folder's own tokenizer.json ->
[CLS] (`<s>` in our BPE; the position the pooler reads) + text + [SEP] (`</s>`), truncated to
`max_len` tokens (capped at the model's max_seq_len; metrics.json counts the truncated texts)
-> the run routine (AdamW, warmup + cosine decay, clipping, checkpoints, exact resume) ->
accuracy ->
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
from torch import Tensor, nn

from attnlab.data.batching import ShuffledRows
from attnlab.data.checks import MIN_VALID_EXAMPLES, require_content, warn_small_split
from attnlab.data.parallel import read_lines
from attnlab.errors import DataError, MissingFileError
from attnlab.models import build_model, list_models
from attnlab.tasks.common import FamilyTask
from attnlab.tasks.encoder_init import SpecialIds, init_classifier, special_ids
from attnlab.tokenizers import Tokenizer
from attnlab.training.run import model_device, run_task, write_json
from attnlab.training.settings import (
    RunSettings,
    SettingError,
    check_positive_ints,
    check_positive_numbers,
    setting,
)
from attnlab.training.trainer import TrainResult

log = logging.getLogger(__name__)


def encoder_presets() -> list[str]:
    return list_models("bert")


@dataclass
class ClassifySettings(RunSettings):
    """Everything `attnlab train classify` takes; saved as `train_settings.json`."""

    data: str = setting("", "folder with train.tsv and valid.tsv (optional test.tsv), one "
                            "`text<TAB>label` a line", data=True)
    out: str = setting("runs/classify", "output folder (model, checkpoints, metrics)")
    init: str | None = setting(None, "fine-tune the BERT in this folder (written by `attnlab "
                                     "train mlm`, or a transformers BertForMaskedLM / BertModel "
                                     "folder with tokenizer.json); none: train from scratch",
                             data=True)
    preset: str = setting("bert-tiny", "model size when training from scratch (ignored with "
                                       "--init)", choices=encoder_presets)
    vocab_size: int = setting(2000, "BPE vocabulary size when training from scratch (ignored "
                                    "with --init)")
    max_len: int = setting(128, "tokens per text with [CLS] and [SEP]; longer texts are "
                                "truncated, and it is capped at the model's maximum length "
                                "(with a warning)")
    batch_size: int = setting(32, "sequences per batch")
    max_steps: int = setting(500, "optimizer steps")
    lr: float = setting(5e-4, "peak AdamW learning rate")
    warmup_steps: int = setting(50, "linear warmup steps, then cosine decay to lr/10")
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and norms)")
    save_every: int = setting(200, "checkpoint every N steps (0: only at the end)")
    keep_last: int = setting(2, "checkpoints kept")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("vocab_size", "max_len", "batch_size", "warmup_steps"))
        check_positive_numbers(self, ("lr",))
        if self.max_len < 3:
            raise SettingError("max_len", f"max_len must leave room for [CLS], a token and "
                                          f"[SEP] (>= 3), got {self.max_len}")
        if self.preset not in encoder_presets():
            raise SettingError("preset", f"preset must be an encoder, one of "
                                         f"{encoder_presets()}, got {self.preset!r}")
        if self.init and self.model_overrides:
            raise SettingError("model_overrides", "model config overrides (--set) apply to a "
                                                  "model trained from scratch, not with --init; "
                                                  f"got {self.model_overrides}")


def read_tsv(path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs; a line without a tab, an empty text or label names file:line."""
    lines = read_lines(path)
    require_content(path, lines, "put one `text<TAB>label` example per line in it")
    rows = []
    for number, line in enumerate(lines, start=1):
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


def check_labels(rows: list[tuple[str, str]], labels: list[str], where: str) -> None:
    """DataError naming the labels of `rows` that are not in `labels` (those of train.tsv)."""
    unknown = sorted({label for _, label in rows} - set(labels))
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} do not occur in train.tsv (its labels: "
                        f"{labels[:10]}); fix or drop those rows, or add examples of them to "
                        f"train.tsv")


def encode(tokenizer: Tokenizer, specials: SpecialIds, rows: list[tuple[str, str]],
           labels: list[str], max_len: int, where: str) -> tuple[list[tuple[list[int], int]], int]:
    """[CLS] text [SEP] ids (at most `max_len`) with label indices, and how many texts were
    truncated."""
    check_labels(rows, labels, where)
    index = {label: i for i, label in enumerate(labels)}
    ids = tokenizer.encode_batch([text for text, _ in rows])
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
    device = model_device(model)
    right = 0
    for start in range(0, len(examples), 64):
        batch = collate(examples[start:start + 64], pad_id)
        logits = model(batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        right += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
    return right / len(examples)


def capped_max_len(settings: ClassifySettings, model: nn.Module) -> int:
    """`max_len`, or the model's max_seq_len where that is shorter (with a warning)."""
    if settings.max_len <= model.config.max_seq_len:
        return settings.max_len
    log.warning("--max-len %d exceeds the model's max_seq_len %d: texts are truncated to %d "
                "tokens", settings.max_len, model.config.max_seq_len, model.config.max_seq_len)
    return model.config.max_seq_len


class ClassificationTask(FamilyTask):
    name = "classify"
    best_metric = ("valid_accuracy", "max")
    settings: ClassifySettings

    def load_data(self) -> None:
        s = self.settings
        if not s.data:
            raise SettingError("data", "data must name a folder with train.tsv and valid.tsv, "
                                       "got ''")
        data = Path(s.data)
        self.train_rows = read_tsv(data / "train.tsv")
        self.valid_rows = read_tsv(data / "valid.tsv")
        self.test_rows = read_tsv(data / "test.tsv") if (data / "test.tsv").is_file() else None
        self.labels = sorted({label for _, label in self.train_rows})
        if len(self.labels) < 2:
            raise DataError(f"{data / 'train.tsv'}: need at least 2 labels, got {self.labels}")
        # Before anything is written: a label train.tsv lacks could never be predicted.
        check_labels(self.valid_rows, self.labels, str(data / "valid.tsv"))
        if self.test_rows is not None:
            check_labels(self.test_rows, self.labels, str(data / "test.tsv"))
        warn_small_split(str(data / "valid.tsv"), len(self.valid_rows), "rows",
                         MIN_VALID_EXAMPLES, "add validation examples (a few hundred or more)")

    def new_model(self, out: Path) -> nn.Module:
        """The `init` encoder with a fresh head and its tokenizer, or a new BPE and a `preset`
        BERT; labels.json is saved in `out` (the routine saves the tokenizer)."""
        s = self.settings
        if s.init:
            model, self.tokenizer = init_classifier(s.init, len(self.labels))
        else:
            self.tokenizer = Tokenizer.train_bpe([text for text, _ in self.train_rows],
                                                 vocab_size=s.vocab_size)
            model = build_model(s.preset, **{"vocab_size": self.tokenizer.vocab_size,
                                             "num_labels": len(self.labels),
                                             "pad_token_id": self.tokenizer.pad_id,
                                             "max_seq_len": max(s.max_len, 16),
                                             **s.model_overrides})
        write_json(out / "labels.json", self.labels)
        return model

    def restore(self, out: Path) -> nn.Module:
        if not (out / "labels.json").is_file():
            raise MissingFileError(f"--resume: {out} holds no run to resume (no labels.json)")
        self.labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
        return super().restore(out)

    def encoded(self, rows: list[tuple[str, str]], split: str) -> list[tuple[list[int], int]]:
        examples, self.truncated[split] = encode(
            self.tokenizer, self.specials, rows, self.labels, self.max_len,
            str(Path(self.settings.data) / f"{split}.tsv"))
        return examples

    def batches(self, model: nn.Module) -> ShuffledBatches:
        s = self.settings
        self.max_len = capped_max_len(s, model)
        self.specials = special_ids(self.tokenizer, str(Path(s.out) / "tokenizer.json"))
        self.truncated: dict[str, int] = {}
        train = self.encoded(self.train_rows, "train")
        self.valid = self.encoded(self.valid_rows, "valid")
        return ShuffledBatches(train, s.batch_size, self.specials.pad, s.seed)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        return loss_fn(model, batch)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        return {"valid_accuracy": accuracy(model, self.valid, self.specials.pad)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        metrics: dict[str, Any] = {
            "valid_accuracy": self.kept_evaluation(result)["valid_accuracy"],
            "labels": self.labels,
            "steps": result.step, "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "params": model.num_parameters(),
            **({"init": s.init} if s.init else {"preset": s.preset}),
            "max_len": self.max_len, "precision": precision, "evaluations": result.evaluations,
        }
        if self.test_rows is not None:
            metrics["test_accuracy"] = accuracy(model, self.encoded(self.test_rows, "test"),
                                                self.specials.pad)
        metrics["truncated_texts"] = self.truncated
        return metrics


def train_classifier(settings: ClassifySettings, resume: bool = False) -> dict[str, Any]:
    return run_task(ClassificationTask(settings), resume).metrics
