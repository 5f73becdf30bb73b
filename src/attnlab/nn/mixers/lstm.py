"""LSTM (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; the forget-gate form of Gers
et al. 2000 that torch.nn.LSTM computes) as a sequence mixer: the recurrence of the LSTM
language models of Zaremba et al. 2014 and Merity et al. 2018, in a block's attention slot.

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
    c_t = f * c_{t-1} + i * g,      h_t = o * tanh(c_t)

D -> D, one layer. Forms: "fused" runs torch.nn.LSTM over the whole sequence (cuDNN / oneDNN
kernels); "recurrent" takes one step at a time with the same weights (and is the one-token
step with a cache). State: h and c, each (B, D), in a RecurrentState.

Padding: a padded position leaves (h, c) as they are and gives a zero output, so a left-padded
row starts from zeros (or the cached state) at its first real token, in both forms. The fused
form moves each row's real tokens to the front (a stable sort of the mask), runs them as a
packed sequence of the row's real length and scatters the outputs back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.nn.attention.base import AttentionOutput
from attnlab.nn.cache import RecurrentState
from attnlab.nn.mixers.base import MIXER, SequenceMixer, zero_padding


@MIXER.register("lstm")
class LSTMMixer(SequenceMixer):
    """One LSTM layer of width d_model; weights are torch.nn.LSTM's (`self.lstm`)."""

    forms = ("fused", "recurrent")

    def __init__(self, d_model: int, *, form: str | None = None) -> None:
        super().__init__(d_model, form)
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                causal: bool = True, cache: RecurrentState | None = None,
                need_weights: bool = False, bias: Tensor | None = None,
                position_ids: Tensor | None = None) -> AttentionOutput:
        keep = self.check_call(x, context, mask, causal, cache, need_weights, bias)
        B, T, D = x.shape
        h = None if cache is None else cache.get("h")
        c = None if cache is None else cache.get("c")
        if h is None or c is None:
            h = c = x.new_zeros(B, D)
        step = cache is not None and T == 1
        if self.form == "recurrent" or step:
            y, h, c = self._recurrent(x, keep, h, c)
        else:
            y, h, c = self._fused(x, keep, h, c)
        if cache is not None:
            cache.set("h", h)
            cache.set("c", c)
            cache.advance(T)
        return self.result(zero_padding(y, keep), cache)  # (B, T, D)

    def _fused(self, x: Tensor, keep: Tensor | None, h: Tensor, c: Tensor
               ) -> tuple[Tensor, Tensor, Tensor]:
        """torch.nn.LSTM over the sequence, real tokens packed: (B, T, D) -> y, h, c."""
        if keep is None:
            y, (h_n, c_n) = self.lstm(x, (h[None], c[None]))
            return y, h_n[0], c_n[0]
        B, T, D = x.shape
        lengths = keep.sum(-1)  # (B,)
        # each row's real positions first, in order: (B, T) indices into the row
        order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices
        index = order[..., None].expand(B, T, D)
        packed = pack_padded_sequence(x.gather(1, index), lengths.clamp_min(1).cpu(),
                                      batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = self.lstm(packed, (h[None], c[None]))
        front, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D)
        y = torch.zeros_like(front).scatter(1, index, front)  # padded positions: garbage or 0
        empty = (lengths == 0)[:, None]  # a row with no real token keeps its state
        return y, torch.where(empty, h, h_n[0]), torch.where(empty, c, c_n[0])

    def _recurrent(self, x: Tensor, keep: Tensor | None, h: Tensor, c: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """One LSTM cell step per position with nn.LSTM's weights (gate order i, f, g, o)."""
        lstm = self.lstm
        inputs = nn.functional.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0)  # (B, T, 4D)
        reals = [None] * x.size(1) if keep is None else keep[..., None].unbind(1)  # (B, 1)
        outputs = []  # unbound once: indexing per step would cost a full-size gradient per step
        for x_t, real in zip(inputs.unbind(1), reals, strict=True):
            gates = x_t + nn.functional.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
            i, f, g, o = gates.chunk(4, dim=-1)  # (B, D) each
            c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_t = torch.sigmoid(o) * torch.tanh(c_t)
            if real is None:
                h, c = h_t, c_t
            else:
                h, c = torch.where(real, h_t, h), torch.where(real, c_t, c)
            outputs.append(h_t)
        return torch.stack(outputs, dim=1), h, c  # (B, T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, form={self.form!r}"
