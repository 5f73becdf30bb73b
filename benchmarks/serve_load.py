"""`attnlab serve` under load: 1, 4, 16 and 64 concurrent streaming clients on 127.0.0.1, for
gpt2-tiny and a 6-layer d_model 384 GPT-2-style model (6 heads, d_ff 1536), to show what
continuous batching (iteration-level scheduling, Yu et al. 2022, "Orca") buys: decoding 16
requests together should give at least 4x the output tokens/s of one request at a time.

Each model is a folder with random weights (speed does not depend on what the weights
learned) and a byte-level BPE trained on a fixed text (the English side of the built-in corpus,
seed 0), saved with save_pretrained + tokenizer.json. The server is a subprocess,
`python -m attnlab serve --model DIR --max-batch 32 --max-queue 16 ...`. Each client streams
POST /v1/completions (fixed prompts, max_tokens fixed, temperature 0, vLLM's ignore_eos so every
request runs to max_tokens, stream_options.include_usage) one request after another, without
retries: a 429 is counted and the client waits its Retry-After before its next request. A level
ends when each client has sent its requests or the time cap has passed (requests in flight
finish; each has a hard timeout).

Per level: requests/s and output tokens/s (tokens from the usage chunk, over the level's wall
time), time to first token p50/p99 (request sent -> first chunk), per-token latency p50/p99
(each gap between chunks over the request's tokens per chunk: several tokens come per chunk
under load), errors by kind (429s apart from failures and timeouts), and the server's own view
from GET /metrics (decode steps, mean batch per step). Before the server starts, the same folder
is measured in this process without HTTP (`without_http`): the model's batched decode step at
batch 1 and 16, and the Engine's tokens/s with 1 and 16 requests at once; the ceiling the server
works under, and the split of where the time goes.

    python benchmarks/serve_load.py            # both models, levels 1 4 16 64 (~3 min)
    python benchmarks/serve_load.py --quick    # gpt2-tiny, levels 1 and 4 (smoke run)

Prints a table per model and the 16-vs-1 ratio; writes benchmarks/results/serve_load.json and
serve_load.png (serve_load_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from attnlab.evaluation.machine import record_header, write_record
from attnlab.serve.process import ServerProcess
from attnlab.version import __version__

SCRIPT = "benchmarks/serve_load.py"
RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {  # name -> (preset, overrides besides the vocabulary)
    "gpt2-tiny": ("gpt2-tiny", {}),
    "gpt2-d384-l6": ("gpt2-tiny", dict(d_model=384, n_heads=6, n_layers=6, d_ff=1536,
                                        max_seq_len=256)),
}
PROMPTS = ["the farmer sells red apples at the market on monday",
           "twelve lizards are wandering to a market which",
           "a quiet river runs past the old mill and the",
           "the children of the village were singing while",
           "after the storm the fishermen carried their nets to",
           "my grandmother kept a small garden behind the house where"]
START_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="gpt2-tiny, levels 1 and 4, fewer requests")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    p.add_argument("--levels", type=int, nargs="+", default=None,
                   help="concurrent clients (default 1 4 16 64; --quick 1 4)")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per level, shared by its clients, at least 2 each "
                        "(default 2000; --quick 8)")
    p.add_argument("--level-seconds", type=float, default=None,
                   help="no request starts after this (default 15; --quick 8)")
    p.add_argument("--request-timeout", type=float, default=120.0,
                   help="client-side hard timeout of one request (s)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-queue", type=int, default=16)
    p.add_argument("--server-threads", type=int, default=1,
                   help="the server's torch threads (the client needs the other core)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--corpus-lines", type=int, default=4000, help="tokenizer training text")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.models = args.models or (["gpt2-tiny"] if args.quick else list(MODELS))
    args.levels = args.levels or ([1, 4] if args.quick else [1, 4, 16, 64])
    args.requests = args.requests or (8 if args.quick else 2000)
    args.level_seconds = args.level_seconds or (8.0 if args.quick else 15.0)
    args.out = args.out or RESULTS / ("serve_load_quick.json" if args.quick else "serve_load.json")
    return args


def build_folder(name: str, root: Path, vocab_size: int, lines: int) -> tuple[Path, dict]:
    """A model folder with random weights and a byte-level BPE on fixed text; its description."""
    from attnlab.data.corpus import generate_corpus
    from attnlab.models import build_model
    from attnlab.tokenizers import Tokenizer

    corpus = generate_corpus(seed=0, train_size=lines, valid_size=0, test_size=0)
    tokenizer = Tokenizer.train_byte_level([en for en, _ in corpus.splits["train"]], vocab_size,
                                           ["<|endoftext|>"])
    preset, overrides = MODELS[name]
    torch.manual_seed(0)
    model = build_model(preset, vocab_size=tokenizer.vocab_size, bos_token_id=0,
                        eos_token_id=0, **overrides)
    folder = root / name
    model.save_pretrained(folder)
    tokenizer.save(folder / "tokenizer.json")
    config = model.config
    return folder, {"preset": preset, "overrides": overrides, "vocab_size": tokenizer.vocab_size,
                    "d_model": config.d_model, "n_layers": config.n_layers,
                    "max_seq_len": config.max_seq_len,
                    "parameters": sum(p.numel() for p in model.parameters())}


def scrape(url: str) -> dict[str, float]:
    """The server's counters this benchmark reads from GET /metrics (sums over labels)."""
    wanted = ("attnlab_engine_steps_total", "attnlab_batch_size_sum", "attnlab_batch_size_count",
              "attnlab_time_to_first_token_seconds_sum",
              "attnlab_time_to_first_token_seconds_count",
              "attnlab_time_per_output_token_seconds_sum",
              "attnlab_time_per_output_token_seconds_count")
    values = dict.fromkeys(wanted, 0.0)
    for line in httpx.get(url + "/metrics", timeout=10.0).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in values:
            values[name] += float(line.rsplit(" ", 1)[1])
    return values


def server_view(before: dict[str, float], after: dict[str, float], wall: float) -> dict:
    d = {k: after[k] - before[k] for k in after}
    steps = d["attnlab_engine_steps_total"]

    def mean(total: str, count: str) -> float | None:
        return round(1e3 * d[total] / d[count], 2) if d[count] else None

    return {"decode_steps": int(steps), "steps_per_s": round(steps / wall, 1),
            "mean_batch": round(d["attnlab_batch_size_sum"] / d["attnlab_batch_size_count"], 2)
            if d["attnlab_batch_size_count"] else None,
            "ttft_mean_ms": mean("attnlab_time_to_first_token_seconds_sum",
                                 "attnlab_time_to_first_token_seconds_count"),
            "tpot_mean_ms": mean("attnlab_time_per_output_token_seconds_sum",
                                 "attnlab_time_per_output_token_seconds_count")}


async def one_request(client: httpx.AsyncClient, body: dict, timeout: float) -> dict:
    """One streamed completion: its outcome, chunk arrival times and token count."""
    sent, chunks, tokens = time.perf_counter(), [], None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 429 and "retry-after" in response.headers:
                        return {"kind": "rate_limited",
                                "retry_after": float(response.headers["retry-after"])}
                    kind = "timeout" if response.status_code == 408 else "failure"
                    return {"kind": kind, "why": f"HTTP {response.status_code}"}
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if '"usage":null' in line:  # a text chunk (parsing it would cost the client)
                        chunks.append(time.perf_counter())
                    elif line == "data: [DONE]":
                        break
                    else:
                        payload = json.loads(line[6:])
                        if "error" in payload:
                            kind = payload["error"].get("type", "error")
                            return {"kind": "timeout" if kind == "timeout_error" else "failure",
                                    "why": f"stream error {kind}"}
                        tokens = payload["usage"]["completion_tokens"]
    except (TimeoutError, httpx.TimeoutException):
        return {"kind": "timeout", "why": "client timeout"}
    except httpx.HTTPError as error:
        return {"kind": "failure", "why": type(error).__name__}
    if tokens != body["max_tokens"] or not chunks:
        return {"kind": "failure", "why": f"{tokens} tokens in {len(chunks)} chunks"}
    return {"kind": "ok", "sent": sent, "chunks": chunks, "tokens": tokens}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


async def run_level(url: str, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """`clients` concurrent streaming clients, bounded in requests and time."""
    per_client = max(2, math.ceil(args.requests / clients))
    results: list[dict] = []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.request_timeout) as http:
        start = time.perf_counter()
        stop_at = start + args.level_seconds

        async def client(i: int) -> None:
            for n in range(per_client):
                if time.perf_counter() > stop_at:
                    return
                body = {"prompt": PROMPTS[(i + n) % len(PROMPTS)], "max_tokens": args.max_tokens,
                        "temperature": 0, "ignore_eos": True, "stream": True,
                        "stream_options": {"include_usage": True}}
                result = await one_request(http, body, args.request_timeout)
                results.append(result)
                if result["kind"] == "rate_limited":
                    await asyncio.sleep(min(result["retry_after"],
                                            max(0.0, stop_at - time.perf_counter())))

        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))),
                               args.level_seconds + args.request_timeout + 30)
        wall = time.perf_counter() - start
    ok = [r for r in results if r["kind"] == "ok"]
    ttft = [1e3 * (r["chunks"][0] - r["sent"]) for r in ok]
    itl, tpot = [], []
    for r in ok:
        per_chunk = r["tokens"] / len(r["chunks"])
        itl += [1e3 * (b - a) / per_chunk for a, b in zip(r["chunks"][:-1], r["chunks"][1:],
                                                                 strict=True)]
        if r["tokens"] > 1:
            tpot.append(1e3 * (r["chunks"][-1] - r["chunks"][0]) / (r["tokens"] - 1))
    failures: dict[str, int] = {}
    for r in results:
        if r["kind"] == "failure":
            failures[r["why"]] = failures.get(r["why"], 0) + 1
    tokens = sum(r["tokens"] for r in ok)
    return {"clients": clients, "requests_sent": len(results), "completed": len(ok),
            "rate_limited": sum(r["kind"] == "rate_limited" for r in results),
            "timeouts": sum(r["kind"] == "timeout" for r in results), "failures": failures,
            "wall_s": round(wall, 2), "requests_per_s": round(len(ok) / wall, 2),
            "output_tokens": tokens, "output_tokens_per_s": round(tokens / wall, 1),
            "ttft_ms": percentiles(ttft), "per_token_ms": percentiles(itl),
            "tpot_ms": percentiles(tpot),
            "tokens_per_chunk": round(tokens / max(1, sum(len(r["chunks"]) for r in ok)), 2)}


def decode_step_ms(model: torch.nn.Module, prompt_ids: list[int], rows: int,
                   steps: int = 32) -> float:
    """Median ms of one batched decode step of `rows` sequences: the model alone, no engine."""
    from attnlab.generation.continuous import ContinuousBatch

    batch = ContinuousBatch(model, max_rows=rows, max_length=len(prompt_ids) + steps + 1)
    with torch.no_grad():
        for _ in range(rows):
            batch.add(prompt_ids)
        ids, times = torch.zeros(rows, dtype=torch.long), []
        for _ in range(steps):
            start = time.perf_counter()
            ids = batch.step(ids).argmax(-1)
            times.append(1e3 * (time.perf_counter() - start))
    return round(float(np.median(times)), 3)


async def engine_ceiling(folder: Path, concurrency: list[int], args: argparse.Namespace) -> dict:
    """Without HTTP, in this process: the model's decode step at each batch size, and the
    output tokens/s of the Engine (scheduler, sampling, detokenizing) with that many requests
    at once; what the server can at best reach."""
    from attnlab.io import load_tokenizer
    from attnlab.models.auto import from_pretrained
    from attnlab.serve.engine import Engine
    from attnlab.serve.requests import SamplingParams

    model = from_pretrained(folder).eval()
    engine = Engine(model, load_tokenizer(folder), max_batch=args.max_batch,
                    max_queue=args.max_queue)
    steps = {str(n): decode_step_ms(model, engine.encode(PROMPTS[0]), n) for n in concurrency}
    engine.start()
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0, ignore_eos=True)
    rates = {}
    try:
        for n in [1, *concurrency]:  # the first pass warms up
            start = time.perf_counter()
            handles = [engine.submit(engine.encode(PROMPTS[i % len(PROMPTS)]), params)
                       for i in range(n)]
            for handle in handles:
                async for _ in handle.deltas():
                    pass
            rates[str(n)] = round(n * args.max_tokens / (time.perf_counter() - start), 1)
    finally:
        engine.stop(10.0)
    return {"decode_step_ms": steps,
            "engine_output_tokens_per_s": {k: rates[k] for k in map(str, concurrency)}}


def server_flags(args: argparse.Namespace) -> list[str]:
    return ["--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue),
            "--log-level", "warning"]


def measure_model(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    ceiling = asyncio.run(engine_ceiling(folder, sorted({1, min(16, args.max_batch)}), args))
    print(f"{name} without HTTP: decode step {ceiling['decode_step_ms']} ms, engine "
          f"{ceiling['engine_output_tokens_per_s']} tokens/s", flush=True)
    levels = []
    with ServerProcess(folder, *server_flags(args), threads=args.server_threads,
                       start_timeout=START_TIMEOUT_S) as server:
        warm = argparse.Namespace(**{**vars(args), "requests": 2, "level_seconds": 5.0})
        asyncio.run(run_level(server.url, 2, warm))
        for clients in args.levels:
            before, server_cpu, client_cpu = scrape(server.url), server.cpu_seconds(), \
                time.process_time()
            level = asyncio.run(run_level(server.url, clients, args))
            level["server"] = server_view(before, scrape(server.url), level["wall_s"])
            # CPU seconds per wall second: 1.0 = one core busy all the level
            level["client_cores"] = round((time.process_time() - client_cpu) / level["wall_s"], 2)
            if server_cpu is not None:
                level["server"]["cores"] = round((server.cpu_seconds() - server_cpu)
                                                 / level["wall_s"], 2)
            levels.append(level)
            print(f"{name} {clients:3d} clients: {level['output_tokens_per_s']:8.1f} tokens/s, "
                  f"{level['completed']}/{level['requests_sent']} completed, "
                  f"{level['rate_limited']} 429, {level['timeouts']} timeouts, "
                  f"failures {level['failures']}", flush=True)
    by = {lv["clients"]: lv["output_tokens_per_s"] for lv in levels}
    ratio = round(by[16] / by[1], 2) if 1 in by and 16 in by and by[1] else None
    return {"without_http": ceiling, "levels": levels, "ratio_16_vs_1": ratio}


def targets(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's targets: 16 clients >= 4x the tokens/s of one; nothing lost or failed below
    the limits; above them 429s, never timeouts or failures."""
    capacity = args.max_batch + args.max_queue
    below = [lv for lv in result["levels"] if lv["clients"] <= capacity]
    above = [lv for lv in result["levels"] if lv["clients"] > capacity]
    ratio = result["ratio_16_vs_1"]
    return {"ratio_16_vs_1_at_least_4": None if ratio is None else ratio >= 4.0,
            "no_errors_below_limits": all(lv["rate_limited"] == lv["timeouts"] == 0
                                          and not lv["failures"] for lv in below),
            "above_limits_429_not_timeouts": None if not above else all(
                lv["rate_limited"] > 0 and lv["timeouts"] == 0 and not lv["failures"]
                for lv in above)}


def table(name: str, levels: list[dict]) -> str:
    head = ("clients", "req/s", "tok/s", "TTFT p50", "TTFT p99", "tok ms p50", "tok ms p99",
            "429", "timeouts", "failed", "mean batch")
    lines = [f"{name}", " | ".join(head), " | ".join("---" for _ in head)]
    for lv in levels:
        lines.append(" | ".join(str(v) for v in (
            lv["clients"], lv["requests_per_s"], lv["output_tokens_per_s"], lv["ttft_ms"]["p50"],
            lv["ttft_ms"]["p99"], lv["per_token_ms"]["p50"], lv["per_token_ms"]["p99"],
            lv["rate_limited"], lv["timeouts"], sum(lv["failures"].values()),
            lv["server"]["mean_batch"])))
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from attnlab.viz.figures import save_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, result in results.items():
        xs = [lv["clients"] for lv in result["levels"]]
        ratio = result["ratio_16_vs_1"]
        left.plot(xs, [lv["output_tokens_per_s"] for lv in result["levels"]], marker="o",
                  label=name + (f" (16 vs 1: {ratio:g}x)" if ratio else ""))
        right.plot(xs, [lv["ttft_ms"]["p50"] for lv in result["levels"]], marker="o", label=name)
    left.set_ylabel("output tokens/s (all clients)")
    right.set_ylabel("time to first token, p50 (ms)")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_locator(NullLocator())
        low, high = ax.get_ylim()  # 1-2-5 ticks written plainly, not as powers of ten
        ticks = [m * 10**e for e in range(-1, 7) for m in (1, 2, 5) if low <= m * 10**e <= high]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("concurrent streaming clients")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("attnlab serve on 127.0.0.1: continuous batching under load", fontsize=10)
    save_png(fig, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.server_threads)  # as the server's (the without-HTTP figures)
    header = record_header(SCRIPT, sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results, models = {}, {}
    with tempfile.TemporaryDirectory(prefix="serve-load-") as root:
        for name in args.models:
            folder, models[name] = build_folder(name, Path(root), args.vocab_size,
                                                args.corpus_lines)
            results[name] = measure_model(name, folder, args)
            results[name]["targets"] = targets(results[name], args)
    record = {
        **header, "benchmark": "serve_load", "attnlab": __version__, "httpx": httpx.__version__,
        "server_command": "python -m attnlab serve --model DIR --host 127.0.0.1 --port PORT "
                          f"--threads {args.server_threads} " + " ".join(server_flags(args)),
        "limits": {"max_batch": args.max_batch, "max_queue": args.max_queue},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "request": {"endpoint": "/v1/completions", "stream": True, "temperature": 0,
                    "ignore_eos": True, "max_tokens": args.max_tokens, "prompts": PROMPTS},
        "models": models, "results": results,
        "passed": all(v is not False for r in results.values() for v in r["targets"].values()),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    for name, result in results.items():
        print(table(name, result["levels"]))
        print(f"{name}: tokens/s at 16 clients / at 1 = {result['ratio_16_vs_1']} (target >= 4); "
              f"targets {result['targets']}")
    write_record(args.out, record)
    if not args.quick:
        plot(results, args.out.with_suffix(".png"))
    return record


if __name__ == "__main__":
    main()
