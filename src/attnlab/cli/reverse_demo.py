"""`attnlab demo --task reverse`: the attention core in a few CPU minutes. Train a small
encoder-decoder Transformer to reverse random symbol sequences, decode greedily with and without
the KV cache, and save the cross-attention map, where the reversal shows as an anti-diagonal.

Its folder is a run folder like a training run's (`training/run_folder.py`): run.json with the
run id from the start, metrics.json and cross_attention.png only at a successful end, and a
folder holding a run is replaced only with `--overwrite` (checked by `attnlab demo`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from attnlab.data.synthetic import EOS, sequence_task_batch
from attnlab.errors import ConfigError
from attnlab.generation import greedy_decode
from attnlab.models import build_model
from attnlab.serialization import atomic_write
from attnlab.training.run_folder import new_record, remove_run, write_record
from attnlab.training.schedule import inverse_sqrt_warmup
from attnlab.viz import plot_attention


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The reverse task's own flags (--out, --time-budget and --seed are shared)."""
    parser.add_argument("--steps", type=int, default=3000,
                        help="training steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=6)
    parser.add_argument("--max-len", type=int, default=24)
    parser.add_argument("--symbols", type=int, default=40, help="distinct symbols (default 40)")
    parser.add_argument("--kernel", default="sdpa", help="attention kernel: sdpa or reference")


def run(args: argparse.Namespace) -> int:
    for name in ("steps", "batch_size", "min_len", "max_len", "symbols"):
        if getattr(args, name) <= 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be positive, got {getattr(args, name)}")
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if getattr(args, "overwrite", False):
        remove_run(out)
    out.mkdir(parents=True, exist_ok=True)
    write_record(out, new_record("demo-reverse", None, files=("cross_attention.png",)))
    vocab_size = args.symbols + 3
    model = build_model(
        "transformer-tiny", vocab_size=vocab_size, d_model=64, n_heads=4, n_layers=2, d_ff=256,
        dropout=0.0, kernel=args.kernel, max_seq_len=max(64, args.max_len + 2),
    )
    print(f"model: transformer-tiny, {model.num_parameters():,} parameters, kernel={args.kernel}")
    task = dict(vocab_size=vocab_size, min_len=args.min_len, max_len=args.max_len, task="reverse")
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: inverse_sqrt_warmup(step + 1, d_model=64, warmup_steps=200, scale=2.0),
    )
    model.train()
    start = time.perf_counter()
    tokens = 0
    losses = []
    bar = tqdm(range(args.steps), desc="train", unit="step")
    for step in bar:
        input_ids, attention_mask, labels = sequence_task_batch(generator, args.batch_size, **task)
        loss = model(input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        tokens += int((labels != -100).sum())
        losses.append(loss.item())
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}",
                        tok_s=f"{tokens / elapsed:,.0f}")
        if args.time_budget is not None and elapsed > args.time_budget:
            bar.close()
            print(f"time budget of {args.time_budget:.0f}s reached after {step + 1} steps")
            break
    train_seconds = time.perf_counter() - start

    # Evaluate on fresh sequences: exact-match accuracy, cached vs uncached decoding.
    model.eval()
    test_gen = torch.Generator().manual_seed(args.seed + 1)
    input_ids, attention_mask, labels = sequence_task_batch(test_gen, 256, **task)
    t0 = time.perf_counter()
    cached = greedy_decode(model, input_ids, attention_mask, max_new_tokens=args.max_len + 1)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    uncached = greedy_decode(model, input_ids, attention_mask, max_new_tokens=args.max_len + 1,
                             use_cache=False)
    t_uncached = time.perf_counter() - t0
    correct = 0
    for row in range(input_ids.size(0)):
        target = [t for t in labels[row].tolist() if t != -100]
        produced = cached[row].tolist()
        produced = produced[: produced.index(EOS) + 1] if EOS in produced else produced
        correct += produced == target
    accuracy = correct / input_ids.size(0)
    same = torch.equal(cached, uncached)

    # Cross-attention of the last decoder layer for one long example, averaged over heads.
    row = int(attention_mask.sum(1).argmax())
    length = int(attention_mask[row].sum())
    src = input_ids[row : row + 1, :length]
    produced = cached[row : row + 1]
    produced_list = produced[0].tolist()
    if EOS in produced_list:  # drop the padding after EOS
        produced = produced[:, : produced_list.index(EOS) + 1]
    decoder_in = torch.cat([torch.full((1, 1), model.config.bos_token_id), produced], dim=1)
    with torch.no_grad():
        result = model(src, decoder_in[:, :-1], output_attentions=True)
    cross = result.cross_attentions[-1][0].mean(0)  # (T, S)
    heatmap = plot_attention(
        cross, [str(t) for t in produced[0].tolist()], [str(t) for t in src[0].tolist()],
        out / "cross_attention.png",
        title="reversal: cross-attention (last layer, mean over heads)",
    )
    metrics = {
        "task": "reverse",
        "steps": len(losses),
        "train_seconds": round(train_seconds, 1),
        "train_tokens_per_second": round(tokens / train_seconds),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "exact_match": accuracy,
        "cached_equals_uncached": same,
        "decode_speedup_with_cache": round(t_uncached / t_cached, 2),
        "params": model.num_parameters(),
    }
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    print(f"\nexact-match accuracy on 256 unseen sequences: {accuracy:.1%}")
    print(f"cached == uncached greedy decoding: {same} "
          f"(cache {t_uncached / t_cached:.1f}x faster)")
    example_src = src[0].tolist()
    print(f"example input : {example_src}")
    print(f"model output  : {produced[0].tolist()}")
    print(f"cross-attention heatmap: {heatmap}")
    print(f"metrics: {out / 'metrics.json'}")
    if not math.isfinite(metrics["final_loss"]):
        print("training diverged (non-finite loss)")
        return 1
    return 0
