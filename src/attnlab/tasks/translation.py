"""Neural machine translation end to end, the job the 2017 Transformer was built for
(Vaswani et al. 2017, "Attention Is All You Need", sec. 5).

corpus (built-in or the user's files) -> joint BPE (`tokenizers`) -> token-count batches ->
the run routine (Adam 0.9/0.98/1e-9, inverse-sqrt warmup, label smoothing 0.1 applied here,
clipping, accumulation, checkpoints) -> model folder (config.json, model.safetensors,
tokenizer.json, train_settings.json) -> beam search -> sacreBLEU BLEU / chrF with signature,
by length bucket -> metrics.json and a loss curve.

`--data` may also name a folder `attnlab prepare translate` wrote (`tasks/translation_data.py`):
its tokenizer, and training pairs read from memory-mapped shards a batch at a time.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.data.batching import TokenBatches, iterate_in_order
from attnlab.data.normalize import NORMAL_FORMS
from attnlab.data.parallel import (  # filter_long: public name kept here (it moved there)
    ParallelCorpus,
    filter_long,
    load_corpus,
    warn_before_training,
)
from attnlab.data.shards import is_prepared
from attnlab.errors import MissingFileError
from attnlab.evaluation import score_corpus
from attnlab.evaluation.baselines import baseline_warning, beats_copy, translation_baselines
from attnlab.models import build_model
from attnlab.models.common import shift_right
from attnlab.serialization import atomic_write
from attnlab.tasks.translation_auto import (
    AUTO,
    choose_max_len,
    choose_preset,
    choose_vocab_size,
)
from attnlab.tasks.translation_data import (  # encode_pairs: public name kept here
    PreparedTranslation,
    encode_pairs,
    train_joint_bpe,
)
from attnlab.tasks.translation_decode import (  # noqa: F401  (public names kept here)
    evaluate_pairs,
    score_test_buckets,
    translate,
)
from attnlab.training.checkpoint import average_last  # noqa: F401  (alias: it moved there)
from attnlab.training.device import resolve_device  # noqa: F401  (alias: it moved there)
from attnlab.training.optim import adam
from attnlab.training.run import RunOutcome, Task, model_device, run_task, write_json
from attnlab.training.schedule import inverse_sqrt_warmup, warmup_linear_decay
from attnlab.training.settings import (
    KEEP_CHOICES,
    RunSettings,
    SettingError,
    check_choice,
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


SCHEDULES = ("budget", "inverse-sqrt")
# Peak learning rate of the budget schedule per d_model^-0.5: the demo's measured peak
# (2 x 128^-0.5 x 300^-0.5 = 0.0102 at d_model=128, pre-norm), scaled like the paper's.
PEAK_LR_PER_INVERSE_SQRT_D = 0.1155
# The paper's post-norm block diverges or stalls at that peak (translation_auto.PRE_NORM):
# 0.032 per d_model^-0.5 (0.002 at d_model 256) is the lower peak it was measured to take.
POST_NORM_PEAK_LR_PER_INVERSE_SQRT_D = 0.032


def seq2seq_presets() -> list[str]:
    from attnlab.models import list_models

    return [name for kind in SEQ2SEQ_TYPES for name in list_models(kind)]


def preset_choices() -> list[str]:
    return [AUTO, *seq2seq_presets()]


@dataclass
class TranslationSettings(RunSettings):
    """Everything `attnlab train translate` takes; saved as `train_settings.json`."""

    out: str = setting("runs/translate", "output folder (model, checkpoints, metrics)")
    preset: str = setting(AUTO, "model (an encoder-decoder preset); auto: from the corpus "
                                "size, --time-budget and device (tasks/translation_auto.py)",
                          choices=preset_choices)
    data: str | None = setting(None, "corpus folder, or a folder `attnlab prepare translate` "
                                     "wrote (none: the built-in corpus)", data=True)
    src_lang: str | None = setting(None, "source file suffix, e.g. en")
    tgt_lang: str | None = setting(None, "target file suffix, e.g. de")
    tsv: bool = setting(False, "read {split}.tsv (source TAB target)")
    builtin_train_size: int = setting(60_000, "training pairs generated for the built-in corpus")
    builtin_valid_size: int = setting(1000, "validation pairs of the built-in corpus")
    builtin_test_size: int = setting(2000, "test pairs of the built-in corpus")
    vocab_size: int | None = setting(None, "joint BPE vocabulary size (none: from the "
                                           "corpus size)")
    max_len: int | None = setting(None, "drop training pairs longer than this many subwords, "
                                        "counted in the log (none: the 99.5th percentile)")
    normalize: str = setting("nfc", "Unicode normalisation of the corpus and of input text",
                             choices=NORMAL_FORMS)
    max_tokens: int = setting(4096, "padded tokens per micro-batch and side (training and "
                                    "decoding)")
    max_steps: int = setting(100_000, "optimizer steps")
    schedule: str = setting("budget", "learning rate: budget = linear warmup over "
                                      "--warmup-fraction of the planned steps, then linear "
                                      "decay to their end (planned from --max-steps, or from "
                                      "--time-budget at the measured speed); inverse-sqrt = "
                                      "the paper's (--warmup-steps)", choices=SCHEDULES)
    warmup_fraction: float = setting(0.1, "budget schedule: share of the planned steps that "
                                          "warm up")
    peak_lr: float | None = setting(None, "budget schedule: peak learning rate (none: "
                                          "0.1155 * d_model^-0.5 * lr_scale for pre-norm "
                                          "models, 0.0102 at d_model 128; 0.032 * "
                                          "d_model^-0.5 * lr_scale for post-norm ones)")
    warmup_steps: int = setting(4000, "inverse-sqrt schedule: linear warmup steps")
    lr_scale: float = setting(1.0, "multiplier on the learning rate (inverse-sqrt: on the "
                                   "paper's d^-0.5 * min(step^-0.5, step*warmup^-1.5))")
    label_smoothing: float = setting(0.1, "label smoothing epsilon of the training loss")
    save_every: int = setting(1000, "checkpoint every N steps (0: only at the end)")
    keep_last: int = setting(5, "checkpoints kept (for averaging)")
    average_last: int = setting(0, "test the mean of the last N checkpoints (0: the final "
                                   "weights; Vaswani et al. 2017); needs --keep last")
    beam_size: int = setting(4, "beam size for the test set")
    length_penalty: float = setting(0.6, "GNMT length penalty alpha")
    eval_sentences: int = setting(200, "validation sentences translated (greedy) at each "
                                       "evaluation (the same ones each time)")
    # Run settings with translation's own defaults: ten validations spread over the planned
    # steps, and the weights with the best validation BLEU written at the end.
    evaluations: int = setting(10, "also validate this many times, evenly over the planned "
                                   "steps (--max-steps, or what --time-budget allows at the "
                                   "measured speed); 0: only --eval-every")
    keep: str = setting("best", "weights written at the end: best by validation BLEU "
                                "(greedy, --eval-sentences), or last", choices=KEEP_CHOICES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_ints(self, ("builtin_train_size", "builtin_valid_size",
                                   "builtin_test_size", "max_tokens",
                                   "warmup_steps", "beam_size", "eval_sentences"))
        check_positive_ints(self, [name for name in ("vocab_size", "max_len")
                                   if getattr(self, name) is not None])
        check_non_negative_ints(self, ("average_last",))
        check_range(self, "label_smoothing", 0, 1)
        check_range(self, "warmup_fraction", 0, 1)
        check_positive_numbers(self, ("lr_scale",))
        check_positive_numbers(self, ("peak_lr",), allow_none=True)
        check_choice(self, "schedule", SCHEDULES)
        check_choice(self, "normalize", NORMAL_FORMS)
        check_choice(self, "preset", preset_choices(),
                     "auto or an encoder-decoder model, one of")
        if self.average_last > self.keep_last:
            raise SettingError("average_last", f"average_last={self.average_last} needs "
                                               f"keep_last >= it, got keep_last={self.keep_last}")
        if self.average_last and self.keep == "best":
            raise SettingError("average_last", f"average_last={self.average_last} averages the "
                                               "last checkpoints, so it needs keep='last' "
                                               "(--keep last), got keep='best'")


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
    return load_corpus(settings.data, settings.src_lang, settings.tgt_lang, tsv=settings.tsv,
                       normalize=settings.normalize)


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


CHOICES_NAME = "auto_choices.json"  # what the `auto` settings of a run became


def read_choices(out: Path) -> dict[str, Any]:
    """The choices a run recorded at its start ({} for runs of attnlab < 0.4)."""
    path = out / CHOICES_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


class TranslationTask(Task):
    """The translation recipe on the run routine. After the run it keeps what the demo prints:
    `corpus`, `tokenizer`, `test_pairs` and `test_hypotheses`; `choices` holds what each
    `auto` setting became and why."""

    name = "translate"
    settings: TranslationSettings
    best_metric = ("valid_bleu_greedy", "max")

    def __init__(self, settings: TranslationSettings) -> None:
        super().__init__(settings)
        self.choices: dict[str, dict[str, Any]] = {}
        self.prepared: PreparedTranslation | None = None  # --data names a prepared folder

    def choose(self, name: str, choice: Any) -> Any:
        """Record (and log once) what an `auto` setting became."""
        if name not in self.choices:
            log.info("auto %s: %s (%s)", name, choice.value, choice.reason)
        self.choices[name] = {"value": choice.value, "reason": choice.reason}
        return choice.value

    def load_data(self) -> None:
        """The corpus, every split checked (data/parallel.py); the checks that need subwords
        (--max-len) run in `encode_splits` as soon as the tokenizer exists."""
        if is_prepared(self.settings.data):  # train stays on disk; valid / test are text
            self.prepared = PreparedTranslation.open(self.settings)
            self.corpus = self.prepared.corpus
            warn_before_training(self.corpus, self.settings.data)
            return
        self.corpus = prepare_corpus(self.settings)
        if self.settings.data is not None:
            warn_before_training(self.corpus, self.settings.data)

    def encode_splits(self) -> None:
        """Encode train (pairs over the length cap dropped and counted; none left is a
        DataError) and valid, before the run routine writes anything (new run) or trains
        (resume)."""
        s, corpus = self.settings, self.corpus
        if self.prepared is not None:
            self.max_len, self.train_encoded = self.prepared.train_pairs(s.max_len, self.choose)
            self.dropped_long = self.prepared.train_size - len(self.train_encoded)
        else:
            encoded = encode_pairs(self.tokenizer, corpus.split("train"))
            max_len = s.max_len
            if max_len is None:
                max_len = self.choose("max_len",
                                      choose_max_len([max(map(len, p)) for p in encoded]))
            self.max_len = max_len
            self.train_encoded = filter_long(encoded, max_len, corpus.sources["train"])
            self.dropped_long = len(encoded) - len(self.train_encoded)
        self.valid = corpus.split("valid")
        self.valid_encoded = encode_pairs(self.tokenizer, self.valid)

    def prepare_new_run(self) -> None:
        """A new run's joint BPE and its encoded, checked splits; writes nothing, so the run
        routine may call it before it creates or clears the run folder."""
        s = self.settings
        if self.prepared is not None:  # its tokenizer, and what `auto` chose at prepare time
            self.tokenizer = self.prepared.tokenizer()
            self.choices.update(self.prepared.meta["auto"])
            self.encode_splits()
            return
        vocab_size = s.vocab_size
        if vocab_size is None:
            words = sum(len(a.split()) + len(b.split()) for a, b in self.corpus.split("train"))
            vocab_size = self.choose("vocab_size", choose_vocab_size(words))
        train_text = (text for pair in self.corpus.split("train") for text in pair)
        self.tokenizer = train_joint_bpe(train_text, vocab_size, s.normalize)
        self.encode_splits()

    def train_size(self) -> int:
        """Training pairs of the corpus (before the length cap)."""
        return (self.prepared.train_size if self.prepared is not None
                else len(self.corpus.split("train")))

    def train_targets(self) -> list[str]:
        """The training targets the most-frequent-target baseline counts (a prepared folder
        kept the answer: the most frequent of its first MOST_FREQUENT_SAMPLE)."""
        if self.prepared is not None:
            return [self.prepared.meta["most_frequent_target"]]
        return [tgt for _, tgt in self.corpus.split("train")]

    def model_max_seq_len(self) -> int:
        """Positions for the training length cap and the longest held-out sentence, with room
        for a longer output (at least 256), so decoding the test split never meets a sentence
        too long for the model."""
        held_out = [pair for split, pairs in self.corpus.pairs.items()
                    if split not in ("train", "valid")
                    for pair in encode_pairs(self.tokenizer, pairs)]  # valid is encoded
        longest = max((len(ids) for pair in (*self.valid_encoded, *held_out) for ids in pair),
                      default=0)
        longest = max(longest, self.max_len)
        return max(256, math.ceil((longest * 3 // 2 + 16) / 64) * 64)

    def new_model(self, out: Path) -> nn.Module:
        s = self.settings
        if self.tokenizer is None:  # not yet prepared by the run routine
            self.prepare_new_run()
        preset, chosen = s.preset, {}
        if preset == AUTO:
            choice = choose_preset(self.train_size(), s.time_budget,
                                   resolve_device(s.device).type)
            preset, chosen = self.choose("preset", choice), choice.overrides
        self.preset = preset
        overrides = {**chosen, "max_seq_len": self.model_max_seq_len(), **s.model_overrides}
        model = build_model(preset, vocab_size=self.tokenizer.vocab_size, **overrides)
        write_json(out / CHOICES_NAME, {"preset": preset, "auto": self.choices})
        return model

    def restore(self, out: Path) -> nn.Module:
        if not (out / "tokenizer.json").is_file():
            raise MissingFileError(f"--resume: {out} holds no run to resume (no tokenizer.json)")
        model = super().restore(out)
        self.tokenizer.require_specials(dict(zip(("pad", "bos", "eos", "unk"), range(4),
                                                 strict=True)), f"--resume: {out}")
        saved = read_choices(out)
        self.preset = saved.get("preset", self.settings.preset)
        self.choices.update(saved.get("auto", {}))
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
        post_norm = not getattr(model.config, "norm_first", True)
        self.peak_per_inverse_sqrt_d = (POST_NORM_PEAK_LR_PER_INVERSE_SQRT_D if post_norm
                                        else PEAK_LR_PER_INVERSE_SQRT_D)
        return adam(model.parameters(), decoupled_weight_decay=False, lr=0.0,
                    betas=(0.9, 0.98), eps=1e-9)

    def lr(self, step: int) -> float:
        s = self.settings
        if s.schedule == "inverse-sqrt":
            return inverse_sqrt_warmup(step, d_model=self.d_model, warmup_steps=s.warmup_steps,
                                       scale=s.lr_scale)
        peak = s.peak_lr or self.peak_per_inverse_sqrt_d * self.d_model**-0.5 * s.lr_scale
        return warmup_linear_decay(step, peak_lr=peak, total_steps=self.plan.total,
                                   warmup_fraction=s.warmup_fraction)

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
        baselines = translation_baselines([src for src, _ in self.test_pairs],
                                          [tgt for _, tgt in self.test_pairs],
                                          self.train_targets())
        warning = baseline_warning(scores["bleu"], baselines)
        if warning:
            log.warning("%s", warning)
        metrics = {
            **scores,
            "baselines": baselines,
            "beats_copy": beats_copy(scores["bleu"], baselines),
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
            "preset": self.preset,
            "precision": precision,
            "vocab_size": self.tokenizer.vocab_size,
            "max_len": self.max_len,
            "train_pairs_over_max_len": self.dropped_long,
            "auto": self.choices,
            "schedule": s.schedule,
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
