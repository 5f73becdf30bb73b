"""Neural machine translation end to end, the job the 2017 Transformer was built for.

corpus (built-in or the user's files) -> joint BPE (`tokenizers`) -> token-count batches ->
Trainer (Adam 0.9/0.98/1e-9, inverse-sqrt warmup, label smoothing 0.1, clipping, accumulation)
-> model folder (config.json, model.safetensors, tokenizer.json, checkpoints/) -> beam search
-> sacreBLEU BLEU / chrF with signature, by length bucket -> metrics.json and a loss curve.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.data.batching import TokenBatches, iterate_in_order
from attnlab.data.parallel import DataError, ParallelCorpus, load_corpus
from attnlab.evaluation import bucket_bleu, score_corpus
from attnlab.generation import greedy_decode
from attnlab.generation.beam import beam_search
from attnlab.models import build_model
from attnlab.models.common import check_positive_ints
from attnlab.models.io import from_pretrained, save_pretrained
from attnlab.serialization import atomic_write
from attnlab.tokenizers import Tokenizer
from attnlab.training.checkpoint import average_checkpoints, list_checkpoints
from attnlab.training.schedule import inverse_sqrt_warmup
from attnlab.training.trainer import (
    Trainer,
    TrainerConfig,
    TrainResult,
    resolve_precision,
)

log = logging.getLogger(__name__)


# Model families the translation task trains: the 2017 Transformer and the RNN / ConvS2S
# baselines share its interface (encode, decode, lm_head, new_cache, label_smoothing).
SEQ2SEQ_TYPES = ("transformer", "rnn", "convs2s")


@dataclass
class TranslationSettings:
    """Everything `attnlab train translate` takes; saved as `train_settings.json`."""

    out: str = "runs/translate"
    preset: str = "transformer-small"
    data: str | None = None  # None = the built-in corpus
    src_lang: str | None = None
    tgt_lang: str | None = None
    tsv: bool = False
    builtin_train_size: int = 60_000
    builtin_valid_size: int = 1000
    builtin_test_size: int = 2000
    vocab_size: int = 4000
    max_len: int = 128  # training pairs longer than this (in subwords) are skipped
    max_tokens: int = 4096  # per micro-batch, padding included
    grad_accum: int = 1
    max_steps: int = 100_000
    time_budget: float | None = None
    warmup_steps: int = 4000
    lr_scale: float = 1.0  # multiplies the paper's schedule
    label_smoothing: float = 0.1
    clip_norm: float | None = 1.0
    eval_every: int = 0
    save_every: int = 1000
    keep_last: int = 5
    seed: int = 1
    precision: str = "fp32"  # "bf16": autocast matmuls (fp32 weights); "auto": bf16 where native
    device: str = "auto"  # "cpu", "cuda", "cuda:1", ...; "auto": cuda when available
    average_last: int = 0  # >0: test the mean of the last N checkpoints (Vaswani et al. 2017)
    beam_size: int = 4
    length_penalty: float = 0.6
    eval_sentences: int = 200  # validation sentences translated (greedy) at each evaluation
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive_ints(self, ("builtin_train_size", "builtin_valid_size",
                                   "builtin_test_size", "vocab_size", "max_len", "max_tokens",
                                   "grad_accum", "max_steps", "warmup_steps", "keep_last",
                                   "beam_size", "eval_sentences"))
        for name in ("eval_every", "save_every", "average_last"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.lr_scale <= 0 or (self.time_budget is not None and self.time_budget <= 0):
            raise ValueError(f"lr_scale and time_budget must be positive, got {self.lr_scale} "
                             f"and {self.time_budget}")
        from attnlab.models import list_models

        presets = [name for kind in SEQ2SEQ_TYPES for name in list_models(kind)]
        if self.preset not in presets:
            raise ValueError(f"preset must be an encoder-decoder model, one of {presets}, "
                             f"got {self.preset!r}")
        if self.average_last > self.keep_last:
            raise ValueError(f"average_last={self.average_last} needs keep_last >= it, "
                             f"got keep_last={self.keep_last}")


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when a GPU is visible, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU")
    return resolved


def settings_from_dict(values: dict[str, Any], where: str) -> TranslationSettings:
    """TranslationSettings from a JSON object, naming unknown fields (keys starting with "_" are
    comments and ignored)."""
    known = set(TranslationSettings.__dataclass_fields__)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    return TranslationSettings(**values)


RECIPES = Path(__file__).parent / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A shipped recipe by name (e.g. "wmt14-en-de-base") or a JSON file of settings."""
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPES / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--config {name_or_path!r} is neither a file nor a recipe; recipes: "
            f"{', '.join(recipe_names())}"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    settings_from_dict(values, str(path))  # validate the field names now
    return {k: v for k, v in values.items() if not k.startswith("_")}


def load_settings(out: str | Path) -> TranslationSettings:
    """The settings a run in `out` was started with (for --resume and evaluation)."""
    path = Path(out) / "train_settings.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} is not a translation run folder")
    return settings_from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))


def encode_pairs(
    tokenizer: Tokenizer, pairs: list[tuple[str, str]]
) -> list[tuple[list[int], list[int]]]:
    """Source and target ids, each ending in </s>."""
    src = tokenizer.encode_batch([s for s, _ in pairs], add_eos=True)
    tgt = tokenizer.encode_batch([t for _, t in pairs], add_eos=True)
    return list(zip(src, tgt, strict=True))


def filter_long(
    encoded: list[tuple[list[int], list[int]]], max_len: int, where: str
) -> list[tuple[list[int], list[int]]]:
    kept = [p for p in encoded if len(p[0]) <= max_len and len(p[1]) <= max_len]
    dropped = len(encoded) - len(kept)
    if dropped:
        lines = [i + 1 for i, p in enumerate(encoded) if max(map(len, p)) > max_len][:5]
        log.warning("%s: skipped %d pair(s) longer than --max-len %d subwords (lines %s ...)",
                    where, dropped, max_len, lines)
    if not kept:
        raise DataError(f"{where}: every pair is longer than --max-len {max_len}; raise it")
    return kept


def prepare_corpus(settings: TranslationSettings) -> ParallelCorpus:
    if settings.data is None:
        from attnlab.data.corpus import generate_corpus

        corpus = generate_corpus(seed=0, train_size=settings.builtin_train_size,
                                 valid_size=settings.builtin_valid_size,
                                 test_size=settings.builtin_test_size)
        splits = {name: corpus[name] for name in ("train", "valid", "test")}
        return ParallelCorpus(splits, {name: "built-in corpus" for name in splits},
                              test_buckets={"ambiguous": corpus.ambiguous_test})
    return load_corpus(settings.data, settings.src_lang, settings.tgt_lang, tsv=settings.tsv)


def translate(
    model: nn.Module, tokenizer: Tokenizer, sentences: list[str], *, beam_size: int = 4,
    length_penalty: float = 0.6, max_tokens: int = 6000,
) -> list[str]:
    """Translate sentences (batched by length, returned in input order)."""
    if not sentences:
        return []
    model.eval()
    encoded = [(ids, ids) for ids in tokenizer.encode_batch(sentences, add_eos=True)]
    limit = model.config.max_seq_len
    for i, (ids, _) in enumerate(encoded):
        if len(ids) > limit:
            raise ValueError(
                f"sentence {i + 1} has {len(ids)} subwords, more than the model's "
                f"max_seq_len={limit}; split it"
            )
    outputs: list[str] = [""] * len(sentences)
    device = next(model.parameters()).device
    for indices, batch in iterate_in_order(encoded, max_tokens, tokenizer.pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            if beam_size == 1:
                longest = int(batch["attention_mask"].sum(1).max())
                ids = greedy_decode(model, batch["input_ids"], batch["attention_mask"],
                                    max_new_tokens=min(limit - 1, longest + 50))
            else:
                ids = beam_search(model, batch["input_ids"], batch["attention_mask"],
                                  beam_size=beam_size, length_penalty=length_penalty).sequences
        for row, index in enumerate(indices):
            outputs[index] = tokenizer.decode(ids[row].tolist())
    return outputs


def evaluate_pairs(
    model: nn.Module, tokenizer: Tokenizer, pairs: list[tuple[str, str]], *, beam_size: int = 4,
    length_penalty: float = 0.6,
) -> dict[str, Any]:
    sources = [s for s, _ in pairs]
    references = [t for _, t in pairs]
    hypotheses = translate(model, tokenizer, sources, beam_size=beam_size,
                           length_penalty=length_penalty)
    scores = score_corpus(hypotheses, references)
    return {**scores.as_dict(), "buckets": bucket_bleu(sources, hypotheses, references),
            "hypotheses": hypotheses}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return model(**batch).loss, int((batch["labels"] != -100).sum())


def train_translation(settings: TranslationSettings, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate on the test split, write the model folder and metrics.json."""
    out = Path(settings.out)
    torch.manual_seed(settings.seed)
    corpus = prepare_corpus(settings)
    if resume:
        if not (out / "tokenizer.json").is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run to resume (no tokenizer.json)")
        tokenizer = Tokenizer.load(out / "tokenizer.json")
        model = from_pretrained(out)
    else:
        log.info("training a %d-entry BPE vocabulary", settings.vocab_size)
        train_text = (text for pair in corpus.split("train") for text in pair)
        tokenizer = Tokenizer.train_bpe(train_text, vocab_size=settings.vocab_size)
        overrides = {"max_seq_len": 256, **settings.model_overrides}
        model = build_model(settings.preset, vocab_size=tokenizer.vocab_size,
                            label_smoothing=settings.label_smoothing, **overrides)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out / "tokenizer.json")
        save_pretrained(model, out)
        settings_text = json.dumps(asdict(settings), indent=2) + "\n"
        atomic_write(out / "train_settings.json", lambda t: Path(t).write_text(settings_text))
    train = filter_long(encode_pairs(tokenizer, corpus.split("train")), settings.max_len,
                        corpus.sources["train"])
    batches = TokenBatches(train, max_tokens=settings.max_tokens, pad_id=tokenizer.pad_id,
                           seed=settings.seed)
    valid = corpus.split("valid")
    valid_encoded = encode_pairs(tokenizer, valid)
    d_model = model.config.d_model

    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        losses, tokens = 0.0, 0
        for _, batch in iterate_in_order(valid_encoded, settings.max_tokens, tokenizer.pad_id):
            loss, n = loss_fn(model, batch)
            losses, tokens = losses + loss.item() * n, tokens + n
        sample = valid[: settings.eval_sentences]
        hypotheses = translate(model, tokenizer, [s for s, _ in sample], beam_size=1)
        bleu = score_corpus(hypotheses, [t for _, t in sample]).bleu
        return {"valid_loss": losses / tokens, "valid_bleu_greedy": bleu}

    device = resolve_device(settings.device)
    model.to(device)
    precision = resolve_precision(settings.precision, device.type)
    log.info("training on %s in %s", device, precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9)
    trainer = Trainer(
        model, optimizer,
        lambda step: inverse_sqrt_warmup(step, d_model=d_model,
                                         warmup_steps=settings.warmup_steps,
                                         scale=settings.lr_scale),
        batches, loss_fn,
        TrainerConfig(max_steps=settings.max_steps, time_budget=settings.time_budget,
                      grad_accum=settings.grad_accum, clip_norm=settings.clip_norm,
                      eval_every=settings.eval_every, save_every=settings.save_every,
                      keep_last=settings.keep_last,
                      precision=precision),
        checkpoint_dir=out / "checkpoints", evaluate=evaluate,
    )
    if resume and not trainer.resume():
        log.warning("no checkpoint in %s: starting from step 0", out / "checkpoints")
    result = trainer.fit()
    if result.stopped_by == "interrupt":
        save_pretrained(model, out)
        log.warning("interrupted at step %d; resume with --resume", result.step)
        return {"stopped_by": "interrupt", "step": result.step}
    averaged = average_last(model, out / "checkpoints", settings.average_last)
    save_pretrained(model, out)
    return finish(out, settings, model, tokenizer, corpus, result, averaged)


def average_last(model: nn.Module, checkpoint_dir: Path, count: int) -> list[str]:
    """Load the mean of the newest `count` checkpoints into `model` (none when count is 0)."""
    if count <= 0:
        return []
    chosen = list_checkpoints(checkpoint_dir)[-count:]
    if len(chosen) < count:
        log.warning("average_last=%d but only %d checkpoint(s) exist; averaging those",
                    count, len(chosen))
    average_checkpoints(chosen, model)
    return [p.name for p in chosen]


def score_test_buckets(corpus: ParallelCorpus, hypotheses: list[str],
                       builtin: bool) -> dict[str, Any]:
    """BLEU on each named test subset; on the built-in corpus also the share of ambiguous nouns
    translated with the sense their context word calls for."""
    results: dict[str, Any] = {}
    test = corpus.split("test")
    for name, indices in corpus.test_buckets.items():
        if not indices:
            continue
        sources = [test[i][0] for i in indices]
        hyps = [hypotheses[i] for i in indices]
        entry: dict[str, Any] = {"sentences": len(indices),
                                 "bleu": score_corpus(hyps, [test[i][1] for i in indices]).bleu}
        if builtin and name == "ambiguous":
            from attnlab.data.corpus import sense_accuracy

            entry["sense_accuracy"] = sense_accuracy(sources, hyps)
        results[f"test_{name}"] = entry
    return results


def finish(out: Path, settings: TranslationSettings, model: nn.Module, tokenizer: Tokenizer,
           corpus: ParallelCorpus, result: TrainResult,
           averaged: list[str] | None = None) -> dict[str, Any]:
    """Test-set evaluation with beam search, metrics.json and the loss curve."""
    from attnlab.viz.curves import plot_training_curves

    test_pairs = corpus.pairs.get("test") or corpus.split("valid")
    start = time.perf_counter()
    scores = evaluate_pairs(model, tokenizer, test_pairs, beam_size=settings.beam_size,
                            length_penalty=settings.length_penalty)
    hypotheses = scores.pop("hypotheses")
    if "test" in corpus.pairs:
        scores.update(score_test_buckets(corpus, hypotheses, builtin=settings.data is None))
    metrics = {
        **scores,
        "split": "test" if "test" in corpus.pairs else "valid",
        "beam_size": settings.beam_size,
        "length_penalty": settings.length_penalty,
        "steps": result.step,
        "stopped_by": result.stopped_by,
        "train_seconds": round(result.train_seconds, 1),
        "train_tokens": result.train_tokens,
        "train_tokens_per_second": round(result.tokens_per_second),
        "eval_seconds": round(time.perf_counter() - start, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "preset": settings.preset,
        "precision": resolve_precision(settings.precision,
                                       next(model.parameters()).device.type),
        "vocab_size": tokenizer.vocab_size,
        "averaged_checkpoints": averaged or [],
        "evaluations": result.evaluations,
    }
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda t: Path(t).write_text(text))
    hyp_text = "".join(h + "\n" for h in hypotheses)
    atomic_write(out / f"{metrics['split']}.hyp", lambda t: Path(t).write_text(hyp_text))
    plot_training_curves(result.history, result.evaluations, out / "loss_curve.png")
    return metrics
