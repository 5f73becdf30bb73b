"""Learned absolute position embeddings (Gehring et al., 2017, "Convolutional Sequence to
Sequence Learning"; used by GPT and BERT): one trained vector per position < max_seq_len."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.nn.position.base import POSITION, PositionEncoding


@POSITION.register("learned")
class LearnedPositionEncoding(PositionEncoding):
    """`embedding.weight` (max_seq_len, D), normal(0, init_std) as in GPT-2 and BERT;
    `forward(position_ids (T,) or (B, T)) -> (T, D) or (B, T, D)`."""

    kind = "absolute"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 init_std: float = 0.02) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.init_std = init_std
        self.embedding = nn.Embedding(max_seq_len, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.init_std)

    def forward(self, position_ids: Tensor) -> Tensor:
        self.check_positions(position_ids)
        return self.embedding(position_ids)  # (T, D) or (B, T, D)
