"""T5: the text-to-text encoder-decoder Transformer (Raffel et al., 2020, "Exploring the Limits
of Transfer Learning with a Unified Text-to-Text Transformer"), and its v1.1 revision.

Differences from the 2017 Transformer, each a setting of attnlab.nn blocks:
- no absolute positions: one bucketed relative position bias per stack, learned by the first
  layer and shared by all (encoder: both directions; decoder: the past only); none in
  cross-attention;
- scores are not scaled by 1/sqrt(Dh) (the initialisation folds it into the query weights);
- pre-norm with an RMS norm without bias (Zhang and Sennrich, 2019), no biases anywhere;
- v1.0: ReLU feed-forward, output projection tied to the embedding, decoder output scaled by
  d_model^-0.5 before it; v1.1: gated-GELU feed-forward (Shazeer, 2020), untied head, no
  scaling.

With `moe` set, the chosen layers' feed-forwards (encoder and decoder, counted per stack) become
mixtures of experts of the same kind (nn/moe.py): `moe={"experts": 8, "top_k": 1,
"capacity_factor": 1.25, "every": 2}` is the Switch Transformer's T5 (Fedus et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnlab.models.common import (
    check_input_ids,
    check_positive_ints,
    check_token_ids,
    init_moe_,
    key_padding_mask,
)
from attnlab.models.seq2seq import EncoderDecoderModel
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import DecoderLayer, EncoderLayer
from attnlab.nn.cache import DecoderCache
from attnlab.nn.feedforward import FeedForward, GatedFeedForward
from attnlab.nn.moe import MoE, MoEConfig, layer_moe
from attnlab.nn.norm import RMSNorm
from attnlab.nn.position import POSITION
from attnlab.nn.stack import Decoder, Encoder, EncoderOutput

FEED_FORWARDS = ("relu", "gated-gelu")


@dataclass(frozen=True)
class T5Config:
    """Defaults: t5-small (Raffel et al., 2020, sec. 3.1.1)."""

    model_type: ClassVar[str] = "t5"

    vocab_size: int = 32128
    d_model: int = 512
    n_heads: int = 8
    head_dim: int = 64  # HF d_kv; n_heads * head_dim need not equal d_model
    n_layers: int = 6  # encoder layers
    n_decoder_layers: int | None = None  # default: n_layers
    d_ff: int = 2048
    feed_forward: str = "relu"  # "relu" (v1.0) or "gated-gelu" (v1.1, tanh GELU)
    num_buckets: int = 32
    max_distance: int = 128
    max_seq_len: int = 512  # relative positions have no hard limit; inputs are checked to this
    dropout: float = 0.1
    norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None  # default: tie_word_embeddings (v1.0 behaviour)
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    moe: MoEConfig | None = None  # mixture-of-experts feed-forwards (a dict is coerced)

    def __post_init__(self) -> None:
        object.__setattr__(self, "moe", MoEConfig.coerce(self.moe))
        if self.n_decoder_layers is None:
            object.__setattr__(self, "n_decoder_layers", self.n_layers)
        if self.scale_decoder_outputs is None:
            object.__setattr__(self, "scale_decoder_outputs", self.tie_word_embeddings)
        check_positive_ints(self, ("vocab_size", "d_model", "n_heads", "head_dim", "n_layers",
                                   "n_decoder_layers", "d_ff", "num_buckets", "max_distance",
                                   "max_seq_len"))
        if self.feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {FEED_FORWARDS}, "
                             f"got {self.feed_forward!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_token_ids(self, ("pad_token_id", "eos_token_id", "decoder_start_token_id"))


class ScaledLMHead(nn.Linear):
    """Output projection D -> V, with T5 v1.0's d_model^-0.5 rescaling of its input."""

    def __init__(self, d_model: int, vocab_size: int, scale: float) -> None:
        super().__init__(d_model, vocab_size, bias=False)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x * self.scale if self.scale != 1.0 else x)  # (..., V)


class T5(EncoderDecoderModel):
    """T5ForConditionalGeneration: forward(input_ids, decoder_input_ids, attention_mask,
    decoder_attention_mask, labels) -> Seq2SeqOutput(logits (B, T, V), loss)."""

    config_class = T5Config

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = Encoder([self._encoder_layer(i) for i in range(c.n_layers)],
                               final_norm=self._norm(), position_bias=self._relative(True))
        self.decoder = Decoder([self._decoder_layer(i) for i in range(c.n_decoder_layers)],
                               final_norm=self._norm(), position_bias=self._relative(False))
        scale = c.d_model**-0.5 if c.scale_decoder_outputs else 1.0
        self.lm_head = ScaledLMHead(c.d_model, c.vocab_size, scale)
        self.reset_parameters()
        if c.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    # -- construction -------------------------------------------------------------------------

    def _norm(self) -> nn.Module:
        return RMSNorm(self.config.d_model, eps=self.config.norm_eps)

    def _attention(self) -> nn.Module:
        c = self.config
        return ATTENTION.build("multi_head", d_model=c.d_model, n_heads=c.n_heads,
                               head_dim=c.head_dim, bias=False, dropout=c.dropout, scale=1.0)

    def _feed_forward(self, i: int) -> nn.Module:
        c = self.config
        gated = c.feed_forward == "gated-gelu"
        moe = layer_moe(c.moe, i)
        if moe is not None:
            return MoE(c.d_model, c.d_ff, moe, activation="gelu_tanh" if gated else "relu",
                       gated=gated, bias=False, dropout=c.dropout)
        if not gated:
            return FeedForward(c.d_model, c.d_ff, activation="relu", dropout=c.dropout,
                               bias=False)
        return GatedFeedForward(c.d_model, c.d_ff, activation="gelu_tanh", dropout=c.dropout)

    def _relative(self, bidirectional: bool) -> nn.Module:
        c = self.config
        return POSITION.build("relative", d_model=c.d_model, n_heads=c.n_heads,
                              max_seq_len=c.max_seq_len, num_buckets=c.num_buckets,
                              max_distance=c.max_distance, bidirectional=bidirectional)

    def _encoder_layer(self, i: int) -> EncoderLayer:
        return EncoderLayer(self._attention(), self._feed_forward(i), self._norm(), self._norm(),
                            dropout=self.config.dropout, norm_first=True)

    def _decoder_layer(self, i: int) -> DecoderLayer:
        return DecoderLayer(self._attention(), self._attention(), self._feed_forward(i),
                            self._norm(), self._norm(), self._norm(),
                            dropout=self.config.dropout, norm_first=True)

    def reset_parameters(self) -> None:
        """T5's initialisation (Mesh TensorFlow): N(0, 1) embeddings, N(0, fan_in^-1/2)
        projections, except queries N(0, (D * Dh)^-1/2), which stands in for the 1/sqrt(Dh)
        the unscaled scores leave out; routers and experts by the same fan-in rule."""
        c = self.config
        for name, module in self.named_modules():
            if isinstance(module, nn.Embedding):
                std = c.d_model**-0.5 if "relative_attention_bias" in name else 1.0
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.Linear):
                fan_in = module.in_features * (c.head_dim if name.endswith("q_proj") else 1)
                nn.init.normal_(module.weight, std=fan_in**-0.5)
        init_moe_(self, c.d_model**-0.5, down_std=c.d_ff**-0.5)

    # -- forward ------------------------------------------------------------------------------

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               output_attentions: bool = False) -> EncoderOutput:
        """input_ids (B, S) -> EncoderOutput(last_hidden_state (B, S, D))."""
        check_input_ids(input_ids, self.config, "input_ids")
        mask = key_padding_mask(attention_mask, *input_ids.shape)  # (B, 1, 1, S)
        x = self.dropout(self.embed_tokens(input_ids))  # (B, S, D)
        out = self.encoder(x, mask=mask, output_attentions=output_attentions)
        out.last_hidden_state = self.dropout(out.last_hidden_state)
        return out

    def decode(self, decoder_input_ids: Tensor, memory: Tensor | None, *,
               attention_mask: Tensor | None = None,
               decoder_attention_mask: Tensor | None = None, cache: DecoderCache | None = None,
               output_attentions: bool = False):
        """New target ids (B, T) after `cache.length` cached ones -> DecoderOutput (B, T, D)."""
        past = 0 if cache is None else cache.length
        check_input_ids(decoder_input_ids, self.config, "decoder_input_ids", offset=past)
        batch, length = decoder_input_ids.size(0), past + decoder_input_ids.size(1)
        source = None if memory is None else memory.size(1)
        memory_mask = key_padding_mask(attention_mask, batch, source)  # (B, 1, 1, S)
        self_mask = key_padding_mask(decoder_attention_mask, batch, length,
                                     "decoder_attention_mask")  # (B, 1, 1, past + T)
        x = self.dropout(self.embed_tokens(decoder_input_ids))  # (B, T, D)
        out = self.decoder(x, memory, mask=self_mask, memory_mask=memory_mask, cache=cache,
                           output_attentions=output_attentions)
        out.last_hidden_state = self.dropout(out.last_hidden_state)
        return out

    def new_cache(self, max_length: int | None = None) -> DecoderCache:
        """An empty cache for incremental decoding with `decode`; `max_length` preallocates
        the self-attention caches for that many target positions (None: they grow)."""
        return DecoderCache.empty(len(self.decoder.layers), max_length)
