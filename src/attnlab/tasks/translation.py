"""Neural machine translation end to end, the job the 2017 Transformer was built for
(Vaswani et al. 2017, "Attention Is All You Need", sec. 5).

corpus (built-in or the user's files) -> joint BPE (`tokenizers`) -> token-count batches ->
the run routine (Adam 0.9/0.98/1e-9, inverse-sqrt warmup, label smoothing 0.1 applied here,
clipping, accumulation, checkpoints) -> model folder (config.json, model.safetensors,
tokenizer.json, train_settings.json) -> beam search -> sacreBLEU BLEU / chrF with signature,
by length bucket -> metrics.json and a loss curve.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.data.batching import TokenBatches, iterate_in_order
from attnlab.data.parallel import (  # filter_long: public name kept here (it moved there)
    ParallelCorpus,
    filter_long,
    load_corpus,
    warn_before_training,
)
from attnlab.errors import MissingFileError
from attnlab.evaluation import score_corpus
from attnlab.models import build_model
from attnlab.models.common import shift_right
from attnlab.serialization import atomic_write
from attnlab.tasks.translation_decode import (  # noqa: F401  (public names kept here)
    evaluate_pairs,
    score_test_buckets,
    translate,
)
from attnlab.tokenizers import Tokenizer
from attnlab.training.checkpoint import average_last  # noqa: F401  (alias: it moved there)
from attnlab.training.device import resolve_device  # noqa: F401  (alias: it moved there)
from attnlab.training.run import RunOutcome, Task, model_device, run_task
from attnlab.training.schedule import inverse_sqrt_warmup
from attnlab.training.settings import (
    RunSettings,
    SettingError,
    check_non_negative_ints,
    check_positive_ints,
    check_positive_numbers,
    check_range,
    load_config,
    load_run_settings,
    setting,
)
from attnlab.training.settings import settings_from_dict as settings_of
from attnlab.training.trainer import TrainResult

log = logging.getLogger(__name__)

# Model families the translation task trains: the 2017 Transformer and the RNN / ConvS2S
# baselines share its interface (encode, decode, lm_head, new_cache).
SEQ2SEQ_TYPES = ("transformer", "rnn", "convs2s")
RECIPES = Path(__file__).parent / "recipes"


def seq2seq_presets() -> list[str]:
    from attnlab.models import list_models

    return [name for kind in SEQ2SEQ_TYPES for name in list_models(kind)]


@dataclass
class TranslationSettings(RunSettings):
    """Everything `attnlab train translate` takes; saved as `train_settings.json`."""

    out: str = setting("runs/translate", "output folder (model, checkpoints, metrics)")
    preset: str = setting("transformer-small", "model (an encoder-decoder preset)",
                          choices=seq2seq_presets)
    data: str | None = setting(None, "corpus folder (none: the built-in corpus)", data=True)
    src_lang: str | None = setting(None, "source file suffix, e.g. en")
    tgt_lang: str | None = setting(None, "target file suffix, e.g. de")
    tsv: bool = setting(False, "read {split}.tsv (source TAB target)")
    builtin_train_size: int = setting(60_000, "training pairs generated for the built-in corpus")
    builtin_valid_size: int = setting(1000, "validation pairs of the built-in corpus")
    builtin_test_size: int = setting(2000, "test pairs of the built-in corpus")
    vocab_size: int = setting(4000, "joint BPE vocabulary size")
    max_len: int = setting(128, "skip training pairs longer than this many subwords")
    max_tokens: int = setting(4096, "padded tokens per micro-batch and side (training and "
                                    "decoding)")
    max_steps: int = setting(100_000, "optimizer steps")
    warmup_steps: int = setting(4000, "linear warmup steps of the inverse-sqrt schedule")
    lr_scale: float = setting(1.0, "multiplier on the paper's d^-0.5 * min(step^-0.5, "
                                   "step*warmup^-1.5)")
    label_smoothing: float = setting(0.1, "label smoothing epsilon of the training loss")
    save_every: int = setting(1000, "checkpoint every N steps (0: only at the end)")
    keep_last: int = setting(5, "checkpoints kept (for averaging)")
    average_last: int = setting(0, "test the mean of the last N checkpoints (0: the final "
                                   "weights; Vaswani et al. 2017)")
    beam_size: int = setting(4, "beam size for the test set")
    length_penalty: float = setting(0.6, "GNMT length penalty alpha")
    eval_sentences: int = setting(200, "validation sentences translated (greedy) at each "
                                       "evaluation")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("builtin_train_size", "builtin_valid_size",
                                   "builtin_test_size", "vocab_size", "max_len", "max_tokens",
                                   "warmup_steps", "beam_size", "eval_sentences"))
        check_non_negative_ints(self, ("average_last",))
        check_range(self, "label_smoothing", 0, 1)
        check_positive_numbers(self, ("lr_scale",))
        presets = seq2seq_presets()
        if self.preset not in presets:
            raise SettingError("preset", f"preset must be an encoder-decoder model, one of "
                                         f"{presets}, got {self.preset!r}")
        if self.average_last > self.keep_last:
            raise SettingError("average_last", f"average_last={self.average_last} needs "
                                               f"keep_last >= it, got keep_last={self.keep_last}")


def settings_from_dict(values: dict[str, Any], where: str) -> TranslationSettings:
    """TranslationSettings from a JSON object, naming unknown fields (keys starting with "_"
    are comments and ignored)."""
    return settings_of(TranslationSettings, values, where)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A shipped recipe by name (e.g. "wmt14-en-de-base") or a JSON file of settings."""
    return load_config(name_or_path, TranslationSettings, RECIPES)


def load_settings(out: str | Path) -> TranslationSettings:
    """The settings a run in `out` was started with (for --resume and evaluation)."""
    return load_run_settings(TranslationSettings, out)


def encode_pairs(
    tokenizer: Tokenizer, pairs: list[tuple[str, str]]
) -> list[tuple[list[int], list[int]]]:
    """Source and target ids, each ending in </s>."""
    src = tokenizer.encode_batch([s for s, _ in pairs], add_eos=True)
    tgt = tokenizer.encode_batch([t for _, t in pairs], add_eos=True)
    return list(zip(src, tgt, strict=True))


def prepare_corpus(settings: TranslationSettings,
                   splits: tuple[str, ...] = ("train", "valid", "test")) -> ParallelCorpus:
    """The corpus of a run. On the built-in corpus only `splits` are generated: test is drawn
    first, then valid, then train, each from its own seeded stream, so test (and valid) come
    out identical without generating the training pairs."""
    if settings.data is None:
        from attnlab.data.corpus import generate_corpus

        corpus = generate_corpus(
            seed=0, train_size=settings.builtin_train_size if "train" in splits else 0,
            valid_size=settings.builtin_valid_size if {"train", "valid"} & set(splits) else 0,
            test_size=settings.builtin_test_size)
        chosen = {name: corpus[name] for name in ("train", "valid", "test") if name in splits}
        return ParallelCorpus(chosen, {name: "built-in corpus" for name in chosen},
                              test_buckets={"ambiguous": corpus.ambiguous_test})
    return load_corpus(settings.data, settings.src_lang, settings.tgt_lang, tsv=settings.tsv)


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor],
            label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Teacher-forced cross-entropy over the target tokens (labels -100 ignored), with label
    smoothing (Szegedy et al. 2016) as a setting of the run, not of the model."""
    device = model_device(model)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    labels = batch["labels"]  # (B, T)
    c = model.config
    decoder_input_ids = shift_right(labels, c.decoder_start_token_id, c.pad_token_id)
    logits = model(batch["input_ids"], decoder_input_ids=decoder_input_ids,
                   attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                           label_smoothing=label_smoothing)
    return loss, int((labels != -100).sum())


class TranslationTask(Task):
    """The translation recipe on the run routine. After the run it keeps what the demo prints:
    `corpus`, `tokenizer`, `test_pairs` and `test_hypotheses`."""

    name = "translate"
    settings: TranslationSettings

    def load_data(self) -> None:
        """The corpus, every split checked (data/parallel.py); the checks that need subwords
        (--max-len) run in `encode_splits` as soon as the tokenizer exists."""
        self.corpus = prepare_corpus(self.settings)
        if self.settings.data is not None:
            warn_before_training(self.corpus, self.settings.data)

    def encode_splits(self) -> None:
        """Encode train (pairs over --max-len dropped; none left is a DataError) and valid,
        before the run routine writes anything (new run) or trains (resume)."""
        s, corpus = self.settings, self.corpus
        self.train_encoded = filter_long(encode_pairs(self.tokenizer, corpus.split("train")),
                                         s.max_len, corpus.sources["train"])
        self.valid = corpus.split("valid")
        self.valid_encoded = encode_pairs(self.tokenizer, self.valid)

    def prepare_new_run(self) -> None:
        """A new run's joint BPE and its encoded, checked splits; writes nothing, so the run
        routine may call it before it creates or clears the run folder."""
        s = self.settings
        log.info("training a %d-entry BPE vocabulary", s.vocab_size)
        train_text = (text for pair in self.corpus.split("train") for text in pair)
        self.tokenizer = Tokenizer.train_bpe(train_text, vocab_size=s.vocab_size)
        self.encode_splits()

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        if self.tokenizer is None:  # not yet prepared by the run routine
            self.prepare_new_run()
        model = build_model(s.preset, vocab_size=self.tokenizer.vocab_size,
                            **{"max_seq_len": 256, **s.model_overrides})
        return model

    def restore(self, out: Path) -> nn.Module:
        if not (out / "tokenizer.json").is_file():
            raise MissingFileError(f"--resume: {out} holds no run to resume (no tokenizer.json)")
        model = super().restore(out)
        self.tokenizer.require_specials(dict(zip(("pad", "bos", "eos", "unk"), range(4),
                                                 strict=True)), f"--resume: {out}")
        self.encode_splits()
        return model

    def generation_settings(self) -> dict[str, Any]:
        """The beam the test split is decoded with, for `attnlab translate` to default to."""
        return {"num_beams": self.settings.beam_size,
                "length_penalty": self.settings.length_penalty}

    def batches(self, model: nn.Module) -> TokenBatches:
        s = self.settings
        return TokenBatches(self.train_encoded, max_tokens=s.max_tokens,
                            pad_id=self.tokenizer.pad_id, seed=s.seed)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return loss_fn(model, batch, self.settings.label_smoothing)

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float]:
        s, tokenizer = self.settings, self.tokenizer
        losses, tokens = 0.0, 0
        for _, batch in iterate_in_order(self.valid_encoded, s.max_tokens, tokenizer.pad_id):
            loss, n = self.loss(model, batch)
            losses, tokens = losses + loss.item() * n, tokens + n
        sample = self.valid[: s.eval_sentences]
        hypotheses = translate(model, tokenizer, [src for src, _ in sample], beam_size=1,
                               max_tokens=s.max_tokens)
        bleu = score_corpus(hypotheses, [t for _, t in sample]).bleu
        return {"valid_loss": losses / tokens, "valid_bleu_greedy": bleu}

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        self.d_model = model.config.d_model
        return torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9)

    def lr(self, step: int) -> float:
        s = self.settings
        return inverse_sqrt_warmup(step, d_model=self.d_model, warmup_steps=s.warmup_steps,
                                   scale=s.lr_scale)

    def before_save(self, model: nn.Module, out: Path) -> None:
        self.averaged = average_last(model, out / "checkpoints", self.settings.average_last)

    def metrics(self, model: nn.Module, result: TrainResult, precision: str) -> dict[str, Any]:
        """Test-set evaluation with beam search (the run's max_tokens), and test.hyp."""
        s, corpus = self.settings, self.corpus
        # No test split (load_data warned): the valid split is scored, and "split" says so.
        self.test_pairs = corpus.split("test" if "test" in corpus.pairs else "valid")
        start = time.perf_counter()
        scores = evaluate_pairs(model, self.tokenizer, self.test_pairs, beam_size=s.beam_size,
                                length_penalty=s.length_penalty, max_tokens=s.max_tokens,
                                progress=self.progress)
        self.test_hypotheses = scores.pop("hypotheses")
        if "test" in corpus.pairs:
            scores.update(score_test_buckets(corpus, self.test_hypotheses,
                                             builtin=s.data is None))
        metrics = {
            **scores,
            "split": "test" if "test" in corpus.pairs else "valid",
            "beam_size": s.beam_size,
            "length_penalty": s.length_penalty,
            "steps": result.step,
            "stopped_by": result.stopped_by,
            "train_seconds": round(result.train_seconds, 1),
            "train_tokens": result.train_tokens,
            "train_tokens_per_second": round(result.tokens_per_second),
            "eval_seconds": round(time.perf_counter() - start, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "preset": s.preset,
            "precision": precision,
            "vocab_size": self.tokenizer.vocab_size,
            "averaged_checkpoints": getattr(self, "averaged", []),
            "evaluations": result.evaluations,
        }
        hyp_text = "".join(h + "\n" for h in self.test_hypotheses)
        atomic_write(Path(s.out) / f"{metrics['split']}.hyp",
                     lambda t: Path(t).write_text(hyp_text))
        return metrics


def run_translation(settings: TranslationSettings, resume: bool = False, *,
                    overwrite: bool = False) -> RunOutcome:
    """Train and test; the outcome keeps the model and the task's corpus and hypotheses.
    `overwrite` replaces a run already in `settings.out` (see `run_task`)."""
    return run_task(TranslationTask(settings), resume, overwrite=overwrite)


def train_translation(settings: TranslationSettings, resume: bool = False, *,
                      overwrite: bool = False) -> dict[str, Any]:
    """Train, evaluate on the test split, write the model folder and metrics.json."""
    return run_translation(settings, resume, overwrite=overwrite).metrics


__all__ = ["TranslationSettings", "TranslationTask", "encode_pairs", "evaluate_pairs",
           "filter_long", "load_recipe", "load_settings", "loss_fn", "prepare_corpus",
           "recipe_names", "resolve_device", "run_translation", "settings_from_dict",
           "train_translation", "translate"]
