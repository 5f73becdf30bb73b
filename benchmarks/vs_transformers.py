"""attnlab vs Hugging Face `transformers`, same config, same weights, same inputs, one process,
fp32 on the CPU: training-step throughput (forward + backward, tokens/s) and greedy generation
throughput (new tokens/s, KV cache on both sides) at batch 1 and 8, for a GPT-2 and a small
LLaMA. Runs alternate between the two sides; each figure is the median of --repeats runs.
Targets (issue 5): training >= 1.0x, generation >= 1.3x of transformers.

    python benchmarks/vs_transformers.py            # gpt2 (124M) and a 6-layer LLaMA
    python benchmarks/vs_transformers.py --quick    # tiny models, seconds

Writes benchmarks/results/vs_transformers.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from attnlab.evaluation.machine import machine_info
from attnlab.interop import gpt2, llama

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "vs_transformers.json"

MODELS = {
    "gpt2": ("gpt2", dict(n_embd=768, n_head=12, n_layer=12, vocab_size=50257,
                          n_positions=1024)),
    "llama-small": ("llama", dict(hidden_size=512, intermediate_size=1376,
                                  num_attention_heads=8, num_key_value_heads=4,
                                  num_hidden_layers=6, vocab_size=32000,
                                  max_position_embeddings=1024)),
}
QUICK = {
    "gpt2": ("gpt2", dict(n_embd=64, n_head=4, n_layer=2, vocab_size=500, n_positions=256)),
    "llama-small": ("llama", dict(hidden_size=64, intermediate_size=172, num_attention_heads=4,
                                  num_key_value_heads=2, num_hidden_layers=2, vocab_size=500,
                                  max_position_embeddings=256)),
}


def build_pair(family: str, values: dict):
    import transformers

    torch.manual_seed(0)
    special = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if family == "gpt2":
        hf_config = transformers.GPT2Config(**values, **special, resid_pdrop=0.0,
                                            embd_pdrop=0.0, attn_pdrop=0.0)
        hf = transformers.GPT2LMHeadModel(hf_config)
        module = gpt2
    else:
        hf_config = transformers.LlamaConfig(**values, **special)
        hf = transformers.LlamaForCausalLM(hf_config)
        module = llama
    config = module.config_from_hf(hf_config.to_dict())
    from attnlab.models.io import model_types

    ours = model_types()[type(config).model_type](config)
    ours.load_state_dict(module.state_dict_from_hf(hf.state_dict(), config), strict=False)
    return ours, hf


def alternate(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each side's callable, the two sides alternating (order flipped every
    repeat) so drift on a shared machine hits both alike."""
    seconds: dict[str, list[float]] = {side: [] for side in runs}
    order = list(runs.items())
    for r in range(repeats):
        for side, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            seconds[side].append(time.perf_counter() - start)
    return {side: statistics.median(times) for side, times in seconds.items()}


def train_step(model, ids):
    model.zero_grad(set_to_none=True)
    model(ids, labels=ids).loss.backward()


def measure(name: str, family: str, values: dict, args) -> list[dict]:
    ours, hf = build_pair(family, values)
    records = []
    vocab = values["vocab_size"]
    ids = torch.randint(1, vocab, (args.train_batch, args.train_len))
    ours.train(), hf.train()
    for model in (ours, hf):  # warm up
        train_step(model, ids)
    median = alternate({"attnlab": lambda: train_step(ours, ids),
                        "transformers": lambda: train_step(hf, ids)}, args.repeats)
    tokens = ids.numel()
    ours_tps = tokens / median["attnlab"]
    hf_tps = tokens / median["transformers"]
    records.append({"model": name, "task": "train_step", "batch": args.train_batch,
                    "length": args.train_len, "attnlab_tokens_per_s": round(ours_tps, 1),
                    "transformers_tokens_per_s": round(hf_tps, 1),
                    "ratio": round(ours_tps / hf_tps, 3)})
    print(json.dumps(records[-1]), flush=True)

    ours.eval(), hf.eval()
    new = args.new_tokens
    for batch in args.batch_sizes:
        prompt = torch.randint(1, vocab, (batch, args.prompt_len))
        run_ours = lambda p=prompt: ours.generate(p, max_new_tokens=new, eos_token_id=-1)  # noqa: E731
        run_hf = lambda p=prompt: hf.generate(  # noqa: E731
            p, attention_mask=torch.ones_like(p), max_new_tokens=new, min_new_tokens=new,
            do_sample=False, pad_token_id=0)
        with torch.no_grad():
            same = torch.equal(run_ours(), run_hf())  # also the warm-up
            median = alternate({"attnlab": run_ours, "transformers": run_hf}, args.repeats)
        ours_tps = batch * new / median["attnlab"]
        hf_tps = batch * new / median["transformers"]
        records.append({"model": name, "task": "greedy_generation", "batch": batch,
                        "prompt": args.prompt_len, "new_tokens": new,
                        "attnlab_tokens_per_s": round(ours_tps, 1),
                        "transformers_tokens_per_s": round(hf_tps, 1),
                        "ratio": round(ours_tps / hf_tps, 3), "same_tokens": same})
        print(json.dumps(records[-1]), flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models (seconds)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-len", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    import transformers

    table = QUICK if args.quick else MODELS
    records = []
    for name in args.models:
        family, values = table[name]
        records += measure(name, family, values, args)
    result = {
        "benchmark": "vs_transformers",
        "command": "python " + " ".join(shlex.quote(a) for a in [
            "benchmarks/vs_transformers.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "transformers": transformers.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
