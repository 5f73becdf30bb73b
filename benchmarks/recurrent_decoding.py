"""Constant-memory generation, shown: per-token latency and decoding memory against the context
length for a LLaMA-style Transformer with a KV cache and for the recurrent families, Mamba
(Gu & Dao 2023), RWKV-4 (Peng et al. 2023) and RetNet (Sun et al. 2023), whose papers claim
O(1) time and memory per generated token where the Transformer's grow with the context.

The models have about equal parameters: the Transformer is d_model 512, --layers layers
(default 4), 8 heads with full key/value heads (no grouped-query attention, so its cache is the
plain KV cache), d_ff 1376 (LLaMA's 8/3 d rounded); each recurrent family has the same d_model
and its papers' widths (Mamba: d_state 16, d_conv 4, expand 2; RWKV: d_ff 4 d; RetNet: head
dim 256, d_ff 2 d) and the number of layers that brings its non-embedding parameters closest to
the Transformer's (recorded). One vocabulary of --vocab-size for all. Random weights: speed
and memory do not depend on what the weights learned.

For each context (1k ... 32k tokens; --quick: 1k ... 8k) each model runs
`studies.compare.decoding.measure_decoding`: the context is prefilled in chunks, then
--new-tokens one-token steps are timed (median ms per token; batch 1) and the memory decoding
holds is read: the cache's bytes and the peak (cache + the allocator's high-water mark of a
step; the module docstring says why not the RSS). A recurrent model prefills in the form of its
mixers that is fastest here (timed on 512 tokens first; the forms compute the same function;
Mamba's chunkwise scan, for one, builds (chunk x chunk x d_inner x d_state) tensors that make
it slower than the step-by-step scan at batch 1 on a CPU), recorded as prefill_form. All
models run in one process, their order rotated at each context so drift on a shared machine
hits them alike.

    python benchmarks/recurrent_decoding.py            # 1k-32k; run it alone on the machine
    python benchmarks/recurrent_decoding.py --quick    # 1k-8k
    python benchmarks/recurrent_decoding.py --quick --d-model 64 --layers 2   # a smoke test

Prints a table (ms/token, peak MiB, the Transformer's over each recurrent model's) and the
crossover (the first context where a recurrent model decodes faster), and writes
benchmarks/results/recurrent_decoding.json and .png (recurrent_decoding_quick.* with --quick).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.evaluation.machine import record_header, write_record
from attnlab.models import build_model, get_config, list_models
from attnlab.studies.compare.decoding import (
    PROFILED_STEPS,
    crossover,
    measure_decoding,
    use_fastest_form,
)
from attnlab.version import __version__

SCRIPT = "benchmarks/recurrent_decoding.py"
RESULTS = Path(__file__).resolve().parent / "results"
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768]
QUICK_CONTEXTS = [1024, 2048, 4096, 8192]
BASELINE = "transformer"


def widths(family: str, d: int) -> dict[str, Any]:
    """A family's width knobs at d_model d, from its paper (the Transformer: LLaMA's)."""
    if family == "transformer":
        heads = max(1, d // 64)
        return dict(n_heads=heads, n_kv_heads=heads, d_ff=32 * -(-8 * d // (3 * 32)))
    if family == "mamba":  # Gu & Dao 2023, sec. 3.4 / the state-spaces checkpoints
        return dict(d_state=16, d_conv=4, expand=2)
    if family == "rwkv":  # RWKV-4: the channel mix is 4 d wide, WKV over d channels
        return dict(d_ff=4 * d, attention_hidden_size=d)
    if family == "retnet":  # Sun et al. 2023, Table: head dim 256, FFN 2 d
        return dict(n_heads=max(1, d // 256), d_ff=2 * d)
    raise ValueError(f"unknown family {family!r}")


FAMILIES = {  # name -> the preset its configuration starts from
    "transformer": "llama-tiny",
    "mamba": "mamba-tiny",
    "rwkv": "rwkv-tiny",
    "retnet": "retnet-tiny",
}


def overrides(family: str, d_model: int, n_layers: int, vocab: int,
              max_seq_len: int) -> dict[str, Any]:
    """The preset's values to change: only fields its config has (a recurrent family's
    max_seq_len stays its own unbounded default when that is larger)."""
    names = {f.name for f in fields(get_config(FAMILIES[family]))}
    values = dict(vocab_size=vocab, d_model=d_model, n_layers=n_layers,
                  **widths(family, d_model))
    if family == BASELINE:
        values["max_seq_len"] = max_seq_len
    return {k: v for k, v in values.items() if k in names}


def non_embedding(model: nn.Module, vocab: int) -> int:
    """Parameters not of a (vocab, d) token table (the embedding and an untied head)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (p.dim() == 2 and p.size(0) == vocab):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def build(family: str, d_model: int, n_layers: int, vocab: int, max_seq_len: int,
          seed: int) -> nn.Module:
    torch.manual_seed(seed)
    values = overrides(family, d_model, n_layers, vocab, max_seq_len)
    return build_model(FAMILIES[family], **values).eval()


def matched_layers(family: str, target: int, d_model: int, vocab: int) -> int:
    """The layer count whose non-embedding parameters come closest to `target` (parameters
    grow linearly with layers: two small builds give the slope)."""
    one, two = (non_embedding(build(family, d_model, n, vocab, 64, 0), vocab) for n in (1, 2))
    per_layer, base = two - one, 2 * one - two
    return max(1, round((target - base) / per_layer))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="contexts 1k-8k only")
    p.add_argument("--contexts", type=int, nargs="+", default=None,
                   help=f"context lengths (default {CONTEXTS}; --quick {QUICK_CONTEXTS})")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4, help="the Transformer's layers")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--new-tokens", type=int, default=16, help="timed steps per context")
    p.add_argument("--prefill-chunk", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/results/recurrent_decoding[_quick].json;"
                        " the plot goes beside it as .png)")
    args = p.parse_args(argv)
    if args.contexts is None:
        args.contexts = QUICK_CONTEXTS if args.quick else CONTEXTS
    if args.out is None:
        args.out = RESULTS / ("recurrent_decoding_quick.json" if args.quick
                              else "recurrent_decoding.json")
    return args


def mib(n: float) -> float:
    return n / 2**20


def table(rows: dict[str, list[dict[str, Any]]], contexts: list[int]) -> str:
    """ms/token and peak MiB per model and context, with the Transformer's over each other's."""
    others = [f for f in rows if f != BASELINE]
    head = ["context"]
    for f in rows:
        head += [f"{f} ms", f"{f} MiB"]
    head += [f"{BASELINE}/{f} {k}" for f in others for k in ("ms", "mem")]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    by = {f: {r["context"]: r for r in rs} for f, rs in rows.items()}
    for n in contexts:
        cells = [str(n)]
        for f in rows:
            r = by[f].get(n)
            cells += ["-", "-"] if r is None else [f"{r['ms_per_token']:.2f}",
                                                   f"{mib(r['peak_bytes']):.3g}"]
        base = by.get(BASELINE, {}).get(n)
        for f in others:
            r = by[f].get(n)
            if base is None or r is None:
                cells += ["-", "-"]
            else:
                cells += [f"{base['ms_per_token'] / r['ms_per_token']:.2f}x",
                          f"{base['peak_bytes'] / r['peak_bytes']:.1f}x"]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def plot(rows: dict[str, list[dict[str, Any]]], models: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.viz.figures import save_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for family, rs in rows.items():
        xs = [r["context"] for r in rs]
        label = (f"{family} ({models[family]['non_embedding_parameters'] / 1e6:.1f}M "
                 "non-embedding)")
        left.plot(xs, [r["ms_per_token"] for r in rs], marker="o", label=label)
        line, = right.plot(xs, [mib(r["peak_bytes"]) for r in rs], marker="o", label=label)
        right.plot(xs, [mib(r["cache_bytes"]) for r in rs], linestyle=":",
                   color=line.get_color())
    left.set_ylabel("ms per generated token (median)")
    right.set_ylabel("MiB: peak while decoding (solid), cache (dotted)")
    contexts = sorted({r["context"] for rs in rows.values() for r in rs})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(contexts, [f"{n / 1024:g}k" if n >= 1024 else str(n) for n in contexts])
        ax.minorticks_off()
        ax.set_xlabel("context (tokens)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    right.set_yscale("log")
    fig.suptitle("decoding after a context: KV-cached Transformer vs recurrent state", fontsize=10)
    save_png(fig, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    header = record_header(SCRIPT, sys.argv[1:] if argv is None else argv)
    available = set(list_models())
    families = [f for f in args.families if FAMILIES[f] in available]
    skipped = {f: f"preset {FAMILIES[f]} is not registered" for f in args.families
               if f not in families}
    for f, why in skipped.items():
        print(f"skipping {f}: {why}", file=sys.stderr)
    longest = max(args.contexts) + 1 + args.new_tokens + PROFILED_STEPS
    vocab, d = args.vocab_size, args.d_model
    layers = {BASELINE: args.layers}
    models: dict[str, nn.Module] = {}
    if BASELINE in families:
        models[BASELINE] = build(BASELINE, d, args.layers, vocab, longest, args.seed)
        target = non_embedding(models[BASELINE], vocab)
    else:
        target = non_embedding(build(BASELINE, d, args.layers, vocab, 64, args.seed), vocab)
    forms: dict[str, str | None] = {BASELINE: None}
    for family in families:
        if family != BASELINE:
            layers[family] = matched_layers(family, target, d, vocab)
            models[family] = build(family, d, layers[family], vocab, longest, args.seed)
            forms[family] = use_fastest_form(models[family])
    described = {f: {"preset": FAMILIES[f], "n_layers": layers[f],
                     "overrides": overrides(f, d, layers[f], vocab, longest),
                     "parameters": sum(p.numel() for p in m.parameters()),
                     "non_embedding_parameters": non_embedding(m, vocab),
                     "prefill_form": forms[f]}
                 for f, m in models.items()}
    for f, info in described.items():
        print(f"{f}: {info['n_layers']} layers, {info['parameters'] / 1e6:.2f}M parameters "
              f"({info['non_embedding_parameters'] / 1e6:.2f}M without the token tables)"
              + (f", prefill form {info['prefill_form']}" if info["prefill_form"] else ""),
              flush=True)
    rows: dict[str, list[dict[str, Any]]] = {f: [] for f in models}
    order = list(models)
    start = time.perf_counter()
    for i, n in enumerate(args.contexts):
        for family in order[i % len(order):] + order[:i % len(order)]:  # rotated per context
            row, = measure_decoding(models[family], [n], new_tokens=args.new_tokens,
                                    seed=args.seed, prefill_chunk=args.prefill_chunk)
            rows[family].append(row)
            print(f"{family} context {n}: {row['ms_per_token']:.2f} ms/token, cache "
                  f"{mib(row['cache_bytes']):.2f} MiB, peak {mib(row['peak_bytes']):.2f} MiB,"
                  f" prefill {row['prefill_seconds']:.1f} s", flush=True)
    crossovers = {f: crossover(rows[BASELINE], rows[f]) for f in rows
                  if f != BASELINE and BASELINE in rows}
    record = {
        **header, "benchmark": "recurrent_decoding", "attnlab": __version__,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "memory_method": "peak_bytes = cache bytes + the allocator's high-water mark during "
                         f"{PROFILED_STEPS} decoding steps (torch profiler memory events on "
                         "CPU, torch.cuda.max_memory_allocated on a GPU); weights excluded",
        "models": described, "skipped": skipped, "rows": rows, "crossover": crossovers,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    print(table(rows, args.contexts))
    for f, n in crossovers.items():
        print(f"crossover {f}: " + (f"faster than the {BASELINE} from context {n}" if n
                                    else f"not faster than the {BASELINE} at any context run"))
    write_record(args.out, record)
    if rows:
        plot(rows, described, args.out.with_suffix(".png"))
    return record


if __name__ == "__main__":
    main()
