"""RWKV-4's time mix and channel mix (nn/mixers/rwkv.py) against a float64 WKV written straight
from the paper (Peng et al. 2023, eq. for wkv_t), its stability on long sequences with large
keys, padding skipped anywhere in a row, and named errors for bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers import MIXER
from attnlab.nn.mixers.rwkv import (
    RwkvChannelMix,
    RwkvTimeMix,
    empty_state,
    wkv_parallel,
    wkv_recurrent,
)


def naive_wkv(w, u, k, v):
    """wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (the same with v = 1),
    w = exp(time_decay); float64, no max trick, one position at a time."""
    B, T, A = k.shape
    out = torch.empty(B, T, A, dtype=torch.float64)
    k, v, w, u = k.double(), v.double(), w.double(), u.double()
    for t in range(T):
        i = torch.arange(t, dtype=torch.float64)
        weights = torch.exp(k[:, :t] - (t - 1 - i)[None, :, None] * w)  # (B, t, A)
        now = torch.exp(u + k[:, t])  # (B, A)
        out[:, t] = ((weights * v[:, :t]).sum(1) + now * v[:, t]) / (weights.sum(1) + now)
    return out


def naive_time_mix(m: RwkvTimeMix, x):
    shifted = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    k = m.key(x * m.time_mix_key + shifted * (1 - m.time_mix_key))
    v = m.value(x * m.time_mix_value + shifted * (1 - m.time_mix_value))
    r = torch.sigmoid(m.receptance(x * m.time_mix_receptance
                                   + shifted * (1 - m.time_mix_receptance)))
    return m.output(r * naive_wkv(torch.exp(m.time_decay), m.time_first, k, v))


def mixer(d=16, a=None, **kwargs) -> RwkvTimeMix:
    torch.manual_seed(0)
    m = RwkvTimeMix(d, a, **kwargs).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def randn(*shape, seed=1, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def test_registered_and_built_from_d_model_alone():
    m = MIXER.build("rwkv", d_model=32)
    assert isinstance(m, RwkvTimeMix) and m.attention_hidden_size == 32
    assert m.form == "parallel" and set(m.forms) == {"parallel", "recurrent"}
    assert m.time_decay.shape == (32,) and m.time_mix_key.shape == (1, 1, 32)
    assert isinstance(m.output, torch.nn.Linear) and m.output.weight.shape == (32, 32)


@pytest.mark.parametrize("form", ["parallel", "recurrent"])
@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_forms_equal_the_papers_formula(form, chunk):
    m = mixer(16, 24, form=form, chunk_size=chunk)
    x = randn(2, 19, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x).output, naive_time_mix(m, x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("chunk", [3, 8, 50])
def test_wkv_forms_equal_the_paper_and_carry_the_state(chunk):
    A = 6
    w, u = torch.exp(randn(A, seed=2)), randn(A, seed=3)
    k, v = 3 * randn(2, 40, A, seed=4), randn(2, 40, A, seed=5)
    want = naive_wkv(w, u, k, v)
    state = empty_state(2, A, k)
    got_p, end_p = wkv_parallel(w, u, k, v, None, state, chunk)
    got_r, end_r = wkv_recurrent(w, u, k, v, None, state)
    torch.testing.assert_close(got_p, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_r, want, atol=1e-6, rtol=1e-6)
    # the end states are the same function: continuing from either gives the same outputs
    k2, v2 = randn(2, 7, A, seed=6), randn(2, 7, A, seed=7)
    full = naive_wkv(w, u, torch.cat([k, k2], 1), torch.cat([v, v2], 1))[:, 40:]
    torch.testing.assert_close(wkv_parallel(w, u, k2, v2, None, end_r, chunk)[0], full,
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(wkv_recurrent(w, u, k2, v2, None, end_p)[0], full,
                               atol=1e-6, rtol=1e-6)


def test_large_keys_and_long_sequences_stay_finite_and_equal():
    torch.manual_seed(0)
    A, T = 4, 2000
    w, u = torch.exp(torch.tensor([-6.0, -1.0, 0.5, 3.0])), torch.tensor([0.5, -1.0, 2.0, 0.0])
    sign = torch.where(torch.rand(1, T, A) < 0.5, -1.0, 1.0)
    k = 60.0 * sign  # keys of +-60: e^60 alone would overflow float16 and e^120 float32
    k[:, 500:700] = 60.0
    v = torch.randn(1, T, A)
    state = empty_state(1, A, k)
    got_p, end_p = wkv_parallel(w, u, k, v, None, state, 32)
    got_r, end_r = wkv_recurrent(w, u, k, v, None, state)
    for t in (got_p, got_r, *end_p, *end_r):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(got_p, got_r, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_p.double(), naive_wkv(w, u, k, v), atol=1e-4, rtol=1e-4)


def test_gradients_of_both_forms_agree_and_are_finite():
    A = 5
    base = [torch.randn(A), torch.randn(A), 30 * torch.randn(2, 70, A), torch.randn(2, 70, A)]
    grads = []
    for run in (lambda *a: wkv_parallel(*a, chunk_size=16), wkv_recurrent):
        td, u, k, v = (t.double().clone().requires_grad_() for t in base)
        out, _ = run(torch.exp(td), u, k, v, None, empty_state(2, A, k))
        (out * torch.linspace(-1, 1, A, dtype=torch.float64)).sum().backward()
        grads.append([t.grad for t in (td, u, k, v)])
    for a, b in zip(*grads, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("form", ["parallel", "recurrent"])
def test_padding_anywhere_is_skipped(form):
    """Padded positions anywhere in a row change nothing for the real ones (beyond the left
    padding the contract tests check): the same as the row with its padding removed."""
    m = mixer(16, form=form, chunk_size=4)
    ffn = RwkvChannelMix(16, 40).double()
    x = randn(1, 15, 16)
    keep = torch.ones(1, 15, dtype=torch.bool)
    keep[0, [0, 1, 5, 6, 7, 12]] = False
    real = x[:, keep[0]]
    with torch.no_grad():
        want = m(real).output
        got = m(x, mask=keep[:, None, None, :]).output[:, keep[0]]
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(ffn(x, keep)[:, keep[0]], ffn(real), atol=1e-12, rtol=0)
        # with a state: the padded tail of a chunk leaves the state as the real prefix left it
        a, b = RecurrentState(), RecurrentState()
        m(x[:, :8], mask=keep[:, None, None, :8], cache=a)
        m(x[:, :5][:, keep[0, :5]], cache=b)
        for name in ("time_mix_x", "wkv_num", "wkv_den", "wkv_max"):
            torch.testing.assert_close(a.get(name), b.get(name), atol=1e-12, rtol=1e-12)


def test_channel_mix_is_the_papers_and_keeps_its_state():
    torch.manual_seed(0)
    ffn = RwkvChannelMix(8, 20).double()
    with torch.no_grad():
        for p in ffn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = randn(2, 9, 8)
    shifted = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    xk = x * ffn.time_mix_key + shifted * (1 - ffn.time_mix_key)
    xr = x * ffn.time_mix_receptance + shifted * (1 - ffn.time_mix_receptance)
    want = torch.sigmoid(ffn.receptance(xr)) * ffn.value(torch.relu(ffn.key(xk)) ** 2)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x), want)
        state = RecurrentState()
        steps = [ffn(x[:, :4], cache=state)] + [ffn(x[:, t:t + 1], cache=state)
                                                 for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), want)
    assert state.length == 0 and set(state.tensors) == {"channel_mix_x"}  # it does not advance


def test_state_shapes():
    m = mixer(16, 24)
    state = RecurrentState()
    with torch.no_grad():
        m(randn(3, 5, 16), cache=state)
    shapes = {name: tuple(t.shape) for name, t in state.tensors.items()}
    assert shapes == {"time_mix_x": (3, 16), "wkv_num": (3, 24), "wkv_den": (3, 24),
                      "wkv_max": (3, 24)}


def test_paper_init():
    m = RwkvTimeMix(8, layer_id=0, n_layers=4)
    assert m.time_decay[0].item() == -5 and m.time_decay[-1].item() == pytest.approx(3)
    assert m.time_first[:3].tolist() == pytest.approx([math.log(0.3) + z for z in (0, 0.5, -0.5)])
    assert m.time_mix_key[0, 0, 0].item() == 0


@pytest.mark.parametrize("make, name", [
    (lambda: RwkvTimeMix(0), "d_model"),
    (lambda: RwkvTimeMix(8, 0), "attention_hidden_size"),
    (lambda: RwkvTimeMix(8, chunk_size=0), "chunk_size"),
    (lambda: RwkvTimeMix(8, layer_id=3, n_layers=3), "layer_id"),
    (lambda: RwkvTimeMix(8, n_layers=0), "n_layers"),
    (lambda: RwkvTimeMix(8, form="chunkwise"), "form"),
    (lambda: RwkvChannelMix(8, 0), "d_ff"),
    (lambda: RwkvChannelMix(8, layer_id=-1), "layer_id"),
])
def test_bad_arguments_are_named(make, name):
    with pytest.raises(ValueError, match=name):
        make()
