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

`--text builtin:web` is the built-in English corpus (`data/web_corpus.py`: the World English
Bible, split by book): the tokenizer is trained on the train books, the validation loss is
measured on the valid books (not a tail of --valid-fraction) and, at the end, metrics.json adds
the test books' loss and perplexity (`test_loss`, `test_perplexity`) of the kept weights.

Mixture-of-experts models (Mixtral, or `--set moe.experts=8`) train on their full loss (next
token + aux_loss_coef * load balancing + z_loss_coef * z-loss); each step's terms, dropped
share and expert load go into the history and the progress bar, and an expert that collapses is
warned about (`tasks/lm_moe.py`). Validation and test losses are the next-token loss alone
(`lm_loss`), so MoE and dense models compare on the same number.
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
from attnlab.data.web_corpus import TEST_BOOKS, VALID_BOOKS, WEB, is_web, load_web
from attnlab.errors import DataError
from attnlab.models import PRESETS, build_model, list_models
from attnlab.models.causal_lm import CausalLM
from attnlab.tasks.common import FamilyTask, read_text
from attnlab.tasks.lm_moe import STEP_KEYS, ExpertMonitor, moe_layers
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
    """Every preset of a decoder-only language model family (GPT-2, LLaMA, Mixtral, and the
    recurrent ones: any CausalLM over text)."""
    return [name for name in list_models()
            if issubclass(cls := PRESETS[name].model_class, CausalLM) and cls.text_lm]


@dataclass
class LMSettings(RunSettings):
    """Everything `attnlab train lm` takes; saved as `train_settings.json`."""

    text: str = setting("", f"UTF-8 text file to train on, a folder `attnlab prepare lm` "
                            f"wrote (its tokenizer and memory-mapped tokens), or {WEB}: the "
                            f"World English Bible, split by book (Debian's sword-text-web)",
                        data=True)
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
    valid_fraction: float = setting(0.05, f"share of the text's tokens held out (the end); "
                                          f"not used by {WEB}, which holds out whole books")
    keep_last: int = setting(3, "checkpoints kept")
    valid_windows: int = setting(0, "validate on this many evenly spaced windows of the "
                                    "held-out text instead of all of it (0: all of it); the "
                                    "final test loss always scores all of the test text")
    collapse_share: float = setting(0.1, "MoE models: an expert whose share of a layer's "
                                         "token-assignments stays under this / experts for "
                                         "--collapse-steps steps is warned about as collapsed")
    collapse_steps: int = setting(100, "MoE models: consecutive steps under --collapse-share "
                                       "/ experts before an expert counts as collapsed")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("vocab_size", "block_size", "batch_size", "warmup_steps",
                                   "collapse_steps"))
        check_range(self, "valid_fraction", 0.0, 0.5, low_open=True)
        if isinstance(self.valid_windows, bool) or not isinstance(self.valid_windows, int) \
                or self.valid_windows < 0:
            raise SettingError("valid_windows", "valid_windows must be an integer >= 0, got "
                                                f"{self.valid_windows!r}")
        check_range(self, "collapse_share", 0.0, 1.0, low_open=True, high_open=False)
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


def next_token_loss(out: Any) -> Tensor:
    """The next-token loss of a model output: an MoE model's `lm_loss` (its `loss` adds the
    router's auxiliary terms), a dense model's `loss`."""
    lm_loss = getattr(out, "lm_loss", None)
    return out.loss if lm_loss is None else lm_loss


def window_starts(length: int, block_size: int, windows: int) -> Tensor:
    """`windows` evenly spaced starts of block_size + 1 tokens in a stream of `length`."""
    if length < block_size + 1:
        raise DataError(f"the held-out text has {length} tokens, fewer than --block-size "
                        f"{block_size} + 1: use a smaller block or more held-out text")
    return torch.linspace(0, length - block_size - 1, windows).round().long()  # (W,)


@torch.no_grad()
def validation_loss(model: nn.Module, stream: Tensor | TokenStream, block_size: int,
                    batch_size: int = 16, windows: int = 0) -> float:
    """Mean next-token loss (`next_token_loss`: no MoE auxiliary terms) over consecutive
    windows of `block_size + 1` tokens of the held-out stream (each token predicted once), the
    full windows `batch_size` at a time; a stream with no prediction in it (under 2 tokens) is
    a DataError, never a loss of 0. `windows` > 0 scores that many fixed, evenly spaced
    windows instead (the same ones at every evaluation: a cheaper, comparable estimate)."""
    total_tokens = stream.numel()
    if total_tokens < 2:
        raise DataError(f"the held-out stream holds {total_tokens} token(s): nothing to "
                        "score; use more text or a larger --valid-fraction")
    if windows:
        return sampled_windows_loss(model, stream, block_size, batch_size, windows)
    model.eval()
    device = model_device(model)
    starts = range(0, total_tokens - 1, block_size)
    full = [i for i in starts if i + block_size + 1 <= total_tokens]
    total, count = 0.0, 0
    for first in range(0, len(full), batch_size):
        batch = torch.stack([stream[i:i + block_size + 1].long()
                             for i in full[first:first + batch_size]]).to(device)  # (B, T+1)
        n = batch.numel() - batch.size(0)
        total += next_token_loss(model(batch, labels=batch)).item() * n
        count += n
    for i in starts[len(full):]:  # the last, shorter window (at least 2 tokens)
        window = stream[i:i + block_size + 1].long()[None].to(device)  # (1, < T+1)
        n = window.size(1) - 1
        total += next_token_loss(model(window, labels=window)).item() * n
        count += n
    return total / count


@torch.no_grad()
def sampled_windows_loss(model: nn.Module, stream: Tensor | TokenStream, block_size: int,
                         batch_size: int, windows: int) -> float:
    """Mean next-token loss over `windows` evenly spaced windows of block_size + 1 tokens."""
    model.eval()
    starts = window_starts(stream.numel(), block_size, windows)  # (W,)
    offsets = torch.arange(block_size + 1)
    device = model_device(model)
    total = 0.0
    for first in range(0, starts.numel(), batch_size):
        ids = stream[starts[first:first + batch_size, None] + offsets].long().to(device)
        total += next_token_loss(model(ids, labels=ids)).item() * ids.size(0)  # (b, T+1)
    return total / starts.numel()


class LanguageModelTask(FamilyTask):
    name = "lm"
    best_metric = ("valid_loss", "min")
    settings: LMSettings
    betas = (0.9, 0.95)

    prepared = None  # the folder `attnlab prepare lm` wrote, when --text names one
    web = None  # the built-in corpus (data/web_corpus.py), when --text builtin:web
    test: Tensor | TokenStream | None = None  # held-out test stream (builtin:web)

    def __init__(self, settings: LMSettings) -> None:
        super().__init__(settings)
        self.moe = ExpertMonitor(settings.collapse_share, settings.collapse_steps)

    def load_data(self) -> None:
        s = self.settings
        if not s.text:
            raise SettingError("text", f"text must name a UTF-8 text file, a prepared folder "
                                       f"or {WEB}, got ''")
        if is_web(s.text):
            self.web = load_web()
            self.lines = list(self.web.lines["train"])  # the tokenizer sees train books only
            return
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
        if self.web is not None:  # whole books held out: no tail split
            self.train, self.valid, self.test = (
                encode_text(self.tokenizer, list(self.web.lines[name]))
                for name in ("train", "valid", "test"))
            check_train_stream(self.train, s.text, s.block_size)
            return
        shards = self.prepared.meta["shards"] if self.prepared is not None else {}
        if "valid" in shards:  # a prepared builtin:web: its held-out books are shards too
            self.train, self.valid, self.test = (
                self.prepared.shard(name).stream() for name in ("text", "valid", "test"))
            check_train_stream(self.train, s.text, s.block_size)
            return
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
        self.moe.layers = moe_layers(model.config)
        return model

    def restore(self, out: Path) -> nn.Module:
        model = super().restore(out)
        self.moe.layers = moe_layers(model.config)
        self.split_stream()
        return model

    def batches(self, model: nn.Module) -> WindowBatches:
        s = self.settings
        return WindowBatches(self.train, s.block_size, s.batch_size, s.seed)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """The training loss (an MoE model's includes its auxiliary terms); the routing
        figures of the micro-batch are gathered for `step_metrics`."""
        ids = batch["input_ids"].to(model_device(model))
        out = model(ids, labels=ids)
        self.moe.add(out)
        return out.loss, ids.numel() - ids.size(0)

    def step_metrics(self) -> dict[str, float]:
        return self.moe.step()

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        self.moe.end_window()
        s = self.settings
        return {"valid_loss": validation_loss(model, self.valid, s.block_size, s.batch_size,
                                              s.valid_windows)}

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        s = self.settings
        valid_loss = self.kept_evaluation(result)["valid_loss"]
        held_out: dict[str, Any] = {}
        if self.test is not None:
            test_loss = validation_loss(model, self.test, s.block_size, s.batch_size)
            held_out = {"test_loss": test_loss, "test_perplexity": perplexity(test_loss),
                        "test_stream_tokens": int(self.test.numel())}
        if self.web is not None or self.test is not None:
            held_out["corpus"] = {"name": WEB, "valid_books": list(VALID_BOOKS),
                                  "test_books": list(TEST_BOOKS)}
        return {
            "valid_loss": valid_loss, "valid_perplexity": perplexity(valid_loss), **held_out,
            **run_summary(result),
            "params": model.num_parameters(), "preset": s.preset,
            "tokenizer": (self.prepared.meta["tokenizer"]["kind"] if self.prepared
                          else s.tokenizer), "vocab_size": self.tokenizer.vocab_size,
            "train_stream_tokens": int(self.train.numel()),
            "valid_stream_tokens": int(self.valid.numel()), "precision": precision,
            "evaluations": result.evaluations, **moe_metrics(self.moe, result),
        }


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def check_train_stream(stream: Tensor | TokenStream, where: str, block_size: int) -> None:
    """A training window is block_size + 1 tokens drawn from at least block_size + 2."""
    if stream.numel() < block_size + 2:
        raise DataError(f"{where}: the training part holds {stream.numel()} tokens, fewer than "
                        f"--block-size {block_size} needs ({block_size + 2}); use a smaller "
                        f"--block-size")


def moe_metrics(monitor: ExpertMonitor, result: TrainResult) -> dict[str, Any]:
    """metrics.json's MoE record ({} for a dense model): `expert_load` (per MoE layer, per
    expert: the mean share of token-assignments over the steps since the evaluation before the
    last), and `moe`: the same window's and the run's mean figures, the collapses, and each
    step's figures (`history`, from the trainer's history)."""
    summary = monitor.summary()
    if summary is None:
        return {}
    history = [{k: h[k] for k in ("step", *STEP_KEYS) if k in h} for h in result.history
               if "aux_loss" in h]
    return {"expert_load": summary["window"].get("expert_load"),
            "moe": {**summary, "history": history}}


def train_language_model(settings: LMSettings, resume: bool = False) -> dict[str, Any]:
    return run_task(LanguageModelTask(settings), resume).metrics
