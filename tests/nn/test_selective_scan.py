"""nn/mixers/selective_scan.py: torch.autograd.gradcheck in float64 (with and without h0, with
the last state's gradient), outputs and every gradient equal to the autograd loop of
MambaMixer._recurrent (float64 1e-10, float32 1e-5), Delta = 0 positions carrying the state, and
the mixer's recurrent form running on it under bfloat16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn.mixers.mamba import MambaMixer
from attnlab.nn.mixers.selective_scan import selective_scan


def scan_inputs(batch=2, T=7, E=3, N=4, dtype=torch.float64, h0=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, dtype=dtype, generator=g)

    x, dt = r(batch, T, E), F.softplus(r(batch, T, E))
    A = -torch.exp(0.5 * r(E, N))
    B, C = r(batch, T, N), r(batch, T, N)
    h = r(batch, E, N) if h0 else None
    return [None if t is None else t.requires_grad_() for t in (x, dt, A, B, C, h)]


@pytest.mark.parametrize("h0", [True, False])
def test_gradcheck(h0):
    x, dt, A, B, C, h = scan_inputs(h0=h0)
    if h0:
        assert torch.autograd.gradcheck(
            lambda *a: selective_scan(*a, segment=3), (x, dt, A, B, C, h))
    else:
        assert torch.autograd.gradcheck(
            lambda *a: selective_scan(*a, None, segment=3), (x, dt, A, B, C))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("h0", [True, False])
@pytest.mark.parametrize("T, segment", [(37, 8), (16, 16), (5, 32), (1, 4)])
def test_equals_the_autograd_loop(dtype, tol, h0, T, segment):
    args = scan_inputs(batch=3, T=T, E=5, N=4, dtype=dtype, h0=h0, seed=1)
    leaves = [a for a in args if a is not None]
    y, h = selective_scan(*args, segment=segment)
    y_ref, h_ref = MambaMixer._recurrent(*args)
    gy, gh = torch.randn_like(y), torch.randn_like(h)  # the last state's gradient counts too
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), leaves)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), leaves)
    names = ["y", "h_last", "dx", "ddt", "dA", "dB", "dC", "dh0"][:2 + len(leaves)]
    for name, got, want in zip(names, (y, h, *grads), (y_ref, h_ref, *grads_ref), strict=True):
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=name)


def test_zero_delta_carries_the_state():
    x, dt, A, B, C, h0 = scan_inputs(T=9, h0=True)
    with torch.no_grad():
        dt[:, 3:6] = 0  # padding inside the row
        dt[1] = 0  # a row of padding only
    y, h = selective_scan(x, dt, A, B, C, h0, segment=4)
    y_ref, h_ref = MambaMixer._recurrent(x, dt, A, B, C, h0)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[1], h0[1], rtol=0, atol=0)  # nothing read: h0 itself
    kept = selective_scan(x[:, :3], dt[:, :3], A, B[:, :3], C[:, :3], h0)[1]
    moved = selective_scan(x[:, :6], dt[:, :6], A, B[:, :6], C[:, :6], h0)[1]
    torch.testing.assert_close(moved, kept, rtol=0, atol=0)  # positions 3..5 pass it through
    dx = torch.autograd.grad(y.sum(), x)[0]
    assert torch.all(dx[:, 3:6] == 0) and torch.all(dx[1] == 0)


def test_the_mixer_uses_it_and_keeps_float32_under_autocast(monkeypatch):
    torch.manual_seed(0)
    m = MambaMixer(16, d_state=4)
    u = torch.randn(2, 11, 16)
    calls = []
    monkeypatch.setattr(MambaMixer, "_lean_scan",
                        staticmethod(lambda *a: calls.append(a[0].dtype) or selective_scan(*a)))
    want = m(u).output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(u).output
    got.float().sum().backward()
    assert calls == [torch.float32, torch.float32]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_empty_sequence():
    x, dt, A, B, C, h0 = scan_inputs(T=0)
    y, h = selective_scan(x, dt, A, B, C, h0)
    assert y.shape == x.shape and torch.equal(h, h0)
