"""Norms, feed-forward networks, residual layers and stacks."""

from __future__ import annotations

import pytest
import torch

from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import DecoderLayer, EncoderLayer
from attnlab.nn.cache import DecoderCache
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.norm import NORM, RMSNorm
from attnlab.nn.stack import Decoder, Encoder

D, H = 16, 4


def test_rmsnorm_matches_float64_formula():
    torch.manual_seed(0)
    norm = RMSNorm(D, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, D)
    x64 = x.double()
    ref = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    torch.testing.assert_close(norm(x), ref.float())
    torch.testing.assert_close(norm(x.bfloat16()).float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_rmsnorm_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(4, D)
    ours, theirs = RMSNorm(D, eps=1e-6), torch.nn.RMSNorm(D, eps=1e-6)
    torch.testing.assert_close(ours(x), theirs(x))


def test_layernorm_without_bias():
    norm = NORM.build("layer", d_model=D, bias=False)
    assert norm.bias is None
    with pytest.raises(ValueError, match="RMSNorm has no bias"):
        NORM.build("rms", d_model=D, bias=True)


@pytest.mark.parametrize("name", FEEDFORWARD.names())
def test_feedforward_shapes_and_grads(name):
    ffn = FEEDFORWARD.build(name, d_model=D, d_ff=32)
    x = torch.randn(2, 5, D, requires_grad=True)
    y = ffn(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in ffn.parameters())


def test_swiglu_is_the_gated_formula():
    torch.manual_seed(0)
    ffn = FEEDFORWARD.build("swiglu", d_model=D, d_ff=32)
    x = torch.randn(3, D)
    gate = torch.nn.functional.silu(x @ ffn.gate_proj.weight.T)
    expected = (gate * (x @ ffn.up_proj.weight.T)) @ ffn.down_proj.weight.T
    torch.testing.assert_close(ffn(x), expected)


def encoder_layer(norm_first: bool, dropout: float = 0.0) -> EncoderLayer:
    return EncoderLayer(
        ATTENTION.build("multi_head", d_model=D, n_heads=H, kernel="reference"),
        FEEDFORWARD.build("relu", d_model=D, d_ff=32),
        NORM.build("layer", d_model=D), NORM.build("layer", d_model=D),
        dropout=dropout, norm_first=norm_first,
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_residual_wiring(norm_first):
    torch.manual_seed(0)
    layer = encoder_layer(norm_first).eval()
    x = torch.randn(2, 5, D)
    attn, ffn = layer.self_attn, layer.feed_forward
    n1, n2 = layer.self_attn_norm, layer.ffn_norm
    if norm_first:
        h = x + attn(n1(x)).output
        expected = h + ffn(n2(h))
    else:
        h = n1(x + attn(x).output)
        expected = n2(h + ffn(h))
    torch.testing.assert_close(layer(x).hidden, expected)


def test_gradcheck_encoder_layer_float64():
    torch.manual_seed(0)
    layer = encoder_layer(norm_first=True).double().eval()
    x = torch.randn(1, 3, D, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[[[True, True, False]]]])
    assert torch.autograd.gradcheck(lambda t: layer(t, mask=mask).hidden, (x,))


def decoder_stack(n_layers: int = 2) -> Decoder:
    layers = [
        DecoderLayer(
            ATTENTION.build("multi_head", d_model=D, n_heads=H),
            ATTENTION.build("multi_head", d_model=D, n_heads=H),
            FEEDFORWARD.build("gelu", d_model=D, d_ff=32),
            NORM.build("rms", d_model=D), NORM.build("rms", d_model=D),
            NORM.build("rms", d_model=D), dropout=0.0, norm_first=True,
        )
        for _ in range(n_layers)
    ]
    return Decoder(layers, final_norm=NORM.build("rms", d_model=D)).eval()


def test_decoder_stack_cache_matches_full():
    torch.manual_seed(0)
    decoder = decoder_stack()
    x, memory = torch.randn(2, 6, D), torch.randn(2, 4, D)
    full = decoder(x, memory, output_attentions=True)
    assert len(full.attentions) == 2 and full.cross_attentions[0].shape == (2, H, 6, 4)
    cache = DecoderCache.empty(2)
    chunks = [decoder(x[:, :2], memory, cache=cache).last_hidden_state]  # chunked prefill
    for t in range(2, 6):
        chunks.append(decoder(x[:, t:t + 1], None, cache=cache).last_hidden_state)
    torch.testing.assert_close(torch.cat(chunks, 1), full.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_decoder_layer_without_cross_attention_is_decoder_only():
    layer = DecoderLayer(
        ATTENTION.build("multi_head", d_model=D, n_heads=H), None,
        FEEDFORWARD.build("relu", d_model=D, d_ff=32), NORM.build("layer", d_model=D), None,
        NORM.build("layer", d_model=D),
    )
    out = layer(torch.randn(1, 3, D), need_weights=True)
    assert out.cross_weights is None and out.self_weights.shape == (1, H, 3, 3)


def test_stack_errors():
    decoder = decoder_stack()
    with pytest.raises(ValueError, match="cache has 3 layers"):
        decoder(torch.randn(1, 2, D), torch.randn(1, 2, D), cache=DecoderCache.empty(3))
    with pytest.raises(ValueError, match="pass `memory`"):
        decoder(torch.randn(1, 2, D))
    encoder = Encoder([encoder_layer(False)])
    with pytest.raises(ValueError, match="d_model=16"):
        encoder(torch.randn(1, 2, 8))
