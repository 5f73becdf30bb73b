"""What routing costs in one MoE feed-forward layer (nn/moe.py) on this CPU: forward + backward
of E = 8 SwiGLU experts with top-1 and top-2 routing, the experts evaluated by one grouped
matmul over the rows sorted by expert (`dispatch="grouped"`, the default) or one matmul per
expert (`"loop"`), against the dense SwiGLU FFN with the same ACTIVE parameters (d_ff * k), so
the ratio MoE / dense is the overhead of routing, sorting, gathering and scattering. The sides
alternate (order flipped each repeat); medians of --repeats; the fraction of the fp32 matmul
peak measured now is the useful FLOPs (the experts' and the dense FFN's GEMMs) per second.

    python benchmarks/moe_dispatch.py            # ~1 minute on 2 idle cores
    python benchmarks/moe_dispatch.py --quick    # small shapes, seconds

Run it alone. Writes benchmarks/results/moe_dispatch.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import alternate  # noqa: E402

from attnlab.evaluation.machine import record_header, write_record  # noqa: E402
from attnlab.evaluation.roofline import matmul_peak  # noqa: E402
from attnlab.nn.feedforward import FEEDFORWARD  # noqa: E402
from attnlab.nn.moe import MoE, MoEConfig  # noqa: E402

SCRIPT = "benchmarks/moe_dispatch.py"
OUT = Path(__file__).resolve().parent / "results" / "moe_dispatch.json"


def step(module: torch.nn.Module, x: torch.Tensor):
    def run() -> None:
        module.zero_grad(set_to_none=True)
        out = module(x)
        out = out.output if hasattr(out, "output") else out
        out.square().mean().backward()
    return run


def measure(tokens: int, d_model: int, d_ff: int, experts: int, top_k: int,
            repeats: int, peak: float) -> dict:
    torch.manual_seed(0)
    x = torch.randn(1, tokens, d_model)
    sides = {"dense": FEEDFORWARD.build("swiglu", d_model=d_model, d_ff=d_ff * top_k)}
    for dispatch in ("grouped", "loop"):
        sides[dispatch] = MoE(d_model, d_ff, MoEConfig(experts=experts, top_k=top_k,
                                                        dispatch=dispatch))
    for module in sides.values():
        step(module, x)()  # warm-up
    seconds = alternate({name: step(m, x) for name, m in sides.items()}, repeats)
    # 3 GEMMs of (tokens x D x d_ff k) forward, twice that backward: 3 * 2 * 3 * N D F k
    flops = 18 * tokens * d_model * d_ff * top_k
    record = {"tokens": tokens, "d_model": d_model, "d_ff_per_expert": d_ff,
              "experts": experts, "top_k": top_k,
              "ms": {k: round(v * 1e3, 2) for k, v in seconds.items()},
              "ratio_to_dense": {k: round(v / seconds["dense"], 3) for k, v in seconds.items()
                                 if k != "dense"},
              "fraction_of_matmul_peak": {k: round(flops / v / peak, 3)
                                          for k, v in seconds.items()}}
    print(json.dumps(record), flush=True)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    shapes = ([(512, 64, 128)] if args.quick else
              [(2048, 128, 256), (4096, 256, 512), (8192, 512, 1024)])
    peak = matmul_peak(torch.float32).value
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s, {torch.get_num_threads()} threads",
          flush=True)
    records = [measure(n, d, f, 8, k, repeats, peak) for n, d, f in shapes for k in (1, 2)]
    record = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "threads": torch.get_num_threads(), "matmul_peak_fp32_gflops": round(peak / 1e9, 1),
              "what": "forward + backward of one FFN layer, fp32, median ms; dense = SwiGLU "
                      "with d_ff * top_k (equal active parameters)",
              "results": records}
    write_record(args.out, record)


if __name__ == "__main__":
    main()
