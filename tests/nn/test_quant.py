"""Weight-only int8 quantization (nn/quant.py) against float references: the layer computes
x W_q^T with its own dequantized weight, the rounding error is at most half a step per weight,
and whole models stay close to their float logits and greedy outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnlab.models import build_model
from attnlab.nn.quant import Int4Linear, Int8Linear, quantize_int8, quantize_per_channel


def test_rounding_error_is_at_most_half_a_step_per_row():
    torch.manual_seed(0)
    w = torch.randn(48, 32) * torch.logspace(-3, 1, 48)[:, None]  # rows of very different sizes
    q, scales = quantize_per_channel(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    error = (q.float() * scales[:, None] - w).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-7).all())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [40, 64, 72, 172])  # K = 72 and 172 broke the bare kernel
def test_int8_linear_computes_with_its_dequantized_weight(bias, compute, width):
    torch.manual_seed(0)
    linear = nn.Linear(width, 24, bias=bias)
    layer = Int8Linear.from_linear(linear, compute)
    x = torch.randn(3, 5, width)  # (B, T, K)
    expected = x.double() @ layer.dequantized().double().T  # float64 oracle, (B, T, N)
    if bias:
        expected = expected + linear.bias.double()
    out = layer(x)
    assert out.shape == (3, 5, 24) and out.dtype == torch.float32
    tolerance = 1e-5 if compute == torch.float32 else 3e-2  # bf16 activations: 8-bit mantissa
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny", "transformer-tiny"])
def test_quantized_models_stay_close_and_agree_greedily(preset):
    torch.manual_seed(0)
    model = build_model(preset).eval()
    quantized = quantize_int8(copy.deepcopy(model), "float32")
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    ids = torch.randint(3, 200, (2, 10))
    with torch.no_grad():
        if preset == "transformer-tiny":
            logits = model(ids, decoder_input_ids=ids).logits
            got = quantized(ids, decoder_input_ids=ids).logits
        else:
            logits, got = model(ids).logits, quantized(ids).logits
    relative = (got - logits).norm() / logits.norm()
    assert relative < 0.02  # int8 per-channel: ~0.5% on random weights
    # the next token each position would pick (random weights make near-ties, so not all)
    assert (got.argmax(-1) == logits.argmax(-1)).float().mean() >= 0.9
    assert quantized.generate(ids[:1], max_new_tokens=4).shape[0] == 1  # decodes with a cache


def test_bfloat16_compute_and_tied_output():
    torch.manual_seed(0)
    model = build_model("gpt2-tiny").eval()
    quantized = quantize_int8(copy.deepcopy(model), "bfloat16")
    assert quantized.embed_tokens.weight.dtype == torch.float32  # the lookup stays float
    assert isinstance(quantized.lm_head, Int8Linear)
    ids = torch.randint(3, 200, (1, 12))
    with torch.no_grad():
        logits, got = model(ids).logits, quantized(ids).logits
    assert got.dtype == torch.float32
    assert (got - logits).norm() / logits.norm() < 0.03  # int8 weights + bf16 activations


def test_a_model_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        quantize_int8(nn.Sequential(nn.Embedding(4, 4)))
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        quantize_int8(nn.Sequential(nn.Linear(4, 4)), "int4")


def test_with_weights_formats():
    from attnlab.nn.quant import with_weights

    model = build_model("gpt2-tiny")
    assert with_weights(model, "fp32") is model
    assert next(with_weights(copy.deepcopy(model), "bf16").parameters()).dtype == torch.bfloat16
    assert isinstance(with_weights(copy.deepcopy(model), "int8").lm_head, Int8Linear)
    assert isinstance(with_weights(copy.deepcopy(model), "int4").lm_head, Int4Linear)
    with pytest.raises(ValueError,
                       match=r"weights must be one of \('fp32', 'bf16', 'int8', 'int4'\)"):
        with_weights(model, "int2")
