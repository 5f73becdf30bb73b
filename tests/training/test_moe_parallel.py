"""Mixture-of-experts models on many processes: an expert that gets no token in a step gets a
zero gradient (never none), so DDP's all-reduce needs no `find_unused_parameters`; 2 gloo
processes under torchrun train a Switch GPT-2 whose routers leave experts idle with DDP and with
FSDP2 (`moe_ranks.py`), the ranks stay equal and the idle experts do not move."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnlab.models import build_model

HERE = Path(__file__).parent


@pytest.mark.parametrize("dispatch", ["grouped", "loop"])
def test_idle_experts_get_a_zero_gradient_not_none(dispatch):
    torch.manual_seed(0)
    model = build_model("llama-tiny", moe={"experts": 4, "top_k": 1, "dispatch": dispatch})
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.feed_forward.router.weight.zero_()  # every token to one expert
    ids = torch.randint(0, 1000, (2, 8))
    out = model(ids, labels=ids)
    out.loss.backward()
    assert not [name for name, p in model.named_parameters() if p.grad is None]
    routed = out.expert_load[0] > 0
    assert routed.sum() == 1
    grad = model.decoder.layers[0].feed_forward.experts.gate_proj.grad  # (E, F, D)
    assert torch.equal(grad.flatten(1).abs().sum(1) > 0, routed)


@pytest.mark.slow  # two torchrun processes start (~9 s on 2 cores)
def test_ddp_and_fsdp_train_with_idle_experts():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(HERE / "moe_ranks.py")],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["strategy"] for r in lines] == ["ddp", "fsdp"]
    for r in lines:
        assert not all(r["routed"]), r  # some experts got no token
        assert not all(r["moved"]) and any(r["moved"]), r  # idle ones kept their weights
    assert lines[0]["rank_gap"] == 0.0  # DDP: both ranks hold the same weights
    assert lines[0]["moved"] == lines[1]["moved"]
