"""Train a decoder-only language model (GPT-2 or LLaMA style) on a text file.

text file -> byte-level BPE (`tokenizers`, so any UTF-8 text round-trips) -> one token stream,
the last `valid_fraction` held out -> random windows of `block_size + 1` tokens -> Trainer
(AdamW, linear warmup + cosine decay, clipping, accumulation, checkpoints, exact resume) ->
a folder `transformers` and `attnlab generate` both load (config.json, model.safetensors,
tokenizer.json) plus metrics.json (validation loss and perplexity) and a loss curve.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor, nn

from attnlab.data.parallel import DataError, read_lines
from attnlab.interop.hf_folder import from_pretrained, save_hf
from attnlab.models import build_model, list_models
from attnlab.serialization import atomic_write
from attnlab.training.schedule import cosine_warmup
from attnlab.training.trainer import Trainer, TrainerConfig, resolve_precision

log = logging.getLogger(__name__)
EOS = "<|endoftext|>"


@dataclass
class LMSettings:
    """Everything `attnlab train lm` takes; saved as `train_settings.json`."""

    text: str = ""
    out: str = "runs/lm"
    preset: str = "gpt2-tiny"
    vocab_size: int = 2000
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
        for name in ("vocab_size", "block_size", "batch_size", "grad_accum", "max_steps",
                     "warmup_steps", "keep_last"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise ValueError(f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        decoder_only = list_models("gpt2") + list_models("llama")
        if self.preset not in decoder_only:
            raise ValueError(f"preset must be a decoder-only model, one of {decoder_only}, "
                             f"got {self.preset!r}")


def train_tokenizer(lines: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2's scheme): every byte is in the alphabet, so nothing is unknown."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


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
    path = Path(settings.text)
    lines = read_lines(path)  # DataError on a missing file or bad UTF-8, with the line
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file holds no text")
    torch.manual_seed(settings.seed)
    if resume:
        if not (out / "tokenizer.json").is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run to resume (no tokenizer.json)")
        tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
        model = from_pretrained(out)
    else:
        tokenizer = train_tokenizer(lines, settings.vocab_size)
        eos = tokenizer.token_to_id(EOS)
        model = build_model(settings.preset, vocab_size=tokenizer.get_vocab_size(),
                            bos_token_id=eos, eos_token_id=eos,
                            max_seq_len=max(settings.block_size + 1, 128))
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(out / "tokenizer.json"))
        save_hf(model, out)
        text = json.dumps(asdict(settings), indent=2) + "\n"
        atomic_write(out / "train_settings.json", lambda t: Path(t).write_text(text))
    stream = encode_text(tokenizer, lines)
    split = int(stream.numel() * (1 - settings.valid_fraction))
    train, valid = stream[:split], stream[split:]
    batches = WindowBatches(train, settings.block_size, settings.batch_size, settings.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=0.0, betas=(0.9, 0.95))
    trainer = Trainer(
        model, optimizer,
        lambda step: cosine_warmup(step, peak_lr=settings.lr, warmup_steps=settings.warmup_steps,
                                   total_steps=settings.max_steps, min_lr=settings.lr / 10),
        batches, loss_fn,
        TrainerConfig(max_steps=settings.max_steps, time_budget=settings.time_budget,
                      grad_accum=settings.grad_accum, clip_norm=settings.clip_norm,
                      eval_every=settings.eval_every, save_every=settings.save_every,
                      keep_last=settings.keep_last,
                      precision=resolve_precision(settings.precision)),
        checkpoint_dir=out / "checkpoints",
        evaluate=lambda m, step: {"valid_loss": validation_loss(m, valid, settings.block_size)},
    )
    if resume and not trainer.resume():
        log.warning("no checkpoint in %s: starting from step 0", out / "checkpoints")
    result = trainer.fit()
    save_hf(model, out)
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
        "vocab_size": tokenizer.get_vocab_size(), "train_stream_tokens": int(train.numel()),
        "valid_stream_tokens": int(valid.numel()), "evaluations": result.evaluations,
    }
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda t: Path(t).write_text(text))
    plot_training_curves(result.history, result.evaluations, out / "loss_curve.png")
    return metrics
