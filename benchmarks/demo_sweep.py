"""How the `make demo` model size was chosen: train one configuration of the encoder-decoder
Transformer on the built-in corpus for a fixed number of training seconds and print greedy BLEU
on the first 300 validation sentences every 200 steps (one JSON line each).

    python benchmarks/demo_sweep.py '{"n_layers": 1, "n_decoder_layers": 2}' 270

The JSON object holds model-config overrides on top of d_model=128, d_ff=512, 3+3 layers,
pre-norm, no dropout, label smoothing 0.1, plus the optimisation keys "vocab", "max_tokens",
"warmup", "scale" (lr multiplier on the paper's schedule) and "clip". Results of the sweep
behind the demo preset: benchmarks/results/demo_sweep.jsonl (2-core Xeon, torch 2.13 CPU,
fp32; one seed, so differences of a few BLEU are noise).
"""

from __future__ import annotations

import json
import sys

import torch

from attnlab.data.batching import TokenBatches
from attnlab.evaluation import score_corpus
from attnlab.models import build_model
from attnlab.tasks.translation import (
    TranslationSettings,
    encode_pairs,
    filter_long,
    loss_fn,
    prepare_corpus,
    translate,
)
from attnlab.tokenizers import Tokenizer
from attnlab.training.schedule import inverse_sqrt_warmup
from attnlab.training.trainer import Trainer, TrainerConfig

BASE = dict(d_model=128, d_ff=512, n_layers=3, dropout=0.0, norm_first=True, label_smoothing=0.1)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    label, budget = argv[0], float(argv[1])
    overrides = json.loads(label)
    torch.manual_seed(1)
    settings = TranslationSettings(vocab_size=overrides.pop("vocab", 4000))
    corpus = prepare_corpus(settings)
    tokenizer = Tokenizer.train_bpe((t for p in corpus.split("train") for t in p),
                                    vocab_size=settings.vocab_size)
    train = filter_long(encode_pairs(tokenizer, corpus.split("train")), 128, "train")
    batches = TokenBatches(train, max_tokens=overrides.pop("max_tokens", 3000),
                           pad_id=tokenizer.pad_id, seed=1)
    warmup, scale = overrides.pop("warmup", 300), overrides.pop("scale", 2.0)
    clip = overrides.pop("clip", 1.0)
    model = build_model("transformer-small", vocab_size=tokenizer.vocab_size,
                        **{**BASE, **overrides})
    valid = corpus.split("valid")[:300]
    trainer: Trainer | None = None

    def evaluate(m, step):
        hypotheses = translate(m, tokenizer, [s for s, _ in valid], beam_size=1)
        bleu = score_corpus(hypotheses, [t for _, t in valid]).bleu
        print(json.dumps({"cfg": label, "step": step, "sec": round(trainer.train_seconds),
                          "bleu": round(bleu, 1)}), flush=True)
        return {}

    d_model = model.config.d_model
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9)
    trainer = Trainer(
        model, optimizer,
        lambda step: inverse_sqrt_warmup(step, d_model=d_model, warmup_steps=warmup, scale=scale),
        batches, loss_fn,
        TrainerConfig(max_steps=10**6, time_budget=budget, clip_norm=clip, progress=False,
                      eval_every=200),
        evaluate=evaluate,
    )
    result = trainer.fit()
    print(json.dumps({"cfg": label, "final": True, "steps": result.step,
                      "tok_s": round(result.tokens_per_second)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
