"""The contract every registered sequence mixer keeps (nn/mixers/base.py), in float64:

- every form (parallel / chunkwise / recurrent) gives the same outputs (1e-6), on a length that
  is not a multiple of any chunk;
- a prefix then one token at a time with a RecurrentState equals the full forward, and the
  state's size does not grow with the positions read;
- a cached step never reads the future: changing later tokens leaves earlier outputs alone;
- a left-padded row gives the outputs of the same row unpadded;
- it works in a DecoderLayer's self-attention slot, cache included;
- it refuses what a left-to-right mixer cannot do, naming the mixer.
"""

from __future__ import annotations

import pytest
import torch

from attnlab.nn.block import DecoderLayer
from attnlab.nn.cache import DecoderLayerCache, KVCache, RecurrentState
from attnlab.nn.feedforward import FeedForward
from attnlab.nn.mixers import MIXER

D = 32
NAMES = MIXER.names()
pytestmark = pytest.mark.skipif(not NAMES, reason="no mixer registered")


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    mixer = MIXER.build(name, d_model=D).double().eval()
    with torch.no_grad():  # some mixers start with zeros somewhere; make every path matter
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mixer


def inputs(batch: int = 2, length: int = 23) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, length, D, dtype=torch.float64, generator=generator)


def full(mixer, x, **kwargs):
    return mixer(x, causal=True, **kwargs).output


@pytest.mark.parametrize("name", NAMES)
def test_forms_agree(name):
    mixer, x = build(name), inputs()
    outs = {}
    for form in mixer.forms:
        mixer.form = form
        outs[form] = full(mixer, x)
    first = mixer.forms[0]
    for form, y in outs.items():
        assert y.shape == x.shape
        torch.testing.assert_close(y, outs[first], atol=1e-6, rtol=1e-6,
                                   msg=f"{name}: form {form} differs from {first}")


@pytest.mark.parametrize("name", NAMES)
def test_stepwise_with_state_equals_full(name):
    mixer, x = build(name), inputs()
    want = full(mixer, x)
    state = RecurrentState()
    pieces = [full(mixer, x[:, :9], cache=state)]
    sizes = [state.nbytes]
    for t in range(9, x.size(1)):
        pieces.append(full(mixer, x[:, t:t + 1], cache=state))
        sizes.append(state.nbytes)
    assert state.length == x.size(1)
    torch.testing.assert_close(torch.cat(pieces, 1), want, atol=1e-6, rtol=1e-6)
    assert len(set(sizes)) == 1, f"{name}: the state grew with the positions read: {sizes}"


@pytest.mark.parametrize("name", NAMES)
def test_cached_step_never_reads_the_future(name):
    mixer, x = build(name), inputs()
    changed = x.clone()
    changed[:, 15:] = torch.randn_like(changed[:, 15:])
    state_a, state_b = RecurrentState(), RecurrentState()
    a = full(mixer, x[:, :15], cache=state_a)
    b = full(mixer, changed[:, :15], cache=state_b)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(full(mixer, x)[:, :15], full(mixer, changed)[:, :15],
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_left_padding_is_left_out(name):
    mixer, x = build(name), inputs(batch=1, length=12)
    pad = 5
    padded = torch.cat([torch.randn(1, pad, D, dtype=torch.float64), x], dim=1)
    mask = torch.ones(1, pad + 12, dtype=torch.bool)
    mask[:, :pad] = False
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
    for form in mixer.forms:
        mixer.form = form
        want = full(mixer, x)
        got = full(mixer, padded, mask=mask[:, None, None, :], position_ids=positions)[:, pad:]
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6,
                                   msg=f"{name} ({form}): padding changed the outputs")


@pytest.mark.parametrize("name", NAMES)
def test_in_a_decoder_layer_with_cache(name):
    torch.manual_seed(0)
    layer = DecoderLayer(build(name), None, FeedForward(D, 64, dropout=0.0),
                         torch.nn.LayerNorm(D), None, torch.nn.LayerNorm(D),
                         dropout=0.0, norm_first=True).double().eval()
    x = inputs()
    want = layer(x).hidden
    cache = DecoderLayerCache(self_attn=RecurrentState())
    got = torch.cat([layer(x[:, :7], cache=cache).hidden,
                     *(layer(x[:, t:t + 1], cache=cache).hidden for t in range(7, x.size(1)))], 1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_refuses_what_it_cannot_do(name):
    mixer, x = build(name), inputs()
    cls = type(mixer).__name__
    for kwargs in (dict(causal=False), dict(causal=True, need_weights=True),
                   dict(causal=True, bias=torch.zeros(1, 1, 23, 23, dtype=torch.float64))):
        with pytest.raises(ValueError, match=cls):
            mixer(x, **kwargs)
    with pytest.raises(ValueError, match=cls):
        mixer(x, x, causal=True)
    with pytest.raises(TypeError, match="RecurrentState"):
        mixer(x, causal=True, cache=KVCache())
    with pytest.raises(ValueError, match="form"):
        mixer.form = "no-such-form"
