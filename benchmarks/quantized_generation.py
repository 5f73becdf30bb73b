"""What lower-precision weights buy in greedy generation on this CPU, and what they cost:

- speed: new tokens/s at batch 1 and 8 of GPT-2 124M and a 6-layer LLaMA with GQA (the shapes
  of benchmarks/vs_transformers.py, same random weights on every side), for transformers fp32,
  attnlab fp32, attnlab bf16 weights (`model.to(torch.bfloat16)`), attnlab int8 weight-only
  per channel and int4 in groups of 32 (`attnlab.nn.quant.with_weights`: the matmul in bf16
  where the CPU computes it natively), and with `--compile` the int8 and int4 sides again with
  their blocks compiled (`nn/compile.py`),
  alternating the sides, median of --repeats; each as a ratio to transformers fp32 and as a
  fraction of the generation roofline (bytes each decode step reads / measured bandwidth);
- quality: validation perplexity of a GPT-2 trained here on real text (the World English Bible,
  Debian's sword-text-web; `attnlab train lm`, fixed steps) in each format, and the
  share of greedy continuations (32 tokens from 20 held-out prompts) identical to fp32.

    python benchmarks/quantized_generation.py --compile  # ~12 minutes on 2 cores
    python benchmarks/quantized_generation.py --quick    # tiny shapes, seconds

Run it alone. Writes benchmarks/results/quantized_generation.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import MODELS, QUICK, alternate, build_pair  # noqa: E402

from attnlab.evaluation.machine import record_header, write_record  # noqa: E402
from attnlab.evaluation.roofline import generation_roofline, read_bandwidth  # noqa: E402
from attnlab.nn.compile import compile_blocks  # noqa: E402
from attnlab.nn.quant import native_bf16, with_weights  # noqa: E402

SCRIPT = "benchmarks/quantized_generation.py"
OUT = Path(__file__).resolve().parent / "results" / "quantized_generation.json"


def variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {"attnlab fp32": model,
            "attnlab bf16": copy.deepcopy(model).to(torch.bfloat16),
            "attnlab int8": with_weights(copy.deepcopy(model), "int8"),
            "attnlab int4": with_weights(copy.deepcopy(model), "int4")}


def speed(name: str, family: str, values: dict, args, bandwidth: float) -> list[dict]:
    ours, hf = build_pair(family, values)
    ours.eval(), hf.eval()
    sides = variants(ours)
    if args.compile:  # the quantized sides again with their blocks compiled (--compile)
        for side in ("attnlab int8", "attnlab int4"):
            sides[f"{side}, compiled"] = compile_blocks(copy.deepcopy(sides[side]),
                                                        dynamic=True)
    records = []
    vocab = values["vocab_size"]
    for batch in args.batch_sizes:
        prompt = torch.randint(1, vocab, (batch, args.prompt_len))
        runs = {side: (lambda m=m, p=prompt: m.generate(p, max_new_tokens=args.new_tokens,
                                                       eos_token_id=-1))
                for side, m in sides.items()}
        runs["transformers fp32"] = lambda p=prompt: hf.generate(
            p, attention_mask=torch.ones_like(p), max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            outputs = {side: run() for side, run in runs.items()}  # also the warm-up
            median = alternate(runs, args.repeats)
        reference = outputs["attnlab fp32"][:, args.prompt_len:]
        context = args.prompt_len + args.new_tokens // 2  # the mean context while decoding
        for side, seconds in median.items():
            tps = batch * args.new_tokens / seconds
            model = sides.get(side, ours)
            roofline = generation_roofline(model, batch, context, bandwidth)
            new = outputs[side][:, -args.new_tokens:]
            records.append({
                "model": name, "batch": batch, "side": side, "tokens_per_s": round(tps, 1),
                "ratio_to_transformers_fp32": round(
                    tps / (batch * args.new_tokens / median["transformers fp32"]), 2),
                "roofline_tokens_per_s": round(roofline, 1),
                "fraction_of_roofline": float(f"{tps / roofline:.3g}"),
                "tokens_same_as_fp32": round(float((new == reference).float().mean()), 3)})
            print(json.dumps(records[-1]), flush=True)
    return records


def bible_text(path: Path) -> Path:
    from attnlab.data.sword import is_installed, read_verses

    if not is_installed("engWEB2015eb"):
        raise SystemExit("needs Debian's sword-text-web (make data installs it)")
    verses = read_verses("engWEB2015eb")
    path.write_text("\n".join(verses.values()) + "\n", encoding="utf-8")
    return path


def quality(args) -> dict:
    """Perplexity and greedy agreement of a GPT-2 trained on the World English Bible."""
    from attnlab import from_pretrained
    from attnlab.cli.main import main as attnlab_main
    from attnlab.data.checks import split_held_out
    from attnlab.io import load_tokenizer
    from attnlab.tasks.language_model import encode_text, validation_loss

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    text = bible_text(work / "web.txt")
    run = work / "lm"
    if not (run / "model.safetensors").is_file():
        argv = ["train", "lm", "--text", str(text), "--out", str(run), "--overwrite",
                "--preset", "gpt2-tiny", "--set", "d_model=256", "--set", "n_heads=4",
                "--set", "n_layers=4", "--set", "d_ff=1024", "--vocab-size", "4000",
                "--block-size", "128", "--batch-size", "16", "--max-steps", str(args.steps),
                "--warmup-steps", "100", "--save-every", "0"]
        assert attnlab_main(argv) == 0
    model = from_pretrained(run)
    stream = encode_text(load_tokenizer(run), text.read_text(encoding="utf-8").splitlines())
    _, held_out = split_held_out(stream, 0.05, str(text), block_size=128,  # the run's own
                                 train_needed=130)
    result = {"trained": {"steps": args.steps, "params": model.num_parameters(),
                          "text": "World English Bible (sword-text-web), verses"}}
    sides = variants(model)
    prompts = [held_out[i * 60:i * 60 + 16][None] for i in range(20)]
    with torch.no_grad():
        greedy = {side: [m.generate(p, max_new_tokens=32, eos_token_id=-1)[:, 16:]
                         for p in prompts] for side, m in sides.items()}
        for side, m in sides.items():
            loss = validation_loss(m, held_out, 128)
            same = sum(int(torch.equal(a, b)) for a, b in zip(greedy[side],
                                                                greedy["attnlab fp32"],
                                                                strict=True))
            tokens = sum(float((a == b).float().mean()) for a, b in zip(
                greedy[side], greedy["attnlab fp32"], strict=True)) / len(prompts)
            result[side] = {"valid_perplexity": round(math.exp(loss), 3),
                            "continuations_identical_to_fp32": f"{same}/{len(prompts)}",
                            "tokens_same_as_fp32": round(tokens, 3)}
            print(json.dumps({side: result[side]}), flush=True)
    base = result["attnlab fp32"]["valid_perplexity"]
    for side in ("attnlab bf16", "attnlab int8", "attnlab int4"):
        result[side]["perplexity_change"] = round(result[side]["valid_perplexity"] / base - 1, 4)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes, no training")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=1500, help="training steps of the quality model")
    p.add_argument("--work-dir", default="runs/quantized-benchmark")
    p.add_argument("--compile", action="store_true",
                   help="also time the int8 and int4 sides with compiled blocks")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    import transformers

    # every compiled side adds graphs (prefill and decode shapes) for the same block code
    torch._dynamo.config.recompile_limit = 64

    record = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "threads": torch.get_num_threads(), "native_bf16": native_bf16()}
    start = time.perf_counter()
    measured = read_bandwidth(nbytes=2**28 if args.quick else 2 * 2**30)
    bandwidth = measured.value  # GB/s
    record["read_bandwidth"] = measured.as_dict()
    shapes = QUICK if args.quick else MODELS
    record["speed"] = [r for name, (family, values) in shapes.items()
                       for r in speed(name, family, values, args, bandwidth)]
    if not args.quick:
        record["quality"] = quality(args)
    record["benchmark_seconds"] = round(time.perf_counter() - start, 1)
    write_record(args.out, record)


if __name__ == "__main__":
    main()
