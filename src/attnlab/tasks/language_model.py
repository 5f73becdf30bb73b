"""Train a decoder-only language model (GPT-2 or LLaMA style) on a text file.

text file -> byte-level BPE (`tokenizers`, so any UTF-8 text round-trips) or, with
`tokenizer="chars"`, one token per character (also `tokenizers`; characters the text lacks
become <unk>) -> one token stream, the last `valid_fraction` held out -> random windows of
`block_size + 1` tokens -> the run routine
(AdamW, linear warmup + cosine decay, clipping, accumulation, checkpoints, exact resume) ->
a folder `transformers` and `attnlab generate` both load (config.json, model.safetensors,
tokenizer.json) plus metrics.json (validation loss and perplexity) and a loss curve.

`--text` may also name a folder `attnlab prepare lm` wrote (`tasks/lm_prepare.py`): the same
token stream, tokenized once and memory-mapped (`data/shards.py`), so the windows are read from
disk and a corpus larger than memory trains with flat resident memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.data.checks import split_held_out
from attnlab.data.shards import TokenStream, is_prepared, open_prepared
from attnlab.errors import DataError
from attnlab.models import build_model, list_models
from attnlab.tasks.common import FamilyTask, read_text
from attnlab.tokenizers import Tokenizer
from attnlab.training.run import model_device, run_summary, run_task
from attnlab.training.settings import (
    RunSettings,
    SettingError,
    check_choice,
    check_positive_ints,
    check_positive_numbers,
    check_range,
    setting,
)
from attnlab.training.trainer import TrainResult

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
TOKENIZERS = ("bpe", "chars")


def decoder_only_presets() -> list[str]:
    return list_models("gpt2") + list_models("llama")


@dataclass
class LMSettings(RunSettings):
    """Everything `attnlab train lm` takes; saved as `train_settings.json`."""

    text: str = setting("", "UTF-8 text file to train on, or a folder `attnlab prepare lm` "
                            "wrote (its tokenizer and memory-mapped tokens)", data=True)
    out: str = setting("runs/lm", "output folder (model, checkpoints, metrics)")
    preset: str = setting("gpt2-tiny", "model size", choices=decoder_only_presets)
    tokenizer: str = setting("bpe", "bpe: byte-level BPE, nothing unknown; chars: one token per "
                                    "character of the text (characters it lacks become <unk>)",
                             choices=TOKENIZERS)
    vocab_size: int = setting(2000, "BPE vocabulary size; with --tokenizer chars, the most "
                                    "tokens kept (the rarest characters beyond it become <unk>)")
    block_size: int = setting(128, "tokens of context per training window")
    batch_size: int = setting(16, "sequences per batch")
    max_steps: int = setting(2000, "optimizer steps")
    lr: float = setting(1e-3, "peak AdamW learning rate")
    warmup_steps: int = setting(100, "linear warmup steps, then cosine decay to lr/10")
    weight_decay: float = setting(0.1, "AdamW weight decay (not on biases and norms)")
    valid_fraction: float = setting(0.05, "share of the text's tokens held out (the end)")
    keep_last: int = setting(3, "checkpoints kept")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("vocab_size", "block_size", "batch_size", "warmup_steps"))
        check_range(self, "valid_fraction", 0.0, 0.5, low_open=True)
        check_positive_numbers(self, ("lr",))
        check_choice(self, "tokenizer", TOKENIZERS)
        decoder_only = decoder_only_presets()
        if self.preset not in decoder_only:
            raise SettingError("preset", f"preset must be a decoder-only model, one of "
                                         f"{decoder_only}, got {self.preset!r}")


def train_tokenizer(lines: Iterable[str], vocab_size: int, kind: str = "bpe") -> Tokenizer:
    """Byte-level BPE (GPT-2's scheme) or a character vocabulary (of at most `vocab_size`
    tokens, newline included), with the end-of-text token as id 0."""
    if kind == "chars":
        return Tokenizer.train_chars((ln + "\n" for ln in lines), [EOS], max_size=vocab_size)
    return Tokenizer.train_byte_level(lines, vocab_size, [EOS])


def encode_lines(tokenizer: Tokenizer, lines: list[str]) -> list[list[int]]:
    """Each line's ids with its newline, and EOS after a blank line (it ends a block)."""
    eos = tokenizer.token_to_id(EOS)
    encoded = tokenizer.encode_batch([ln + "\n" for ln in lines])
    return [ids + [eos] if not line.strip() else ids
            for ids, line in zip(encoded, lines, strict=True)]


def encode_text(tokenizer: Tokenizer, lines: list[str]) -> Tensor:
    """One stream of ids: the lines with their newlines, EOS after blank-line-separated blocks."""
    return torch.tensor([i for ids in encode_lines(tokenizer, lines) for i in ids],
                        dtype=torch.long)


class WindowBatches:
    """Random windows of `block_size + 1` tokens of a stream (a tensor, or a memory-mapped
    `TokenStream` the windows are read from); batch i is a pure function of (seed, i), so the
    state to checkpoint is one counter."""

    def __init__(self, stream: Tensor | TokenStream, block_size: int, batch_size: int,
                 seed: int) -> None:
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

    def skip(self, n: int) -> None:
        """Advance by n batches without building them (as n calls of `next`)."""
        self.index += n

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = int(state["index"])


def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
    ids = batch["input_ids"].to(model_device(model))
    return model(ids, labels=ids).loss, ids.numel() - ids.size(0)


@torch.no_grad()
def validation_loss(model: nn.Module, stream: Tensor | TokenStream, block_size: int) -> float:
    """Mean next-token loss over consecutive windows of the held-out stream; a stream with no
    prediction in it (under 2 tokens) is a DataError, never a loss of 0."""
    if stream.numel() < 2:
        raise DataError(f"the held-out stream holds {stream.numel()} token(s): nothing to "
                        "score; use more text or a larger --valid-fraction")
    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    for start in range(0, max(stream.numel() - 1, 1), block_size):
        window = stream[start:start + block_size + 1].long()[None].to(device)  # (1, <= T+1)
        if window.size(1) < 2:
            break
        n = window.size(1) - 1
        total += model(window, labels=window).loss.item() * n
        count += n
    return total / count


class LanguageModelTask(FamilyTask):
    name = "lm"
    best_metric = ("valid_loss", "min")
    settings: LMSettings
    betas = (0.9, 0.95)

    prepared = None  # the folder `attnlab prepare lm` wrote, when --text names one

    def load_data(self) -> None:
        s = self.settings
        if not s.text:
            raise SettingError("text", "text must name a UTF-8 text file, got ''")
        if is_prepared(s.text):
            self.prepared = open_prepared(s.text, "text")
            made = self.prepared.meta["tokenizer"]
            if (made["kind"], made["vocab_size"]) != (s.tokenizer, s.vocab_size):
                log.info("--text %s is prepared: its tokenizer (%s, %d entries) is used, not "
                         "--tokenizer %s --vocab-size %d", s.text, made["kind"],
                         made["vocab_size"], s.tokenizer, s.vocab_size)
            return
        self.lines = read_text(s.text)

    def split_stream(self) -> None:
        """The token stream split into train and held out, both checked
        (`data.checks.split_held_out`) before the run routine writes anything (new run) or
        trains (resume)."""
        s = self.settings
        if self.prepared is not None:  # memory-mapped: nothing is read until a batch is
            stream = self.prepared.shard("text").stream()  # (N,)
        else:
            stream = encode_text(self.tokenizer, self.lines)  # (N,)
        # A training window is block_size + 1 tokens drawn from at least block_size + 2.
        self.train, self.valid = split_held_out(stream, s.valid_fraction, s.text,
                                                block_size=s.block_size,
                                                train_needed=s.block_size + 2)

    def prepare_new_run(self) -> None:
        """A new run's tokenizer and its checked train / held-out streams; writes nothing, so
        the run routine may call it before it creates or clears the run folder."""
        s = self.settings
        if self.prepared is not None:
            self.tokenizer = Tokenizer.load(self.prepared.folder)
        else:
            self.tokenizer = train_tokenizer(self.lines, s.vocab_size, s.tokenizer)
        self.split_stream()

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        if self.tokenizer is None:  # not yet prepared by the run routine
            self.prepare_new_run()
        eos = self.tokenizer.token_to_id(EOS)
        model = build_model(s.preset, **{"vocab_size": self.tokenizer.vocab_size,
                                         "bos_token_id": eos, "eos_token_id": eos,
                                         "max_seq_len": max(s.block_size + 1, 128),
                                         **s.model_overrides})
        return model

    def restore(self, out: Path) -> nn.Module:
        model = super().restore(out)
        self.split_stream()
        return model

    def batches(self, model: nn.Module) -> WindowBatches:
        s = self.settings
        return WindowBatches(self.train, s.block_size, s.batch_size, s.seed)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        return loss_fn(model, batch)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        return {"valid_loss": validation_loss(model, self.valid, self.settings.block_size)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        valid_loss = self.kept_evaluation(result)["valid_loss"]
        return {
            "valid_loss": valid_loss, "valid_perplexity": math.exp(min(valid_loss, 50.0)),
            **run_summary(result),
            "params": model.num_parameters(), "preset": s.preset,
            "tokenizer": (self.prepared.meta["tokenizer"]["kind"] if self.prepared
                          else s.tokenizer), "vocab_size": self.tokenizer.vocab_size,
            "train_stream_tokens": int(self.train.numel()),
            "valid_stream_tokens": int(self.valid.numel()), "precision": precision,
            "evaluations": result.evaluations,
        }


def train_language_model(settings: LMSettings, resume: bool = False) -> dict[str, Any]:
    return run_task(LanguageModelTask(settings), resume).metrics
