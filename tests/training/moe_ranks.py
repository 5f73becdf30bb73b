"""Run by tests/training/test_moe_parallel.py under torchrun (2 gloo processes): a Switch GPT-2
(4 experts, top 1) whose zeroed routers send every token to one expert, trained 3 steps with
DDP and then with FSDP2 through training/parallelize.py. Rank 0 prints one JSON line per
strategy: which experts got tokens, which moved, and the largest weight gap between the ranks."""

from __future__ import annotations

import json

import torch
import torch.distributed as dist

from attnlab.models import build_model
from attnlab.training.distributed import process_group
from attnlab.training.parallelize import parallelize

CPU = torch.device("cpu")


def experts(model) -> torch.Tensor:
    return torch.stack([layer.feed_forward.experts.down_proj.detach().clone()
                        for layer in model.decoder.layers])  # (L, E, D, F)


def train(strategy: str, ranks) -> dict:
    torch.manual_seed(0)
    model = build_model("gpt2-tiny", dropout=0.0, attention_dropout=0.0,
                        moe={"experts": 4, "top_k": 1, "capacity_factor": 2.0})
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.feed_forward.router.weight.zero_()  # equal logits: top-1 picks one expert
    before = experts(model)
    parallel = parallelize(model, ranks, CPU, strategy=strategy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.manual_seed(1 + ranks.rank)  # each rank its own batch
    for _ in range(3):
        ids = torch.randint(0, 1000, (2, 8))
        out = parallel.train_model(ids, labels=ids)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    load = out.expert_load.sum(0)  # (E,) this rank's last step
    with parallel.full_model() as full:  # FSDP gathers the shards; rank 0 gets the model
        state = None if full is None else {k: v.clone() for k, v in full.state_dict().items()}
    mine = model.state_dict() if strategy == "ddp" else None
    result = {"strategy": strategy, "routed": (load > 0).tolist()}
    if strategy == "ddp":  # every rank holds the whole model: compare rank 1's with rank 0's
        gaps = []
        for tensor in mine.values():
            other = tensor.clone()
            dist.broadcast(other, src=1)
            gaps.append((other - tensor).abs().max().item())
        result["rank_gap"] = max(gaps)
    if state is not None:
        after = torch.stack([state[f"decoder.layers.{i}.feed_forward.experts.down_proj"]
                             for i in range(2)])
        result["moved"] = ((after - before).flatten(3).abs().amax((0, 2, 3)) > 0).tolist()
    return result


def main() -> None:
    with process_group(CPU) as ranks:
        for strategy in ("ddp", "fsdp"):
            result = train(strategy, ranks)
            if ranks.is_main:
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
