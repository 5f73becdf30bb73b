"""What every efficient attention variant declares, checked over the ATTENTION registry.

The forward contract itself (shapes, masks, causality, gradients) is in
tests/nn/test_attention_contract.py; this file checks the declarations that the benchmarks and
users rely on: default construction, stated complexity, the budget knob, and behaviour at
lengths the contract suite does not reach (T = 1, lengths off any block grid, a few hundred).
"""

from __future__ import annotations

import inspect

import pytest
import torch

from attnlab.nn.attention import ATTENTION
from attnlab.nn.attention.efficient import EfficientAttention

torch.set_num_threads(1)

RNN_ERA = {"additive", "multiplicative"}
EXPECTED = {
    "sliding_window", "sparse", "longformer", "bigbird", "linformer", "performer", "linear",
    "reformer", "routing", "synthesizer",
}
# Variants whose structure depends on the padded length, so trailing masked junk may move the
# real tokens' outputs (never into NaN): BigBird's random blocks are drawn per block count,
# Linformer projects the padded length, Nystrom's landmarks are segment means over it, Reformer's
# chunks and Routing's cluster sizes are counted over it.
LAYOUT_DEPENDENT = {"bigbird", "linformer", "nystrom", "reformer", "routing"}
VARIANTS = [n for n in ATTENTION.names() if n not in RNN_ERA | {"multi_head"}]


def test_every_variant_of_the_issue_is_registered():
    assert EXPECTED <= set(ATTENTION.names())


@pytest.mark.parametrize("name", VARIANTS)
def test_builds_with_defaults_and_declares_its_cost(name):
    attn = ATTENTION.build(name, d_model=64, n_heads=4)
    cls = type(attn)
    assert "O(" in (inspect.getdoc(cls) or "") + (inspect.getmodule(cls).__doc__ or ""), (
        f"{name}: docstring must state time and memory complexity"
    )
    assert "O(" in getattr(cls, "complexity", ""), f"{name}: set the `complexity` ClassVar"
    knob = getattr(cls, "budget_knob", None)
    if knob is not None:
        assert knob in inspect.signature(cls).parameters, f"{name}: budget_knob {knob!r}"
    if isinstance(attn, EfficientAttention):
        assert attn.head_dim == 16


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("length", [1, 37, 300])
def test_odd_lengths_give_finite_outputs_and_gradients(name, length):
    torch.manual_seed(0)
    attn = ATTENTION.build(name, d_model=32, n_heads=4).train()
    x = torch.randn(2, length, 32, requires_grad=True)
    keep = torch.ones(2, length, dtype=torch.bool)
    keep[1, length // 2 + 1:] = False  # second example: right padding
    mask = keep[:, None, None, :]  # (B, 1, 1, T)
    for causal in (False, True) if cls_flag(attn, "supports_causal") else (False,):
        kw = {"mask": mask} if cls_flag(attn, "supports_mask") else {}
        out = attn(x, causal=causal, **kw).output
        assert out.shape == (2, length, 32)
        assert torch.isfinite(out).all()
        out.square().mean().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_is_invisible_at_a_longer_length(name):
    """Junk after the real tokens, masked out, changes nothing (several blocks deep)."""
    torch.manual_seed(0)
    attn = ATTENTION.build(name, d_model=32, n_heads=4).eval()
    if not cls_flag(attn, "supports_mask"):
        pytest.skip(f"{name} takes no padding mask")
    x = torch.randn(1, 150, 32)
    padded = torch.cat([x, 50 * torch.randn(1, 50, 32)], dim=1)  # (1, 200, 32)
    keep = torch.arange(200) < 150
    got = attn(padded, mask=keep[None, None, None, :]).output[:, :150]
    want = attn(x).output
    if name in LAYOUT_DEPENDENT:
        assert torch.isfinite(got).all()
        return
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def cls_flag(attn, flag: str) -> bool:
    return getattr(type(attn), flag, True)
