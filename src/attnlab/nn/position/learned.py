"""Learned absolute position embeddings (Gehring et al., 2017; GPT; BERT): one trained vector
per position up to max_seq_len."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.nn.position.base import POSITION, PositionEncoding


@POSITION.register("learned")
class LearnedPositionEncoding(PositionEncoding):
    kind = "absolute"

    def __init__(self, *, d_model: int, n_heads: int, max_seq_len: int,
                 init_std: float = 0.02) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        self.embedding = nn.Embedding(max_seq_len, d_model)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def forward(self, position_ids: Tensor) -> Tensor:
        """position_ids (T,) or (B, T) -> (T, D) or (B, T, D)."""
        self.check_positions(position_ids)
        return self.embedding(position_ids)
