"""Mamba's mixer (nn/mixers/mamba.py) against a float64 recurrence written here straight from the
paper's equations (Gu & Dao 2023, sec. 3.2 and Algorithm 2), in every form, on lengths that are
not multiples of the chunk; a prefix then steps with the state; gradients of both forms; the
defaults that follow d_model; bad arguments named."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers import MIXER, mamba
from attnlab.nn.mixers.mamba import MambaMixer

D = 24


def mixer(**kwargs) -> MambaMixer:
    torch.manual_seed(0)
    m = MambaMixer(D, d_state=5, d_conv=3, **kwargs).double()
    with torch.no_grad():  # make every path (biases, D, conv) matter
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def naive(m: MambaMixer, u: torch.Tensor) -> torch.Tensor:
    """u (B, T, D) -> (B, T, D), one position and one channel's N states at a time:
    x, z = in_proj(u); x = SiLU(conv(x)); (r, B, C) = x_proj(x); Delta = softplus(dt_proj(r));
    h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t; y_t = C_t . h_t + D x_t; out(y * SiLU(z))."""
    batch, T, _ = u.shape
    E, N, K = m.d_inner, m.d_state, m.d_conv
    xz = u @ m.in_proj.weight.T + (0 if m.in_proj.bias is None else m.in_proj.bias)
    x, z = xz[..., :E], xz[..., E:]
    w = m.conv1d.weight[:, 0]  # (E, K): tap k reads position t - (K - 1) + k
    conv = torch.zeros_like(x)
    for t in range(T):
        for k in range(K):
            s = t - (K - 1) + k
            if s >= 0:
                conv[:, t] += w[:, k] * x[:, s]
    conv = conv + (0 if m.conv1d.bias is None else m.conv1d.bias)
    x = conv * torch.sigmoid(conv)
    proj = x @ m.x_proj.weight.T
    r, Bm, Cm = proj[..., :m.dt_rank], proj[..., m.dt_rank:m.dt_rank + N], proj[..., -N:]
    delta = torch.log1p(torch.exp(r @ m.dt_proj.weight.T + m.dt_proj.bias))  # softplus
    A = -torch.exp(m.A_log)
    y = torch.zeros_like(x)
    for b in range(batch):
        h = torch.zeros(E, N, dtype=u.dtype)
        for t in range(T):
            Abar = torch.exp(delta[b, t][:, None] * A)  # (E, N) zero-order hold
            Bbar_x = delta[b, t][:, None] * Bm[b, t][None, :] * x[b, t][:, None]
            h = Abar * h + Bbar_x
            y[b, t] = h @ Cm[b, t] + m.D * x[b, t]
    y = y * (z * torch.sigmoid(z))
    return y @ m.out_proj.weight.T + (0 if m.out_proj.bias is None else m.out_proj.bias)


def inputs(batch=2, length=23, seed=1):
    return torch.randn(batch, length, D, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("form", MambaMixer.forms)
@pytest.mark.parametrize("length, chunk", [(23, 2), (23, 5), (17, 16), (1, 4), (6, 64)])
def test_every_form_equals_the_paper_recurrence(form, length, chunk):
    m = mixer(chunk_size=chunk, form=form)
    u = inputs(length=length)
    torch.testing.assert_close(m(u).output, naive(m, u), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("form", MambaMixer.forms)
def test_long_inputs_scan_in_blocks(form, monkeypatch):
    monkeypatch.setattr(mamba, "SCAN_BLOCK", 5)  # 23 positions: blocks of 5, 5, 5, 5, 3
    m = mixer(chunk_size=2, form=form)
    u = inputs(length=23)
    torch.testing.assert_close(m(u).output, naive(m, u), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("options", [dict(use_bias=True), dict(conv_bias=False),
                                     dict(expand=1, dt_rank=3)])
def test_options_equal_the_paper_recurrence(options):
    m = mixer(chunk_size=4, form="chunkwise", **options)
    u = inputs(length=11)
    torch.testing.assert_close(m(u).output, naive(m, u), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("form", MambaMixer.forms)
def test_prefix_then_steps_with_the_state(form):
    m = mixer(chunk_size=4, form=form)
    u = inputs(length=19)
    state = RecurrentState()
    pieces = [m(u[:, :7], cache=state).output, m(u[:, 7:9], cache=state).output]
    pieces += [m(u[:, t:t + 1], cache=state).output for t in range(9, 19)]
    torch.testing.assert_close(torch.cat(pieces, 1), naive(m, u), atol=1e-6, rtol=1e-6)
    assert state.length == 19
    assert state.get("conv").shape == (2, m.d_inner, m.d_conv - 1)
    assert state.get("ssm").shape == (2, m.d_inner, m.d_state)


@pytest.mark.parametrize("form", MambaMixer.forms)
def test_left_padding_with_biases_is_left_out(form):
    m = mixer(chunk_size=4, form=form, use_bias=True)  # in_proj(0) != 0: the conv input is zeroed
    u = inputs(batch=1, length=9)
    padded = torch.cat([inputs(batch=1, length=6, seed=7), u], 1)
    mask = torch.tensor([[False] * 6 + [True] * 9])
    got = m(padded, mask=mask[:, None, None, :]).output[:, 6:]
    torch.testing.assert_close(got, naive(m, u), atol=1e-6, rtol=1e-6)


def test_padding_leaves_the_state_alone():
    m = mixer(chunk_size=3, form="chunkwise")
    u = inputs(length=10)
    state = RecurrentState()
    m(u[:, :6], cache=state)
    before = {name: t.clone() for name, t in state.tensors.items()}
    m(u[:, 6:], mask=torch.zeros(2, 4, dtype=torch.bool), cache=state)  # all padding
    torch.testing.assert_close(state.get("ssm"), before["ssm"], atol=0, rtol=0)
    assert not torch.equal(state.get("conv"), before["conv"])  # zeros shifted in


def test_both_forms_have_the_same_gradients():
    u = inputs(length=21).requires_grad_()
    grads = {}
    for form in MambaMixer.forms:
        m = mixer(chunk_size=4, form=form)
        m(u).output.square().sum().backward()
        grads[form] = [u.grad.clone()] + [p.grad for p in m.parameters()]
        u.grad = None
    for a, b in zip(*grads.values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)


def test_half_precision_scans_in_float32():
    m = mixer(chunk_size=4, form="chunkwise").float()
    u = inputs(length=9).float()
    want = m(u).output
    got = m.to(torch.bfloat16)(u.bfloat16(), cache=(state := RecurrentState())).output
    assert got.dtype == torch.bfloat16 and state.get("ssm").dtype == torch.float32
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.1)


def test_defaults_follow_d_model():
    m = MIXER.build("mamba", d_model=40)
    assert (m.d_state, m.d_conv, m.d_inner, m.dt_rank) == (16, 4, 80, math.ceil(40 / 16))
    assert m.form == "recurrent" and m.forms == ("recurrent", "chunkwise")
    assert m.in_proj.weight.shape == (160, 40) and m.x_proj.weight.shape == (3 + 32, 80)
    assert m.conv1d.weight.shape == (80, 1, 4) and m.A_log.shape == (80, 16)
    torch.testing.assert_close(-torch.exp(m.A_log[3]), -torch.arange(1.0, 17.0))
    assert torch.equal(m.D, torch.ones(80))
    dt = F.softplus(m.dt_proj.bias)
    assert bool(((dt > 0.001 - 1e-6) & (dt < 0.1 + 1e-6)).all())


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_state=0), "d_state must be a positive integer, got 0"),
    (dict(d_conv=0), "d_conv must be a positive integer, got 0"),
    (dict(expand=0), "expand must be a positive integer, got 0"),
    (dict(expand=1.5), "expand must be a positive integer, got 1.5"),
    (dict(dt_rank=0), "dt_rank must be a positive integer, got 0"),
    (dict(dt_rank="big"), "dt_rank must be a positive integer, got 'big'"),
    (dict(chunk_size=0), "chunk_size must be a positive integer, got 0"),
    (dict(dt_min=0.2, dt_max=0.1), "dt_min and dt_max must satisfy"),
    (dict(dt_min=0.0), "dt_min and dt_max must satisfy"),
    (dict(form="parallel"), "form must be one of"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"MambaMixer: {message}"):
        MambaMixer(16, **kwargs)
