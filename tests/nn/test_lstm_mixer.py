"""The LSTM mixer (nn/mixers/lstm.py) against torch.nn.LSTM with the same weights, in both
forms: outputs and final (h, c), a carried state, and rows padded on the left by different
amounts (each equal to its unpadded run started from zeros)."""

from __future__ import annotations

import torch

from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers import MIXER
from attnlab.nn.mixers.lstm import LSTMMixer

D = 16


def mixer():
    torch.manual_seed(0)
    return MIXER.build("lstm", d_model=D).double().eval()


def test_registered():
    assert MIXER.get("lstm") is LSTMMixer


def reference(m, x, state=None):
    """torch.nn.LSTM itself, weights copied."""
    lstm = torch.nn.LSTM(D, D, batch_first=True).double()
    lstm.load_state_dict(m.lstm.state_dict())
    return lstm(x, state)


def test_both_forms_equal_torch_lstm():
    m = mixer()
    x = torch.randn(3, 11, D, dtype=torch.float64)
    want, (h, c) = reference(m, x)
    for form in m.forms:
        m.form = form
        state = RecurrentState()
        torch.testing.assert_close(m(x, cache=state).output, want, msg=form)
        torch.testing.assert_close(state.get("h"), h[0], msg=form)
        torch.testing.assert_close(state.get("c"), c[0], msg=form)


def test_continues_from_a_state():
    m = mixer()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    want, _ = reference(m, x)
    for form in m.forms:
        m.form = form
        state = RecurrentState()
        pieces = [m(x[:, :4], cache=state).output, m(x[:, 4:7], cache=state).output,
                  m(x[:, 7:8], cache=state).output, m(x[:, 8:], cache=state).output]
        torch.testing.assert_close(torch.cat(pieces, 1), want, msg=form)
        assert state.length == 9


def test_left_padding_starts_each_row_from_zeros():
    m = mixer()
    lengths = [7, 4, 1]
    T = max(lengths)
    rows = [torch.randn(1, n, D, dtype=torch.float64) for n in lengths]
    x = torch.randn(3, T, D, dtype=torch.float64)  # padding holds noise
    keep = torch.zeros(3, T, dtype=torch.bool)
    for b, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        x[b, T - n:] = row[0]
        keep[b, T - n:] = True
    for form in m.forms:
        m.form = form
        state = RecurrentState()
        y = m(x, mask=keep[:, None, None], cache=state).output
        assert (y[~keep] == 0).all(), form
        for b, (row, n) in enumerate(zip(rows, lengths, strict=True)):
            want, (h, c) = reference(m, row)
            torch.testing.assert_close(y[b, T - n:], want[0], msg=f"{form} row {b}")
            torch.testing.assert_close(state.get("h")[b], h[0, 0], msg=f"{form} row {b}")
            torch.testing.assert_close(state.get("c")[b], c[0, 0], msg=f"{form} row {b}")


def test_a_row_of_padding_only_keeps_its_state():
    m = mixer()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    keep = torch.ones(2, 5, dtype=torch.bool)
    for form in m.forms:
        m.form = form
        state = RecurrentState()
        m(x, cache=state)
        h, c = state.get("h").clone(), state.get("c").clone()
        keep[1] = False
        m(x, mask=keep, cache=state)
        torch.testing.assert_close(state.get("h")[1], h[1], rtol=0, atol=0, msg=form)
        torch.testing.assert_close(state.get("c")[1], c[1], rtol=0, atol=0, msg=form)
        keep[1] = True


def test_gradients_reach_the_weights_through_the_packed_path():
    m = MIXER.build("lstm", d_model=D)
    x = torch.randn(2, 6, D, requires_grad=True)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[0, :2] = False
    m(x, mask=keep).output.sum().backward()
    assert m.lstm.weight_hh_l0.grad.abs().sum() > 0
    assert (x.grad[0, :2] == 0).all() and x.grad[0, 2:].abs().sum() > 0
