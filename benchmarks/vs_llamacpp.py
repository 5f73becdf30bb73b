"""attnlab against llama.cpp, the field's fastest CPU path, on the same GGUF file: greedy
generation tokens/s at batch 1 of a LLaMA-family model of SmolLM-135M's shape (30 layers,
d 576, GQA 9/3, d_ff 1536, vocabulary 49152, tied embeddings; random weights, nothing is
downloaded), with 2 threads on each side:

- llama.cpp (through its Python binding `llama-cpp-python`, built here from source) running the
  model written by `attnlab.io.gguf_write` as Q4_1 and as F32;
- attnlab loading that Q4_1 file with `attnlab.from_pretrained` (its 4-bit blocks kept 4-bit,
  `Int4Linear`), and the float model in fp32, bf16 and int8 weights (`--weights`); the Q4_1
  and fp32 models again with their blocks compiled (`--compile`, `nn/compile.py`), and the Q4_1
  model with its decoder compiled as one graph (`--compile stack`);
- transformers fp32 (LlamaForCausalLM with the same weights), the baseline of the other
  benchmarks.

Each side decodes --new-tokens tokens after a --prompt-len prompt, the sides alternating,
median of --repeats after a warm-up. Each figure is also a fraction of its generation roofline
(bytes each step reads, in that side's own format, / measured read bandwidth). Greedy tokens
are compared with attnlab fp32's; random weights make the logits nearly flat, so a 4-bit
format changes the argmax early (the agreement of llama.cpp Q4_1 with attnlab Q4_1, which read
the same 4-bit values, is the meaningful one).

    pip install llama-cpp-python        # builds llama.cpp (~10 minutes on 2 cores)
    python benchmarks/vs_llamacpp.py            # ~12 minutes on 2 cores
    python benchmarks/vs_llamacpp.py --quick    # a tiny model, seconds

Run it alone. Writes benchmarks/results/vs_llamacpp.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import alternate, build_pair  # noqa: E402

import attnlab  # noqa: E402
from attnlab.evaluation.machine import record_header, write_record  # noqa: E402
from attnlab.evaluation.roofline import generation_bytes_per_token, read_bandwidth  # noqa: E402
from attnlab.io.gguf_write import write_gguf  # noqa: E402
from attnlab.nn.compile import compile_blocks  # noqa: E402
from attnlab.nn.quant import with_weights  # noqa: E402
from attnlab.tokenizers import Tokenizer  # noqa: E402

SCRIPT = "benchmarks/vs_llamacpp.py"
OUT = Path(__file__).resolve().parent / "results" / "vs_llamacpp.json"
SMOLLM_135M = dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                   num_key_value_heads=3, num_hidden_layers=30, vocab_size=49152,
                   max_position_embeddings=2048, tie_word_embeddings=True)
QUICK = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
             num_hidden_layers=2, vocab_size=512, max_position_embeddings=256,
             tie_word_embeddings=True)


def synthetic_byte_level(vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer of exactly `vocab_size` ids (<|endoftext|>, the 256 byte
    symbols, then random merges of existing tokens), so that llama.cpp loads the file; the
    benchmark feeds token ids and never reads text."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(alphabet)}}
    tokens, merges, rng = list(alphabet), [], random.Random(0)
    while len(vocab) < vocab_size:
        a, b = rng.choice(tokens), rng.choice(tokens)
        if len(a + b) <= 12 and a + b not in vocab:
            vocab[a + b] = len(vocab)
            tokens.append(a + b)
            merges.append((a, b))
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<|endoftext|>"])
    return Tokenizer(backend)


def gguf_bytes_per_token(path: Path, config, context: int) -> int:
    """Bytes llama.cpp reads per decoding step: every tensor but a lookup-only embedding (a
    tied one is read whole by the output layer) and an F16 KV cache of `context` tokens."""
    import gguf

    tensors = gguf.GGUFReader(path).tensors
    tied = not any(t.name == "output.weight" for t in tensors)
    weights = sum(int(t.n_bytes) for t in tensors if tied or t.name != "token_embd.weight")
    kv = config.n_kv_heads or config.n_heads
    return weights + 2 * config.n_layers * kv * (config.d_model // config.n_heads) * context * 2


def llamacpp_side(path: Path, prompt: list[int], new: int, threads: int):
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=len(prompt) + new + 8, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)

    def run() -> list[int]:
        llm.reset()  # no prefix reuse between runs: every run decodes its prompt again
        out = []
        for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
            out.append(token)
            if len(out) == new:
                return out
        return out

    return run


def torch_side(model, prompt: torch.Tensor, new: int, hf: bool = False):
    def run() -> list[int]:
        with torch.no_grad():
            if hf:
                out = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                     max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                     pad_token_id=0)
            else:
                out = model.generate(prompt, max_new_tokens=new, eos_token_id=-1)
        return out[0, prompt.size(1):].tolist()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, seconds")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the compiled attnlab sides (~4 minutes of compiling)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 64  # several compiled models share block code
    values = QUICK if args.quick else SMOLLM_135M
    ours, hf = build_pair("llama", values)
    ours.eval(), hf.eval()
    tokenizer = synthetic_byte_level(ours.config.vocab_size)
    bandwidth = read_bandwidth(repeats=10).value
    prompt = torch.randint(1, ours.config.vocab_size, (1, args.prompt_len),
                           generator=torch.Generator().manual_seed(1))
    context = args.prompt_len + args.new_tokens // 2  # the mean context while decoding
    runs, bytes_per_step = {}, {}
    with tempfile.TemporaryDirectory() as work:
        files = {kind: write_gguf(Path(work) / f"model.{kind}.gguf", ours, kind, tokenizer)
                 for kind in ("Q4_1", "F32")}
        models = {"attnlab Q4_1 file (int4)": attnlab.from_pretrained(files["Q4_1"]),
                  "attnlab fp32": ours,
                  "attnlab bf16": with_weights(copy.deepcopy(ours), "bf16"),
                  "attnlab int8": with_weights(copy.deepcopy(ours), "int8")}
        if not args.no_compile:  # the same two models with their blocks compiled
            models["attnlab Q4_1 file (int4), compiled"] = compile_blocks(
                attnlab.from_pretrained(files["Q4_1"]), dynamic=True)
            models["attnlab fp32, compiled"] = compile_blocks(copy.deepcopy(ours), dynamic=True)
            models["attnlab Q4_1 file (int4), compiled stack"] = compile_blocks(
                attnlab.from_pretrained(files["Q4_1"]), dynamic=True, scope="stack")
        for side, model in models.items():
            runs[side] = torch_side(model, prompt, args.new_tokens)
            bytes_per_step[side] = generation_bytes_per_token(model, 1, context)
        runs["transformers fp32"] = torch_side(hf, prompt, args.new_tokens, hf=True)
        bytes_per_step["transformers fp32"] = bytes_per_step["attnlab fp32"]
        try:
            for kind, path in files.items():
                side = f"llama.cpp {kind}"
                runs[side] = llamacpp_side(path, prompt[0].tolist(), args.new_tokens,
                                           args.threads)
                bytes_per_step[side] = gguf_bytes_per_token(path, ours.config, context)
        except ImportError:
            print("llama-cpp-python is not installed: llama.cpp sides skipped", flush=True)
        tokens = {side: run() for side, run in runs.items()}  # also the warm-up
        median = alternate(runs, args.repeats)
    reference, baseline = tokens["attnlab fp32"], median["transformers fp32"]
    records = []
    for side, seconds in median.items():
        tps = args.new_tokens / seconds
        roofline = bandwidth * 1e9 / bytes_per_step[side]
        records.append({
            "side": side, "tokens_per_s": round(tps, 1),
            "ratio_to_transformers_fp32": round(baseline / seconds, 2),
            "bytes_per_step_mb": round(bytes_per_step[side] / 1e6, 1),
            "roofline_tokens_per_s": round(roofline, 1),
            "fraction_of_roofline": float(f"{tps / roofline:.3g}"),
            "tokens_same_as_attnlab_fp32": round(sum(
                a == b for a, b in zip(tokens[side], reference, strict=True)) / len(reference),
                3)})
        print(json.dumps(records[-1]), flush=True)
    for ours_side in [s for s in median if s.startswith("attnlab Q4_1")]:
        if "llama.cpp Q4_1" not in tokens:
            break
        same = [a == b for a, b in zip(tokens["llama.cpp Q4_1"], tokens[ours_side],
                                       strict=True)]
        records.append({"comparison": f"{ours_side} vs llama.cpp Q4_1",
                        "first_greedy_tokens_identical": same.index(False) if False in same
                        else len(same),
                        "speed_ratio": round(median["llama.cpp Q4_1"] / median[ours_side], 3)})
        print(json.dumps(records[-1]), flush=True)
    result = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "model": "SmolLM-135M shape" if not args.quick else "quick", "config": values,
              "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
              "repeats": args.repeats, "threads": args.threads,
              "read_bandwidth_gb_s": round(bandwidth, 1), "records": records}
    if not args.quick or args.out != str(OUT):
        write_record(args.out, result)


if __name__ == "__main__":
    main()
