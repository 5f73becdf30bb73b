"""GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"): a
decoder-only Transformer built from `attnlab.nn` blocks.

Differences from the 2017 decoder: no cross-attention, learned absolute positions, pre-norm
(LayerNorm before each sub-layer, one more after the last layer), GELU (tanh approximation) in
the feed-forward, weights N(0, 0.02) with residual output projections scaled by 1/sqrt(2N), and
the output projection tied to the token embedding.

With `moe` set, each chosen layer's feed-forward becomes a mixture of experts of the same kind
(nn/moe.py): `moe={"experts": 8, "top_k": 1, "capacity_factor": 1.25}` is a Switch Transformer
(Fedus et al. 2021) on GPT-2's layers; every expert's down projection gets the residual scaling.

    model = build_model("gpt2-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)   # next-token loss
    out.logits  # (B, T, V)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM, check_decoder_config
from attnlab.models.common import init_moe_, init_normal_
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import DecoderLayer
from attnlab.nn.moe import MoE, MoEConfig, feed_forward, layer_moe
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of GPT-2 (defaults: the 124M "gpt2" checkpoint)."""

    model_type: ClassVar[str] = "gpt2"

    vocab_size: int = 50257
    max_seq_len: int = 1024  # n_positions
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.1  # residual and embedding dropout
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    feedforward: str = "gelu_tanh"  # HF "gelu_new"
    kernel: str = "sdpa"
    init_std: float = 0.02
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    pad_token_id: int | None = None
    moe: MoEConfig | None = None  # mixture-of-experts feed-forwards (a dict is coerced)

    def __post_init__(self) -> None:
        object.__setattr__(self, "moe", MoEConfig.coerce(self.moe))
        check_decoder_config(self)


def layer_norm(c: Any) -> nn.Module:
    return NORM.build("layer", d_model=c.d_model, eps=c.layer_norm_eps)


def decoder_layer(c: Any, i: int = 0) -> DecoderLayer:
    """GPT-2's pre-norm layer i: x + attn(LN(x)) (causal), then x + FFN(LN(x)) (experts where
    `c.moe` makes layer i a mixture); attention dropout `c.attention_dropout` where the config
    has one, else `c.dropout`."""
    attention = ATTENTION.build("multi_head", d_model=c.d_model, n_heads=c.n_heads,
                                dropout=getattr(c, "attention_dropout", c.dropout),
                                kernel=c.kernel)
    ffn = feed_forward(c.feedforward, c.d_model, c.d_ff, layer_moe(getattr(c, "moe", None), i))
    return DecoderLayer(attention, None, ffn, layer_norm(c), None, layer_norm(c),
                        dropout=c.dropout, norm_first=True)


def init_gpt2(model: nn.Module, decoder: nn.Module, c: Any) -> None:
    """GPT-2's initialisation: N(0, init_std) everywhere (routers and experts too), residual
    projections (attention output, feed-forward or every expert's down) N(0, init_std /
    sqrt(2 * n_layers)), zero biases, unit norms."""
    init_normal_(model, c.init_std)
    residual_std = c.init_std / math.sqrt(2 * c.n_layers)
    init_moe_(model, c.init_std, down_std=residual_std)
    for layer in decoder.layers:
        nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
        if not isinstance(layer.feed_forward, MoE):
            nn.init.normal_(layer.feed_forward.down_proj.weight, std=residual_std)


class GPT(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None) -> CausalLMOutput."""

    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.position = POSITION.build("learned", d_model=c.d_model, n_heads=c.n_heads,
                                       max_seq_len=c.max_seq_len, init_std=c.init_std)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.decoder = Decoder([decoder_layer(c, i) for i in range(c.n_layers)],
                               final_norm=layer_norm(c))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        self.lm_head.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        init_gpt2(self, self.decoder, self.config)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token + learned position embeddings, then dropout: (B, T) -> (B, T, D)."""
        return self.embed_dropout(self.embed_tokens(input_ids) + self.position(position_ids))
