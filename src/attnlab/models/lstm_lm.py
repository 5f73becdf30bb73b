"""An LSTM language model (Hochreiter & Schmidhuber 1997; the word-level LSTM LMs of Zaremba et
al. 2014, "Recurrent Neural Network Regularization", and Merity et al. 2018, "Regularizing and
Optimizing LSTM Language Models"): the recurrent baseline of the language-model comparison,
under the same CausalLM interface as the Transformer, Mamba, RWKV and RetNet.

    embedding -> L x [x + LSTM(LN(x)) (, x + FFN(LN(x)))] -> LN -> lm head tied to the embedding

Each layer is one LSTM of width d_model (nn/mixers/lstm.py) in a pre-norm residual block, and,
when d_ff is set, a GELU feed-forward after it (a DecoderLayer with the LSTM in its attention
slot); d_ff None (or 0) is the papers' plain stack of LSTMs (`LSTMLayer`). Deviations from the
papers, to compare architectures under one harness: the residual connections and LayerNorms
(the papers stack LSTMs directly), and the tied output layer (Press & Wolf 2017, Inan et al. 2017,
as Merity et al.; Zaremba et al. untied it). Dropout (Zaremba et al.'s on non-recurrent
connections) on the embeddings and each residual branch. Embeddings and linear layers
N(0, init_std); the LSTM keeps torch's uniform(+-1/sqrt(d_model)) (as Merity et al.'s code).

    model = build_model("lstm-lm-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM
from attnlab.models.common import check_positive_ints, check_token_ids, init_normal_
from attnlab.nn.block import DecoderLayer, LayerOutput, ResidualLayer
from attnlab.nn.cache import DecoderLayerCache
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.mixers.lstm import LSTMMixer
from attnlab.nn.norm import NORM
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class LstmLMConfig:
    """Hyperparameters of the LSTM LM (defaults: Zaremba et al.'s small model, 2 x 200 units
    over Penn Treebank's 10k words)."""

    model_type: ClassVar[str] = "lstm_lm"

    vocab_size: int = 10000
    d_model: int = 200  # embedding width = LSTM units
    n_layers: int = 2
    d_ff: int | None = None  # None (0 is read as None): no feed-forward, as the papers
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 2**20  # no position table: the io/limits bound, not a model limit
    init_std: float = 0.02
    bos_token_id: int = 0
    eos_token_id: int = 0
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "max_seq_len", "d_model", "n_layers"))
        if self.d_ff == 0 and not isinstance(self.d_ff, bool):
            object.__setattr__(self, "d_ff", None)  # one spelling of "none" (io/limits: >= 1)
        if self.d_ff is not None:
            check_positive_ints(self, ("d_ff",))
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        check_token_ids(self)


class LSTMLayer(ResidualLayer):
    """x + Dropout(LSTM(LN(x))) and nothing else: the layer without d_ff, called as the Decoder
    calls a DecoderLayer (the same parameter names, so only the feed-forward differs)."""

    def __init__(self, self_attn: nn.Module, self_attn_norm: nn.Module, *,
                 dropout: float = 0.0) -> None:
        super().__init__(dropout, norm_first=True)
        self.self_attn = self_attn
        self.self_attn_norm = self_attn_norm

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None,
                memory_mask: Tensor | None = None, cache: DecoderLayerCache | None = None,
                bias: Tensor | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False) -> LayerOutput:
        x, _ = self.residual(
            x, self.self_attn_norm,
            lambda h: self.self_attn(h, mask=mask, causal=True, bias=bias,
                                     position_ids=position_ids, need_weights=need_weights,
                                     cache=None if cache is None else cache.self_attn))
        return LayerOutput(x, None, None)


class LstmLM(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None, cache=None) -> CausalLMOutput;
    new_cache() gives one RecurrentState (h, c) per layer."""

    config_class = LstmLMConfig
    recurrent = True

    def __init__(self, config: LstmLMConfig) -> None:
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

    def _layer(self) -> nn.Module:
        c = self.config
        if c.d_ff is None:
            return LSTMLayer(LSTMMixer(c.d_model), self._norm(), dropout=c.dropout)
        ffn = FEEDFORWARD.build("gelu", d_model=c.d_model, d_ff=c.d_ff)
        return DecoderLayer(LSTMMixer(c.d_model), None, ffn, self._norm(), None, self._norm(),
                            dropout=c.dropout, norm_first=True)

    def reset_parameters(self) -> None:
        """N(0, init_std) embeddings and linear weights, zero biases; LSTMs keep their own."""
        init_normal_(self, self.config.init_std)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token embeddings, then dropout (order is the recurrence's): (B, T) -> (B, T, D)."""
        return self.embed_dropout(self.embed_tokens(input_ids))
