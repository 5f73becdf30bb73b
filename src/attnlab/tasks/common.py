"""What the model-family training tasks (lm, mlm, classify) share: resume checks, reading a
text file, a byte-level BPE, starting or resuming a run folder, and the AdamW + warmup/cosine
training loop on the shared Trainer that leaves a Hugging Face-layout folder behind."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn

from attnlab.data.parallel import DataError, read_lines
from attnlab.interop.hf_folder import save_hf
from attnlab.serialization import atomic_write
from attnlab.training.schedule import cosine_warmup
from attnlab.training.trainer import BatchSource, Trainer, TrainerConfig, TrainResult

log = logging.getLogger(__name__)


def check_resumable(out: Path, marker: str) -> None:
    """--resume needs a run folder this task started (it holds `marker`)."""
    if not (out / marker).is_file():
        raise FileNotFoundError(f"--resume: {out} holds no run to resume (no {marker})")


def read_text(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file; a missing file, bad bytes (with the line) or a file with
    no text raise DataError."""
    lines = read_lines(Path(path))
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file holds no text")
    return lines


def train_byte_bpe(lines: list[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    """Byte-level BPE (GPT-2's scheme): every byte is in the alphabet, nothing is unknown;
    `specials` take the first ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def start_run(out: Path, model: nn.Module, settings: Any, save_tokenizer: Callable[[Path], Any],
              extra: dict[str, Any] | None = None) -> None:
    """Create the run folder: tokenizer, initial weights, train_settings.json (+ extra JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(out / "tokenizer.json")
    save_hf(model, out)
    files = {"train_settings.json": asdict(settings), **(extra or {})}
    for name, value in files.items():
        text = json.dumps(value, indent=2) + "\n"
        atomic_write(out / name, lambda t, text=text: Path(t).write_text(text))


def fit(model: nn.Module, settings: Any, batches: BatchSource, loss_fn: Callable,
        evaluate: Callable[[nn.Module, int], dict[str, float]], out: Path, resume: bool,
        betas: tuple[float, float] = (0.9, 0.999), **trainer_options: Any) -> TrainResult:
    """AdamW (no decay on biases and norms), linear warmup to `settings.lr` then cosine decay
    to a tenth of it, the shared Trainer (checkpoints in out/checkpoints, exact resume), and the
    final weights saved in Hugging Face layout (also after Ctrl-C)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=0.0, betas=betas)
    trainer = Trainer(
        model, optimizer,
        lambda step: cosine_warmup(step, peak_lr=settings.lr, warmup_steps=settings.warmup_steps,
                                   total_steps=settings.max_steps, min_lr=settings.lr / 10),
        batches, loss_fn,
        TrainerConfig(max_steps=settings.max_steps, time_budget=settings.time_budget,
                      eval_every=settings.eval_every, save_every=settings.save_every,
                      keep_last=settings.keep_last, **trainer_options),
        checkpoint_dir=out / "checkpoints", evaluate=evaluate,
    )
    if resume and not trainer.resume():
        log.warning("no checkpoint in %s: starting from step 0", out / "checkpoints")
    result = trainer.fit()
    save_hf(model, out)
    return result


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda t: Path(t).write_text(text))
