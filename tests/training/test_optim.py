"""training/optim.py: the tasks' Adam / AdamW use torch's fused kernel where every parameter
allows it, and it updates the parameters as the plain loop does (to float rounding)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnlab.training.optim import adam, fused_supported


@pytest.mark.parametrize("decoupled", [True, False], ids=["adamw", "adam"])
def test_fused_update_equals_the_loop(decoupled):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    loop = copy.deepcopy(model)
    fast = adam(model.parameters(), decoupled_weight_decay=decoupled, lr=1e-2,
                weight_decay=0.1)
    slow = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
        loop.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fast.defaults["fused"] is True and isinstance(
        fast, torch.optim.AdamW if decoupled else torch.optim.Adam)
    x, start = torch.randn(8, 16), model[0].weight.detach().clone()
    for _ in range(5):
        for net, opt in ((model, fast), (loop, slow)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), loop.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(model[0].weight, start)  # the steps moved the weights


def test_parameter_groups_and_unsupported_tensors():
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2, 2))
    opt = adam([{"params": [a], "weight_decay": 0.0}, {"params": [b]}], lr=1e-3)
    assert opt.defaults["fused"] is True and len(opt.param_groups) == 2
    assert not fused_supported([torch.zeros(2, dtype=torch.int64)])
    assert not fused_supported([torch.zeros(2, device="meta")])
    assert not fused_supported([])
