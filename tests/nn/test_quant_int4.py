"""Weight-only 4-bit quantization (nn/quant/int4.py) against float64 references: each group's
rounding error is at most half a step, the fused kernel computes x W_q^T with the weight the
4-bit values stand for (whatever padding N and K need), and a whole model stays close to its
float logits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnlab.models import build_model
from attnlab.nn.quant import Int4Linear, quantize_groupwise, quantize_int4


def reference_weight(q, scales, zeros, group_size):
    """(q - 8) * scale + zero, each group's scale and zero repeated over its columns."""
    return ((q.double() - 8) * scales.double().repeat_interleave(group_size, dim=1)
            + zeros.double().repeat_interleave(group_size, dim=1))


@pytest.mark.parametrize("group_size", [32, 128])
def test_rounding_error_is_at_most_half_a_step_per_group(group_size):
    torch.manual_seed(0)
    w = torch.randn(24, 256) * torch.logspace(-3, 1, 24)[:, None]  # rows of very different sizes
    q, scales, zeros = quantize_groupwise(w, group_size)
    assert q.shape == w.shape and int(q.min()) >= 0 and int(q.max()) <= 15
    assert scales.shape == zeros.shape == (24, 256 // group_size)
    step = scales.repeat_interleave(group_size, dim=1)
    error = (reference_weight(q, scales, zeros, group_size) - w.double()).abs()
    assert bool((error <= step / 2 * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("width", "outputs", "group_size"),
                         [(64, 32, 32), (40, 24, 32), (100, 50, 32), (256, 48, 128),
                          (96, 17, 64)])  # K and N that the kernel needs padded
def test_int4_linear_computes_with_the_weight_its_values_stand_for(bias, compute, width,
                                                                  outputs, group_size):
    torch.manual_seed(0)
    linear = nn.Linear(width, outputs, bias=bias)
    layer = Int4Linear.from_linear(linear, group_size, compute)
    padded = torch.nn.functional.pad(linear.weight.detach(), (0, -width % group_size))
    q, scales, zeros = quantize_groupwise(padded, group_size)
    weight = reference_weight(q, scales, zeros, group_size)[:, :width]  # (N, K) float64
    x = torch.randn(3, 5, width)  # (B, T, K)
    expected = x.double() @ weight.T
    if bias:
        expected = expected + linear.bias.double()
    out = layer(x)
    assert out.shape == (3, 5, outputs) and out.dtype == torch.float32
    tolerance = 1e-5 if compute == torch.float32 else 3e-2  # bf16: 8-bit mantissa
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(layer.dequantized().double(), weight, rtol=tolerance,
                               atol=tolerance)


def test_from_blocks_takes_4_bit_values_as_they_are():
    torch.manual_seed(0)
    q = torch.randint(0, 16, (32, 64), dtype=torch.int32)
    scales, zeros = torch.rand(32, 2) + 0.1, torch.randn(32, 2)
    layer = Int4Linear.from_blocks(q, scales, zeros)
    torch.testing.assert_close(layer.dequantized().double(), reference_weight(q, scales, zeros, 32))


def test_a_quantized_model_stays_close_to_its_float_logits():
    torch.manual_seed(0)
    model = build_model("gpt2-tiny").eval()
    quantized = quantize_int4(copy.deepcopy(model), compute_dtype="float32")
    assert all(type(m) is not nn.Linear for m in quantized.modules())
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        exact, approx = model(ids).logits, quantized(ids).logits
    cosine = torch.nn.functional.cosine_similarity(exact.flatten(), approx.flatten(), dim=0)
    assert float(cosine) > 0.98
    assert not any(p.requires_grad for p in quantized.parameters())


def test_bad_group_size_and_device_are_refused():
    with pytest.raises(ValueError, match=r"group_size must be one of \(32, 64, 128, 256\), got 16"):
        Int4Linear.from_linear(nn.Linear(32, 16), group_size=16)
    q = torch.zeros(16, 32, dtype=torch.int32, device="meta")
    with pytest.raises(ValueError, match="CPU only.*meta"):
        Int4Linear(q, torch.ones(16, 1), torch.zeros(16, 1), None, 32)
    with pytest.raises(ValueError, match=r"needs scales and zeros of shape \(16, 1\)"):
        Int4Linear(torch.zeros(16, 32, dtype=torch.int32), torch.ones(16, 2),
                   torch.zeros(16, 2), None, 32)


@pytest.mark.parametrize("start", ["int8", "int4"])
def test_with_weights_converts_between_formats_through_float(start):
    """A quantized model asked for fp32 gets nn.Linear layers holding the weights its blocks
    stand for; asked for the other quantized format, it is requantized from those."""
    from attnlab.nn.quant import stored_format, with_weights

    torch.manual_seed(0)
    model = with_weights(build_model("gpt2-tiny").eval(), start)
    assert stored_format(model) == start
    expected = model.lm_head.dequantized()
    assert with_weights(model, None) is model and with_weights(model, start) is model
    back = with_weights(copy.deepcopy(model), "fp32")
    assert stored_format(back) == "fp32" and type(back.lm_head) is nn.Linear
    torch.testing.assert_close(back.lm_head.weight, expected)
    other = "int4" if start == "int8" else "int8"
    assert stored_format(with_weights(copy.deepcopy(model), other)) == other
    assert stored_format(with_weights(model, "bf16")) == "bf16"
