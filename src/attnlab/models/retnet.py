"""RetNet (Sun et al. 2023, "Retentive Network: A Successor to Transformer for Large Language
Models"): a decoder-only model whose layers put multi-scale retention (nn/mixers/retention.py)
where a Transformer has causal self-attention, so it trains in parallel (or chunkwise) and
generates from a fixed-size state per layer (S: (B, H, Dk, 2 Dk)), whatever the context.

    embedding -> L x [x + MSR(LN(x)), x + FFN(LN(x))] -> LN -> lm head (tied)

As the paper (sec. 2.3): pre-LayerNorm residual blocks, the retention's value heads twice as
wide as its query/key heads and a GELU feed-forward of width d_ff = 2 d, so a block holds the
12 d^2 parameters of a Transformer block. No position embedding: positions enter as the
rotation of queries and keys inside retention. Weights N(0, init_std), the residual output
projections (retention's W_O, the feed-forward's down projection) N(0, init_std / sqrt(2 L))
as GPT-2 (the paper's code uses DeepNet-style scaled Xavier; no checkpoint depends on it).
`chunk_size` is the chunkwise form's chunk, the form a multi-token forward uses by default.

    model = build_model("retnet-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)
    model.generate(input_ids, max_new_tokens=20)   # recurrent steps, constant memory
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM, check_decoder_config
from attnlab.models.common import check_positive_ints, init_normal_
from attnlab.nn.block import DecoderLayer
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.mixers.retention import MultiScaleRetention
from attnlab.nn.norm import NORM
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class RetNetConfig:
    """Hyperparameters of a RetNet decoder (defaults: the paper's 1.3B model)."""

    model_type: ClassVar[str] = "retnet"

    vocab_size: int = 50257  # GPT-2's byte-level BPE, as the public reproductions use
    d_model: int = 2048
    n_layers: int = 24
    n_heads: int = 8  # retention heads: gamma_h = 1 - 2^(-5-h), h < n_heads
    d_ff: int = 4096  # 2 d_model in the paper
    max_seq_len: int = 2**20  # no position table: the io/limits bound, not a model limit
    layer_norm_eps: float = 1e-5
    dropout: float = 0.0  # embedding and residual dropout
    tie_embeddings: bool = True
    init_std: float = 0.02
    chunk_size: int = 64  # the chunkwise form's chunk (the fastest on CPU: nn/mixers/retention)
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        check_decoder_config(self)  # sizes, n_heads dividing d_model, ids in the vocabulary
        check_positive_ints(self, ("chunk_size",))
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model / n_heads ({self.d_model} / {self.n_heads}) must be "
                             "even: retention rotates query/key pairs")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class RetNet(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None, cache=None) -> CausalLMOutput;
    new_cache() gives one RecurrentState per layer."""

    config_class = RetNetConfig
    recurrent = True

    def __init__(self, config: RetNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.decoder = Decoder([self._layer() for _ in range(c.n_layers)],
                               final_norm=self._norm())
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _norm(self) -> nn.Module:
        return NORM.build("layer", d_model=self.config.d_model, eps=self.config.layer_norm_eps)

    def _layer(self) -> DecoderLayer:
        c = self.config
        retention = MultiScaleRetention(c.d_model, n_heads=c.n_heads, chunk_size=c.chunk_size)
        ffn = FEEDFORWARD.build("gelu", d_model=c.d_model, d_ff=c.d_ff)
        return DecoderLayer(retention, None, ffn, self._norm(), None, self._norm(),
                            dropout=c.dropout, norm_first=True)

    def reset_parameters(self) -> None:
        """N(0, init_std) weights, zero biases; residual output projections scaled by
        1 / sqrt(2 n_layers)."""
        c = self.config
        init_normal_(self, c.init_std)
        residual_std = c.init_std / math.sqrt(2 * c.n_layers)
        for layer in self.decoder.layers:
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.feed_forward.down_proj.weight, std=residual_std)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token embeddings only (positions rotate queries and keys inside retention):
        (B, T) -> (B, T, D)."""
        return self.embed_dropout(self.embed_tokens(input_ids))
