"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding"): the 2017 encoder from `attnlab.nn` blocks with learned positions,
token-type (segment) embeddings, a LayerNorm on the summed embeddings, post-norm layers with
exact GELU, a tanh pooler over [CLS], a masked-LM head (transform + LayerNorm + tied decoder
with its own bias) and an optional sequence-classification head.

    model = build_model("bert-tiny")
    out = model(input_ids, attention_mask=mask, labels=mlm_labels)   # masked-LM loss
    out.logits  # (B, T, V); out.pooler_output (B, D); out.last_hidden_state (B, T, D)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.generation.mixin import ENCODER_ONLY
from attnlab.models.common import (
    PretrainedModel,
    check_input_ids,
    check_positive_ints,
    init_normal_,
    key_padding_mask,
)
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import EncoderLayer
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION
from attnlab.nn.stack import Encoder, EncoderOutput


@dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of BERT (defaults: bert-base-uncased)."""

    model_type: ClassVar[str] = "bert"

    vocab_size: int = 30522
    max_seq_len: int = 512
    type_vocab_size: int = 2
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    feedforward: str = "gelu"
    kernel: str = "sdpa"
    init_std: float = 0.02
    num_labels: int = 0  # > 0 adds a sequence-classification head on the pooled output
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "max_seq_len", "type_vocab_size", "d_model",
                                   "n_heads", "n_layers", "d_ff"))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.num_labels < 0:
            raise ValueError(f"num_labels must be >= 0, got {self.num_labels}")


@dataclass
class BertOutput:
    last_hidden_state: Tensor  # (B, T, D)
    pooler_output: Tensor  # (B, D): tanh(W h_[CLS] + b)
    logits: Tensor  # (B, T, V) masked-LM scores, or (B, num_labels) with a classifier
    loss: Tensor | None = None
    attentions: tuple[Tensor, ...] | None = None  # per layer (B, H, T, T)


class Bert(PretrainedModel):
    """forward(input_ids, attention_mask=None, token_type_ids=None, labels=None) -> BertOutput.
    labels: (B, T) masked-LM targets (-100 ignored), or (B,) classes with num_labels > 0."""

    config_class = BertConfig
    model_kind: ClassVar[str] = ENCODER_ONLY  # reads text, generates none: no `generate`

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.position = POSITION.build("learned", d_model=c.d_model, n_heads=c.n_heads,
                                       max_seq_len=c.max_seq_len, init_std=c.init_std)
        self.token_type = nn.Embedding(c.type_vocab_size, c.d_model)
        self.embed_norm = self._norm()
        self.embed_dropout = nn.Dropout(c.dropout)
        self.encoder = Encoder([self._layer() for _ in range(c.n_layers)])
        self.pooler = nn.Linear(c.d_model, c.d_model)
        # One head: sequence classification when num_labels > 0, else masked-LM.
        self.classifier = nn.Linear(c.d_model, c.num_labels) if c.num_labels else None
        if not c.num_labels:
            self.mlm_transform = nn.Linear(c.d_model, c.d_model)
            self.mlm_norm = self._norm()
            self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.reset_parameters()

    def _norm(self) -> nn.Module:
        return NORM.build("layer", d_model=self.config.d_model, eps=self.config.layer_norm_eps)

    def _layer(self) -> EncoderLayer:
        c = self.config
        attention = ATTENTION.build("multi_head", d_model=c.d_model, n_heads=c.n_heads,
                                    dropout=c.attention_dropout, kernel=c.kernel)
        feed_forward = FEEDFORWARD.build(c.feedforward, d_model=c.d_model, d_ff=c.d_ff)
        return EncoderLayer(attention, feed_forward, self._norm(), self._norm(),
                            dropout=c.dropout, norm_first=False)

    def reset_parameters(self) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, unit norms."""
        init_normal_(self, self.config.init_std)
        with torch.no_grad():
            self.embed_tokens.weight[self.config.pad_token_id].zero_()


    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               token_type_ids: Tensor | None = None, *,
               output_attentions: bool = False) -> EncoderOutput:
        """The encoder stack's output alone (its `last_hidden_state` (B, T, D)), without the
        pooler and the heads: what sentence embeddings are pooled from."""
        check_input_ids(input_ids, self.config, "input_ids")
        T = input_ids.size(1)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = (self.embed_tokens(input_ids) + self.position(positions)
             + self.token_type(token_type_ids))  # (B, T, D)
        x = self.embed_dropout(self.embed_norm(x))
        mask = key_padding_mask(attention_mask, *input_ids.shape)  # (B, 1, 1, T)
        return self.encoder(x, mask=mask, output_attentions=output_attentions)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        output_attentions: bool = False,
    ) -> BertOutput:
        enc = self.encode(input_ids, attention_mask, token_type_ids,
                          output_attentions=output_attentions)
        hidden = enc.last_hidden_state  # (B, T, D)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (B, D)
        loss = None
        if self.classifier is not None:
            logits = self.classifier(self.embed_dropout(pooled))  # (B, num_labels)
            if labels is not None:
                loss = F.cross_entropy(logits.float(), labels)
        else:
            h = self.mlm_norm(F.gelu(self.mlm_transform(hidden)))  # (B, T, D)
            logits = h @ self.embed_tokens.weight.t() + self.mlm_bias  # (B, T, V)
            if labels is not None:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                       labels.reshape(-1), ignore_index=-100)
        return BertOutput(hidden, pooled, logits, loss, enc.attentions)
