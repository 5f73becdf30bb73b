"""attnlab vs Hugging Face `transformers` MarianMTModel: beam-4 translation speed (sentences/s)
on the CPU, same config, same weights, same inputs, one process (issue 19, item 5).

The model has the shape of Helsinki-NLP/opus-mt-en-de (Tiedemann and Thottingal, 2020: the
Transformer-base of Vaswani et al., 2017 as Marian trains it; d_model 512, 6 + 6 layers,
8 heads, feed-forward 2048, SiLU, 58101-token vocabulary shared by encoder, decoder and output,
sinusoidal positions) with random, seeded weights; nothing is downloaded. It is built as a
`MarianMTModel` and converted to attnlab's Transformer through `attnlab.io.hf.marian` (the
weights OPUS-MT folders load through).

Both sides search the same thing:

- beam 4, `max_new_tokens` new tokens after the decoder start, length penalty 0 on both sides
  (attnlab's GNMT ((5 + |Y|) / 6) ** alpha and transformers' |Y| ** alpha agree only at
  alpha = 0; with every hypothesis at the same length the penalty would not change the ranking
  anyway), no forced EOS (MarianConfig forces it at the maximum length by default, attnlab
  does not), transformers' default `early_stopping=False`;
- the EOS and pad entries of `final_logits_bias` are -1e4 on both sides (part of the weights):
  no hypothesis ends early, so both sides decode exactly `max_new_tokens` steps for every
  sentence (random weights would rarely end anyway; this makes it certain) and neither emits
  the pad (OPUS-MT's generation config forbids it with bad_words_ids);
- sources are 20-30 tokens (batch 1: 25), right-padded with an attention mask.

The tokens are compared (`same_tokens`): equal up to float rounding, a near-tie between two
hypotheses may break differently on the two sides; a difference is recorded, never hidden.

Beside each ratio, `matmul_floor_seconds` is the time of the matrix products the search cannot
avoid, alone (every decoder projection and the 58101-wide output layer on batch x beam rows,
`max_new_tokens` times, with the same weights, in fp32 as on both sides), and
`best_possible_ratio` is transformers' time over it: what an implementation doing nothing but
those products would reach. At batch 16 the output layer alone is 3.8 GFLOP a step and at
batch 1 (4 rows) a step reads ~200 MB of weights, the same on both sides: most of either side's
time is in the same GEMMs, which bounds the ratio.

Runs alternate between the two sides (order flipped every repeat); each figure is the median of
--repeats runs after one warm-up run of each side (which also gives the tokens compared).
The torch thread count is recorded (--threads, default torch's).

    python benchmarks/vs_marian.py            # opus-mt-en-de shape, batch 1 and 16 (~2 min idle)
    python benchmarks/vs_marian.py --quick    # tiny model, seconds

Writes benchmarks/results/vs_marian.json. Target (issue 19): >= 1.5x at batch 1 and 16.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import alternate  # noqa: E402

from attnlab.evaluation.machine import record_header, write_record  # noqa: E402
from attnlab.evaluation.roofline import cpu_flags  # noqa: E402
from attnlab.io.hf import marian  # noqa: E402
from attnlab.models.transformer import Transformer, TransformerConfig  # noqa: E402
from attnlab.nn.compile import compile_blocks  # noqa: E402

SCRIPT = "benchmarks/vs_marian.py"
OUT = Path(__file__).resolve().parent / "results" / "vs_marian.json"
EOS = 0
# Helsinki-NLP/opus-mt-en-de's config.json, less its tokens' names (pad = decoder start = last id).
OPUS_MT_EN_DE = dict(vocab_size=58101, decoder_vocab_size=58101, d_model=512, encoder_layers=6,
                     decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                     encoder_ffn_dim=2048, decoder_ffn_dim=2048, activation_function="swish",
                     max_position_embeddings=512, scale_embedding=True)
QUICK = dict(OPUS_MT_EN_DE, vocab_size=500, decoder_vocab_size=500, d_model=64, encoder_layers=2,
             decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128)


def build_pair(values: dict, seed: int = 0) -> tuple[Transformer, torch.nn.Module]:
    """A MarianMTModel with random weights (seeded) and attnlab's Transformer holding the same
    weights, both in eval mode. EOS and pad get -1e4 in the output bias (see the docstring)."""
    import transformers

    pad = values["vocab_size"] - 1
    torch.manual_seed(seed)
    hf_config = transformers.MarianConfig(
        **values, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=EOS,
        forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    hf = transformers.MarianMTModel(hf_config)
    with torch.no_grad():
        hf.final_logits_bias.normal_(0.0, 0.1)
        hf.final_logits_bias[0, [EOS, pad]] = -1e4
    config = TransformerConfig(**marian.config_values_from_hf(hf_config.to_dict()))
    ours = Transformer(config)
    missing, unexpected = ours.load_state_dict(marian.state_dict_from_hf(hf.state_dict(), config),
                                               strict=False)
    if unexpected or set(missing) != {"lm_head.weight"}:  # tied to the embedding: not stored
        raise RuntimeError(f"weights differ: missing {missing}, unexpected {unexpected}")
    return ours.eval(), hf.eval()


def sources(batch: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (B, S) of 20-30 real tokens each (batch 1: 25), ending in EOS, right-padded
    with the pad id (vocab - 1), and their attention mask (B, S)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [25] if batch == 1 else torch.randint(20, 31, (batch,), generator=g).tolist()
    ids = torch.full((batch, max(lengths)), vocab - 1)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n - 1] = torch.randint(1, vocab - 1, (n - 1,), generator=g)
        ids[row, n - 1] = EOS
        mask[row, :n] = 1
    return ids, mask


def runs(ours, hf, ids, mask, args, compiled=None) -> dict:
    """The sides' beam searches as callables returning the new tokens (B, n): attnlab,
    transformers, and with --compile attnlab with its blocks compiled (`nn/compile.py`)."""
    beam = dict(num_beams=args.beams, length_penalty=0.0, max_new_tokens=args.new_tokens)
    sides = {
        "attnlab": lambda: ours.generate(ids, mask, **beam),
        "transformers": lambda: hf.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, early_stopping=False,
            forced_eos_token_id=None, **beam)[:, 1:],  # transformers keeps the start token
    }
    if compiled is not None:
        sides["attnlab compiled"] = lambda: compiled.generate(ids, mask, **beam)
    return sides


def matmul_floor(model: Transformer, rows: int, steps: int, repeats: int) -> float:
    """Median seconds of the matrix products `steps` decoding steps of `rows` rows cannot avoid,
    and nothing else: every decoder layer's self-attention q/k/v/out, cross-attention q/out and
    feed-forward projections and the output layer, on (rows, d_model) inputs, with the model's
    weights. Both sides compute exactly these (in fp32), so no implementation of the same search
    is faster than this; transformers' time over it bounds the ratio any rewrite could reach."""
    linears = [module for name, module in model.decoder.named_modules()
               if isinstance(module, torch.nn.Linear)
               and not name.endswith(("cross_attn.k_proj", "cross_attn.v_proj"))]  # once
    linears.append(model.lm_head)
    inputs = [torch.randn(rows, layer.in_features) for layer in linears]

    def run() -> None:
        for _ in range(steps):
            for layer, x in zip(linears, inputs, strict=True):
                layer(x)

    with torch.no_grad():
        run()  # warm-up
        return alternate({"floor": run}, repeats)["floor"]


def measure(ours, hf, batch: int, args, compiled=None) -> dict:
    """One batch size: warm-up (the tokens compared), then alternating timed runs."""
    ids, mask = sources(batch, ours.config.vocab_size, seed=batch)
    sides = runs(ours, hf, ids, mask, args, compiled)
    with torch.no_grad():
        out = {side: fn() for side, fn in sides.items()}  # also the warm-up
        median = alternate(sides, args.repeats)
    same = torch.equal(out["attnlab"], out["transformers"])
    lengths = {side: tokens.size(1) for side, tokens in out.items()}
    record = {"batch": batch, "beams": args.beams, "source_tokens": mask.sum(1).tolist(),
              "new_tokens": lengths,
              "seconds_median": {side: round(s, 4) for side, s in median.items()},
              "attnlab_sentences_per_s": round(batch / median["attnlab"], 3),
              "transformers_sentences_per_s": round(batch / median["transformers"], 3),
              "ratio": round(median["transformers"] / median["attnlab"], 3),
              "same_tokens": same}
    if compiled is not None:
        record["attnlab_compiled_sentences_per_s"] = round(batch / median["attnlab compiled"], 3)
        record["compiled_ratio"] = round(median["transformers"] / median["attnlab compiled"], 3)
        record["compiled_same_tokens"] = torch.equal(out["attnlab compiled"], out["attnlab"])
    floor = matmul_floor(ours, batch * args.beams, args.new_tokens, args.repeats)
    record["matmul_floor_seconds"] = round(floor, 4)
    record["best_possible_ratio"] = round(median["transformers"] / floor, 3)
    if not same:
        differ = (out["attnlab"] != out["transformers"]).any(dim=1)
        record["rows_differing"] = int(differ.sum())
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model (seconds)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--compile", action="store_true",
                   help="also time attnlab with its blocks compiled (~30 s to compile)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    import transformers

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    record = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "threads": torch.get_num_threads(),
              "cpu_flags": cpu_flags(),  # the vector / matrix extensions this CPU has
              "load_average_1_5_15": {"start": [round(x, 2) for x in os.getloadavg()]},
              "model": "opus-mt-en-de shape, random weights" if not args.quick else "tiny",
              "config": QUICK if args.quick else OPUS_MT_EN_DE,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "search": "beam 4, length penalty 0 on both sides, no forced EOS, "
                        "early_stopping=False; EOS and pad output biases -1e4 so every "
                        "hypothesis runs max_new_tokens steps on both sides"}
    start = time.perf_counter()
    ours, hf = build_pair(QUICK if args.quick else OPUS_MT_EN_DE)
    compiled = None
    if args.compile:
        torch._dynamo.config.recompile_limit = 64  # prefill / decode shapes of each batch
        compiled = compile_blocks(copy.deepcopy(ours), dynamic=True)
    record["records"] = []
    for batch in args.batch_sizes:
        record["records"].append(measure(ours, hf, batch, args, compiled))
        print(json.dumps(record["records"][-1]), flush=True)
    record["load_average_1_5_15"]["end"] = [round(x, 2) for x in os.getloadavg()]
    record["benchmark_seconds"] = round(time.perf_counter() - start, 1)
    for r in record["records"]:
        print(f"batch {r['batch']:>3}: attnlab {r['attnlab_sentences_per_s']:.2f} sent/s, "
              f"transformers {r['transformers_sentences_per_s']:.2f} sent/s, "
              f"ratio {r['ratio']:.2f}x (the matrix products alone: "
              f"{r['best_possible_ratio']:.2f}x), same tokens: {r['same_tokens']}"
              + (f"; compiled {r['compiled_ratio']:.2f}x" if "compiled_ratio" in r else ""))
    write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
