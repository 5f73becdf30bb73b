"""What the fused AdamW kernel buys in a training step (training/optim.py): for GPT-2 124M and
the 6-layer LLaMA of benchmarks/vs_transformers.py, the time of one AdamW step with torch's
default per-tensor loop, with `foreach`, and fused (what every attnlab task uses), and of a
whole step (forward + backward + AdamW, 4 x 128 tokens, fp32) with the loop and fused; the
variants alternating, median of --repeats. Also the training roofline fraction (model FLOPs
utilisation) of the whole step, against the fp32 matmul peak measured now.

    python benchmarks/optimizer_step.py            # ~3 minutes on 2 cores
    python benchmarks/optimizer_step.py --quick    # tiny shapes, seconds

Run it alone. Writes benchmarks/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import MODELS, QUICK, alternate, build_pair  # noqa: E402

from attnlab.evaluation.machine import record_header, write_record  # noqa: E402
from attnlab.evaluation.roofline import matmul_peak, training_roofline  # noqa: E402
from attnlab.training.optim import adam  # noqa: E402

SCRIPT = "benchmarks/optimizer_step.py"
OUT = Path(__file__).resolve().parent / "results" / "optimizer_step.json"
KINDS = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def with_grads(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return model


def measure(name: str, family: str, values: dict, args, peak: float) -> dict:
    ours, _ = build_pair(family, values)
    ours.train()
    record: dict = {"model": name, "params": sum(p.numel() for p in ours.parameters())}
    models = {kind: with_grads(copy.deepcopy(ours)) for kind in KINDS}
    optimizers = {kind: torch.optim.AdamW(models[kind].parameters(), lr=1e-4, **options)
                  for kind, options in KINDS.items()}
    for opt in optimizers.values():
        opt.step()  # warm-up: the state is allocated on the first step
    seconds = alternate({kind: opt.step for kind, opt in optimizers.items()}, args.repeats)
    record["adamw_step_ms"] = {kind: round(s * 1e3, 1) for kind, s in seconds.items()}
    ids = torch.randint(1, values["vocab_size"], (args.batch, args.length))

    def train_step(model, opt):
        def run() -> None:
            opt.zero_grad(set_to_none=True)
            model(ids, labels=ids).loss.backward()
            opt.step()
        return run

    loop_model, fused_model = copy.deepcopy(ours), copy.deepcopy(ours)
    steps = {"loop": train_step(loop_model, torch.optim.AdamW(loop_model.parameters(), lr=1e-4,
                                                                foreach=False)),
             "fused (attnlab)": train_step(fused_model, adam(fused_model.parameters(),
                                                             lr=1e-4))}
    for run in steps.values():
        run()
    seconds = alternate(steps, args.repeats)
    tokens = args.batch * args.length
    roofline = training_roofline(ours, args.length, peak)  # tokens/s at the matmul peak
    record["train_step"] = {kind: {"seconds": round(s, 3), "tokens_per_s": round(tokens / s, 1),
                                   "fraction_of_matmul_peak": round(tokens / s / roofline, 3)}
                            for kind, s in seconds.items()}
    record["train_step_speedup"] = round(seconds["loop"] / seconds["fused (attnlab)"], 3)
    print(json.dumps(record), flush=True)
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    peak = matmul_peak(torch.float32, n=512 if args.quick else 2048)
    record = {**record_header(SCRIPT, sys.argv[1:] if argv is None else argv),
              "threads": torch.get_num_threads(), "matmul_peak_fp32": peak.as_dict(),
              "shape": f"{args.batch} x {args.length}, fp32"}
    shapes = QUICK if args.quick else MODELS
    record["records"] = [measure(name, family, values, args, peak.value)
                         for name, (family, values) in shapes.items()]
    write_record(args.out, record)


if __name__ == "__main__":
    main()
