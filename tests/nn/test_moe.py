"""The MoE layer (nn/moe.py) against float64 references, hand computations, the dense FFN it
replaces and transformers' Mixtral block and load-balancing loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.moe import (
    MoE,
    MoEConfig,
    capacity_keep,
    feed_forward,
    load_balancing_loss,
    router_z_loss,
)


def reference_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Token by token in float64: softmax over E, top-k, renormalised (k > 1), weighted sum."""
    e = moe.experts
    out = torch.zeros(x.shape, dtype=torch.float64)
    flat = x.double().reshape(-1, x.size(-1))
    probs = (flat @ moe.router.weight.double().t()).softmax(-1)
    for n, token in enumerate(flat):
        weights, index = probs[n].topk(moe.config.top_k)
        if moe.config.normalize_top_k and moe.config.top_k > 1:
            weights = weights / weights.sum()
        for w, i in zip(weights, index, strict=True):
            h = e.up_proj[i].double() @ token
            if e.up_bias is not None:
                h = h + e.up_bias[i].double()
            if e.gate_proj is not None:
                h = e.act(e.gate_proj[i].double() @ token) * h
            else:
                h = e.act(h)
            y = e.down_proj[i].double() @ h
            if e.down_bias is not None:
                y = y + e.down_bias[i].double()
            out.view(-1, x.size(-1))[n] += w * y
    return out


@pytest.mark.parametrize("dispatch", ["grouped", "loop"])
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_moe_matches_float64_token_by_token(dispatch: str, top_k: int) -> None:
    torch.manual_seed(0)
    moe = MoE(16, 24, MoEConfig(experts=5, top_k=top_k, dispatch=dispatch)).eval()
    with torch.no_grad():
        moe.router.weight.normal_(std=1.0)  # decisive routing: no near-ties in float32
    x = torch.randn(3, 7, 16)
    out = moe(x)
    torch.testing.assert_close(out.output.double(), reference_moe(moe, x), atol=1e-5, rtol=1e-4)
    assert out.router.logits.shape == (21, 5) and out.router.logits.dtype == torch.float32
    assert out.router.expert_tokens.sum() == 21 * top_k and out.router.dropped == 0


def test_ungated_experts_with_bias_match_reference() -> None:
    torch.manual_seed(1)
    moe = MoE(8, 12, MoEConfig(experts=4, top_k=2), activation="gelu", gated=False,
              bias=True).eval()
    with torch.no_grad():
        moe.experts.up_bias.normal_()
        moe.experts.down_bias.normal_()
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x).output.double(), reference_moe(moe, x), atol=1e-5,
                               rtol=1e-4)


@pytest.mark.parametrize("kind", ["swiglu", "gelu"])
def test_one_expert_equals_the_dense_ffn(kind: str) -> None:
    torch.manual_seed(2)
    dense = FEEDFORWARD.build(kind, d_model=8, d_ff=16)
    moe = feed_forward(kind, 8, 16, MoEConfig(experts=1, top_k=1))
    with torch.no_grad():
        for name in ("gate_proj", "up_proj", "down_proj"):
            if hasattr(dense, name):
                getattr(moe.experts, name).copy_(getattr(dense, name).weight[None])
        if moe.experts.up_bias is not None:
            moe.experts.up_bias.copy_(dense.up_proj.bias[None])
            moe.experts.down_bias.copy_(dense.down_proj.bias[None])
    x = torch.randn(2, 6, 8)
    torch.testing.assert_close(moe(x).output, dense(x), atol=1e-6, rtol=1e-5)


def test_router_weights_against_float64() -> None:
    torch.manual_seed(3)
    moe = MoE(8, 8, MoEConfig(experts=6, top_k=2, normalize_top_k=False)).eval()
    x = torch.randn(40, 8)
    logits, index, weights = moe.router(x)
    probs = (x.double() @ moe.router.weight.double().t()).softmax(-1)
    ref_w, ref_i = probs.topk(2)
    assert torch.equal(index, ref_i)
    torch.testing.assert_close(weights.double(), ref_w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits.double(), x.double() @ moe.router.weight.double().t(),
                               atol=1e-5, rtol=1e-5)


def test_capacity_drops_exactly_the_assignments_beyond_it_in_order() -> None:
    # 6 tokens, top-2 over 3 experts, capacity 2 per expert. First choices queue first.
    index = torch.tensor([[0, 1], [0, 2], [0, 1], [1, 0], [2, 1], [1, 2]])
    keep = capacity_keep(index, experts=3, capacity=2)
    # first choices in token order: e0 <- t0, t1 (t2 dropped), e1 <- t3, t5, e2 <- t4;
    # then second choices: e1 full (t0, t2, t4 dropped), e2 <- t1 (t5 dropped: e2 has t4, t1),
    # e0 full (t3 dropped).
    expected = torch.tensor([[True, False], [True, True], [False, False], [True, False],
                             [True, False], [True, False]])
    assert torch.equal(keep, expected)
    assert capacity_keep(index, 3, None).all()


def test_dropped_tokens_get_zero_output_and_are_counted() -> None:
    torch.manual_seed(4)
    config = MoEConfig(experts=4, top_k=1, capacity_factor=0.5, normalize_top_k=False)
    moe = MoE(8, 8, config).eval()
    x = torch.randn(1, 32, 8)
    out = moe(x)
    capacity = math.ceil(0.5 * 32 / 4)
    kept = out.router.top_k_weights.ne(0).squeeze(1)
    assert int(out.router.dropped) == 32 - int(kept.sum())
    per_expert = torch.bincount(out.router.top_k_index[kept, 0], minlength=4)
    assert per_expert.max() <= capacity
    assert torch.all(out.output[0, ~kept] == 0)
    assert out.router.expert_tokens.sum() == 32  # counted before drops


def test_aux_loss_by_hand_and_against_transformers() -> None:
    torch.manual_seed(5)
    logits = [torch.randn(12, 4), torch.randn(12, 4)]
    loss = load_balancing_loss(logits, experts=4, top_k=2)
    probs = torch.cat(logits).softmax(-1)
    chosen = F.one_hot(probs.topk(2).indices, 4).sum(1).float()
    by_hand = 4 * (chosen.mean(0) * probs.mean(0)).sum()
    torch.testing.assert_close(loss, by_hand)
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    torch.testing.assert_close(loss, mixtral.load_balancing_loss_func(tuple(logits), 4, 2))
    mask = torch.ones(3, 4)
    mask[0, :2] = 0
    torch.testing.assert_close(load_balancing_loss(logits, 4, 2, mask),
                               mixtral.load_balancing_loss_func(tuple(logits), 4, 2, mask))
    # perfectly balanced routing (uniform probabilities, even top-1 counts) gives exactly 1
    even = torch.zeros(8, 4)
    even[torch.arange(8), torch.arange(8) % 4] = 1e-6
    assert abs(float(load_balancing_loss([even], 4, 1)) - 1.0) < 1e-5


def test_z_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    expected = (math.log(2) ** 2 + math.log(math.exp(1) + math.exp(3)) ** 2) / 2
    assert abs(float(router_z_loss(logits)) - expected) < 1e-6


def test_matches_transformers_mixtral_block() -> None:
    modeling = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    from transformers import MixtralConfig

    torch.manual_seed(6)
    hf = modeling.MixtralSparseMoeBlock(MixtralConfig(
        hidden_size=16, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(std=0.3)
    ours = MoE(16, 24, MoEConfig(experts=4, top_k=2)).eval()
    with torch.no_grad():
        ours.router.weight.copy_(hf.gate.weight)
        gate, up = hf.experts.gate_up_proj.chunk(2, dim=1)
        ours.experts.gate_proj.copy_(gate)
        ours.experts.up_proj.copy_(up)
        ours.experts.down_proj.copy_(hf.experts.down_proj)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x).output, hf(x.clone()), atol=1e-5, rtol=1e-4)


def test_grouped_and_loop_dispatch_agree_with_gradients() -> None:
    torch.manual_seed(7)
    a = MoE(8, 12, MoEConfig(experts=6, top_k=2, dispatch="grouped"))
    b = MoE(8, 12, MoEConfig(experts=6, top_k=2, dispatch="loop"))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 8)
    for m in (a, b):
        m(x).output.square().sum().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_gradients_reach_every_expert_that_received_tokens() -> None:
    torch.manual_seed(8)
    moe = MoE(8, 8, MoEConfig(experts=8, top_k=1))
    x = torch.randn(1, 5, 8)  # 5 tokens, 8 experts: some experts get nothing
    out = moe(x)
    out.output.sum().backward()
    routed = out.router.expert_tokens > 0
    grads = moe.experts.up_proj.grad.flatten(1).abs().sum(1)  # (E,)
    assert torch.all(grads[routed] > 0) and torch.all(grads[~routed] == 0)
    assert moe.router.weight.grad.abs().sum() > 0  # through the combine weights


def test_jitter_and_noise_only_while_training() -> None:
    torch.manual_seed(9)
    moe = MoE(8, 8, MoEConfig(experts=4, top_k=1, router_jitter=0.5, router_noise=True))
    x = torch.randn(2, 16, 8)
    moe.eval()
    assert torch.equal(moe(x).output, moe(x).output)
    moe.train()
    with torch.no_grad():
        moe.router.noise.weight.fill_(1.0)
    assert not torch.equal(moe(x).router.top_k_weights, moe(x).router.top_k_weights)
    assert moe.router.noise is not None


def test_config_checks_and_coercion() -> None:
    assert MoEConfig.coerce(None) is None
    assert MoEConfig.coerce({"experts": 4, "top_k": 1}) == MoEConfig(experts=4, top_k=1)
    with pytest.raises(ConfigError, match="unknown moe setting"):
        MoEConfig.coerce({"expert": 4})
    with pytest.raises(ConfigError, match="top_k"):
        MoEConfig(experts=2, top_k=3)
    with pytest.raises(ConfigError, match="capacity_factor"):
        MoEConfig(capacity_factor=-1)
    with pytest.raises(ConfigError, match="dispatch"):
        MoEConfig(dispatch="fast")
    assert [MoEConfig(every=2).is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert MoEConfig(experts=8, top_k=1, capacity_factor=1.25).capacity(64) == 10


def test_compiled_grouped_dispatch_falls_back_and_matches_eager() -> None:
    torch.manual_seed(10)
    moe = MoE(8, 12, MoEConfig(experts=4, top_k=2)).eval()
    x = torch.randn(2, 6, 8)
    compiled = torch.compile(moe, backend="eager")
    torch.testing.assert_close(compiled(x).output, moe(x).output, atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="at most 4096"):
        MoEConfig(experts=10**9)


@pytest.mark.parametrize("d_ff", [86, 90])
def test_widths_the_grouped_gemm_cannot_align_fall_back(d_ff: int) -> None:
    torch.manual_seed(11)
    grouped = MoE(64, d_ff, MoEConfig(experts=8, top_k=2))
    loop = MoE(64, d_ff, MoEConfig(experts=8, top_k=2, dispatch="loop"))
    loop.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(grouped(x).output, loop(x).output)
