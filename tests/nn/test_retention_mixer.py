"""RetNet's multi-scale retention (nn/mixers/retention.py) against a float64 naive recurrence
written here from the paper's definitions (complex rotation e^{i n theta}, decay gamma^(n-m),
GroupNorm with one group per head, swish gate): every form, chunk sizes that do and do not
divide the length, a carried state, padding anywhere in the row; the paper's per-head decays;
bad knobs named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers import MIXER
from attnlab.nn.mixers.retention import (
    MultiScaleRetention,
    chunkwise_retention,
    decays,
    parallel_retention,
    recurrent_retention,
)

D = 32


def mixer(chunk_size: int = 64, n_heads: int = 4) -> MultiScaleRetention:
    torch.manual_seed(0)
    return MultiScaleRetention(D, n_heads=n_heads, chunk_size=chunk_size).double().eval()


def naive(m: MultiScaleRetention, x: torch.Tensor, keep: torch.Tensor | None = None
          ) -> torch.Tensor:
    """o_n = sum_{m <= n real} gamma^(real positions in (m, n]) Re(q_n e^{i n theta}
    conj(k_m e^{i m theta})) d^-0.5 v_m, position = real positions before n; then GroupNorm
    per head, swish gate, W_O; padded outputs zero."""
    B, T, _ = x.shape
    H, Dk = m.n_heads, D // m.n_heads
    keep = torch.ones(B, T, dtype=torch.bool) if keep is None else keep
    q = (x @ m.q_proj.weight.T).view(B, T, H, Dk)
    k = (x @ m.k_proj.weight.T).view(B, T, H, Dk)
    v = (x @ m.v_proj.weight.T).view(B, T, H, 2 * Dk)
    theta = 10000.0 ** (-torch.arange(0, Dk, 2, dtype=torch.float64) / Dk)  # (Dk/2,)
    pos = (keep.long().cumsum(-1) - 1).clamp_min(0).double()  # (B, T)

    def rotate(t):  # pairs (i, i + Dk/2) as complex numbers, turned by e^{i pos theta}
        z = torch.complex(t[..., : Dk // 2], t[..., Dk // 2:])
        return z * torch.exp(1j * pos[:, :, None, None] * theta)

    qz, kz = rotate(q), rotate(k)
    gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=torch.float64))  # (H,)
    out = torch.zeros(B, T, H, 2 * Dk, dtype=torch.float64)
    for b in range(B):
        for n in range(T):
            for j in range(n + 1):
                if keep[b, j]:
                    steps = int(keep[b, j + 1:n + 1].sum())
                    score = (qz[b, n] * kz[b, j].conj()).real.sum(-1) * Dk**-0.5  # (H,)
                    out[b, n] += (gamma**steps * score)[:, None] * v[b, j]
    y = F.group_norm(out.reshape(B * T, 2 * D), H, eps=m.eps).view(B, T, 2 * D)
    y = F.silu(x @ m.g_proj.weight.T) * y
    return (y @ m.out_proj.weight.T) * keep[..., None]


def inputs(batch: int = 2, length: int = 23) -> torch.Tensor:
    return torch.randn(batch, length, D, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
def test_every_form_equals_the_naive_recurrence(chunk_size):
    m, x = mixer(chunk_size), inputs()
    want = naive(m, x)
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x).output, want, atol=1e-6, rtol=1e-6,
                                   msg=f"form {form}, chunk {chunk_size}")


@pytest.mark.parametrize("chunk_size", [3, 8])
def test_padding_anywhere_is_skipped_in_every_form(chunk_size):
    m, x = mixer(chunk_size), inputs(length=19)
    keep = torch.ones(2, 19, dtype=torch.bool)
    keep[0, :4] = False  # left padding
    keep[1, 6:9] = False  # a hole: decay does not advance over it
    positions = (keep.long().cumsum(-1) - 1).clamp_min(0)
    want = naive(m, x, keep)
    for form in m.forms:
        m.form = form
        got = m(x, mask=keep[:, None, None], position_ids=positions).output
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6, msg=form)
    # and a row with its padding removed gives the same outputs
    m.form = "chunkwise"
    torch.testing.assert_close(m(x[1:, keep[1]]).output, want[1:, keep[1]], atol=1e-6,
                               rtol=1e-6)


def test_the_three_cores_agree_with_a_carried_state_and_padding():
    g = torch.Generator().manual_seed(2)
    B, H, T, Dk = 2, 3, 13, 4
    q, k = (torch.randn(B, H, T, Dk, dtype=torch.float64, generator=g) for _ in range(2))
    v = torch.randn(B, H, T, 2 * Dk, dtype=torch.float64, generator=g)
    state = torch.randn(B, H, Dk, 2 * Dk, dtype=torch.float64, generator=g)
    keep = torch.rand(B, T, generator=g) > 0.3
    log_gamma = decays(H).log()
    want_o, want_s = recurrent_retention(q, k, v, log_gamma, keep, state)
    # the naive sum: S_0 decayed by the real positions read, plus each real key's term
    gamma = decays(H)[:, None, None]
    for n in (0, 5, T - 1):
        s = state * gamma ** keep[:, None, None, : n + 1].sum(-1, keepdim=True)
        for j in range(n + 1):
            steps = keep[:, j + 1:n + 1].sum(-1)[:, None, None, None]
            term = k[:, :, j, :, None] * v[:, :, j, None, :] * keep[:, j, None, None, None]
            s = s + gamma**steps * term
        torch.testing.assert_close(want_o[:, :, n], (q[:, :, n, None] @ s)[:, :, 0])
    o, s = parallel_retention(q, k, v, log_gamma, keep, state, need_state=True)
    torch.testing.assert_close(o, want_o, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(s, want_s, atol=1e-9, rtol=1e-9)
    for chunk in (1, 4, 13, 20):
        o, s = chunkwise_retention(q, k, v, log_gamma, keep, state, chunk)
        torch.testing.assert_close(o, want_o, atol=1e-9, rtol=1e-9, msg=f"chunk {chunk}")
        torch.testing.assert_close(s, want_s, atol=1e-9, rtol=1e-9, msg=f"chunk {chunk}")


def test_prompt_in_any_form_then_recurrent_steps():
    m, x = mixer(chunk_size=4), inputs()
    want = naive(m, x)
    for form in m.forms:
        m.form = form
        state = RecurrentState()
        pieces = [m(x[:, :10], cache=state).output, m(x[:, 10:17], cache=state).output]
        pieces += [m(x[:, t:t + 1], cache=state).output for t in range(17, 23)]
        torch.testing.assert_close(torch.cat(pieces, 1), want, atol=1e-6, rtol=1e-6, msg=form)
        assert state.get("S").shape == (2, 4, 8, 16)  # (B, H, Dk, Dv = 2 Dk)


def test_the_papers_decays_and_parameter_count():
    m = MIXER.build("retention", d_model=64, n_heads=8)
    torch.testing.assert_close(decays(8), 1 - 2.0 ** -torch.arange(5, 13, dtype=torch.float64))
    assert decays(8)[0] == 1 - 1 / 32 and decays(8)[-1] == 1 - 1 / 4096
    assert sum(p.numel() for p in m.parameters()) == 8 * 64 * 64  # W_Q, W_K, W_V, W_G, W_O
    assert m.v_proj.out_features == 2 * 64 and m.head_dim == 8


def test_runs_under_bfloat16_autocast_with_a_float32_state():
    m = MultiScaleRetention(D)
    x = torch.randn(1, 9, D)
    state = RecurrentState()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x, cache=state).output
    assert torch.isfinite(y).all() and state.get("S").dtype == torch.float32
    m.form = "parallel"
    torch.testing.assert_close(y.float(), m(x).output, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("kwargs, words", [
    (dict(d_model=30, n_heads=4), ["n_heads (4)", "d_model (30)"]),
    (dict(d_model=36, n_heads=4), ["even", "36 / 4"]),
    (dict(d_model=32, n_heads=0), ["n_heads", "0"]),
    (dict(d_model=32, chunk_size=0), ["chunk_size", "0"]),
    (dict(d_model=32, form="scan"), ["form", "'scan'"]),
])
def test_bad_knobs_are_named(kwargs, words):
    with pytest.raises(ValueError) as info:
        MIXER.build("retention", **kwargs)
    for word in words:
        assert word in str(info.value)
    if "form" not in kwargs:
        assert isinstance(info.value, ConfigError)
