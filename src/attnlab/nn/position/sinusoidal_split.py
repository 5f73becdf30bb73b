"""Sinusoidal positions with the sines in the first half of the dimensions and the cosines in
the second, as Marian (Junczys-Dowmunt et al., 2018, "Marian: Fast Neural Machine Translation
in C++") and its OPUS-MT checkpoints lay them out (Hugging Face's
MarianSinusoidalPositionalEmbedding), instead of the interleaved pairs of Vaswani et al. (2017).

The frequencies are the paper's, 1 / 10000^(2i/D); only the order of the dimensions differs:
PE(pos, i) = sin(pos / 10000^(2i/D)) and PE(pos, D/2 + i) = cos(pos / 10000^(2i/D)), i < D/2.
Positions start at 0 (no offset). Same module as "sinusoidal" otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.nn.position.base import POSITION
from attnlab.nn.position.sinusoidal import SinusoidalPositionEncoding


def split_sinusoidal_table(length: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(length, d_model) float32 table, sines then cosines, computed in float64."""
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    exponent = torch.arange(0, d_model, 2, dtype=torch.float64) / d_model  # (D/2,)
    angles = position / base**exponent  # (L, D/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()  # (L, D)


@POSITION.register("sinusoidal_split")
class SplitSinusoidalPositionEncoding(SinusoidalPositionEncoding):
    """Fixed table, sines then cosines; `forward(position_ids (T,) or (B, T)) -> (T, D) or
    (B, T, D)`."""

    make_table = staticmethod(split_sinusoidal_table)
