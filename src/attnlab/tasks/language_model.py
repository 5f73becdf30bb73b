"""Train a decoder-only language model (GPT-2 or LLaMA style) on a text file.

text file -> byte-level BPE (`tokenizers`, so any UTF-8 text round-trips) or, with
`tokenizer="chars"`, one token per character (also `tokenizers`; characters the text lacks
become <unk>) -> one token stream, the last `valid_fraction` held out -> random windows of
`block_size + 1` tokens -> Trainer
(AdamW, linear warmup + cosine decay, clipping, accumulation, checkpoints, exact resume) ->
a folder `transformers` and `attnlab generate` both load (config.json, model.safetensors,
tokenizer.json) plus metrics.json (validation loss and perplexity) and a loss curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from attnlab.data.parallel import DataError
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
from attnlab.tokenizers.chars import train_char_tokenizer
from attnlab.training.trainer import resolve_precision

EOS = "<|endoftext|>"
TOKENIZERS = ("bpe", "chars")


@dataclass
class LMSettings:
    """Everything `attnlab train lm` takes; saved as `train_settings.json`."""

    text: str = ""
    out: str = "runs/lm"
    preset: str = "gpt2-tiny"
    tokenizer: str = "bpe"  # "bpe" (byte-level) or "chars" (one token per character)
    vocab_size: int = 2000  # BPE size; with chars, the most tokens kept (rarest chars -> <unk>)
    block_size: int = 128
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 2000
    time_budget: float | None = None
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip_norm: float | None = 1.0
    valid_fraction: float = 0.05
    eval_every: int = 0
    save_every: int = 500
    keep_last: int = 3
    seed: int = 1
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "block_size", "batch_size", "grad_accum",
                                   "max_steps", "warmup_steps", "keep_last"))
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, "
                             f"got {self.tokenizer!r}")
        decoder_only = list_models("gpt2") + list_models("llama")
        if self.preset not in decoder_only:
            raise ValueError(f"preset must be a decoder-only model, one of {decoder_only}, "
                             f"got {self.preset!r}")


def train_tokenizer(lines: list[str], vocab_size: int, kind: str = "bpe") -> Tokenizer:
    """Byte-level BPE (GPT-2's scheme) or a character vocabulary (of at most `vocab_size`
    tokens, newline included), with the end-of-text token as id 0."""
    if kind == "chars":
        return train_char_tokenizer((ln + "\n" for ln in lines), [EOS], max_size=vocab_size)
    return train_byte_bpe(lines, vocab_size, [EOS])


def encode_text(tokenizer: Tokenizer, lines: list[str]) -> Tensor:
    """One stream of ids: the lines with their newlines, EOS after blank-line-separated blocks."""
    eos = tokenizer.token_to_id(EOS)
    ids: list[int] = []
    for encoding, line in zip(tokenizer.encode_batch([ln + "\n" for ln in lines]), lines,
                              strict=True):
        ids.extend(encoding.ids)
        if not line.strip():
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


class WindowBatches:
    """Random windows of `block_size + 1` tokens; batch i is a pure function of (seed, i), so
    the state to checkpoint is one counter."""

    def __init__(self, stream: Tensor, block_size: int, batch_size: int, seed: int) -> None:
        if stream.numel() < block_size + 2:
            raise DataError(f"the training text has {stream.numel()} tokens, fewer than "
                            f"--block-size {block_size} + 2; use more text or a smaller block")
        self.stream, self.block_size, self.batch_size, self.seed = (
            stream, block_size, batch_size, seed)
        self.index = 0

    def next(self) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index)
        self.index += 1
        starts = torch.randint(0, self.stream.numel() - self.block_size, (self.batch_size,),
                               generator=generator)
        offsets = torch.arange(self.block_size + 1)
        windows = self.stream[starts[:, None] + offsets]  # (B, block_size + 1)
        return {"input_ids": windows, "labels": windows}

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    return model(ids, labels=ids).loss, ids.numel() - ids.size(0)


@torch.no_grad()
def validation_loss(model: nn.Module, stream: Tensor, block_size: int) -> float:
    """Mean next-token loss over consecutive windows of the held-out stream."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, max(stream.numel() - 1, 1), block_size):
        window = stream[start:start + block_size + 1][None]  # (1, <= block_size + 1)
        if window.size(1) < 2:
            break
        n = window.size(1) - 1
        total += model(window, labels=window).loss.item() * n
        count += n
    return total / max(count, 1)


def train_language_model(settings: LMSettings, resume: bool = False) -> dict[str, Any]:
    out = Path(settings.out)
    lines = read_text(settings.text)
    torch.manual_seed(settings.seed)
    if resume:
        check_resumable(out, "tokenizer.json")
        tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
        model = from_pretrained(out)
    else:
        tokenizer = train_tokenizer(lines, settings.vocab_size, settings.tokenizer)
        eos = tokenizer.token_to_id(EOS)
        model = build_model(settings.preset, vocab_size=tokenizer.get_vocab_size(),
                            bos_token_id=eos, eos_token_id=eos,
                            max_seq_len=max(settings.block_size + 1, 128))
        start_run(out, model, settings, lambda path: tokenizer.save(str(path)))
    stream = encode_text(tokenizer, lines)
    split = int(stream.numel() * (1 - settings.valid_fraction))
    train, valid = stream[:split], stream[split:]
    batches = WindowBatches(train, settings.block_size, settings.batch_size, settings.seed)
    result = fit(model, settings, batches, loss_fn,
                 lambda m, step: {"valid_loss": validation_loss(m, valid, settings.block_size)},
                 out, resume, betas=(0.9, 0.95), grad_accum=settings.grad_accum,
                 clip_norm=settings.clip_norm, precision=resolve_precision(settings.precision))
    if result.stopped_by == "interrupt":
        return {"stopped_by": "interrupt", "step": result.step}
    from attnlab.viz.curves import plot_training_curves

    valid_loss = result.evaluations[-1]["valid_loss"]
    metrics = {
        "valid_loss": valid_loss, "valid_perplexity": math.exp(min(valid_loss, 50.0)),
        "steps": result.step, "stopped_by": result.stopped_by,
        "train_seconds": round(result.train_seconds, 1), "train_tokens": result.train_tokens,
        "train_tokens_per_second": round(result.tokens_per_second),
        "params": model.num_parameters(), "preset": settings.preset,
        "tokenizer": settings.tokenizer, "vocab_size": tokenizer.get_vocab_size(),
        "train_stream_tokens": int(train.numel()),
        "valid_stream_tokens": int(valid.numel()), "evaluations": result.evaluations,
    }
    write_metrics(out, metrics)
    plot_training_curves(result.history, result.evaluations, out / "loss_curve.png")
    return metrics
