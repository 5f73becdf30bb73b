"""The original encoder-decoder Transformer (Vaswani et al., 2017, "Attention Is All You Need").

Shared source/target embeddings tied to the output projection (sec. 3.4), embeddings scaled by
sqrt(d_model), sinusoidal positions (sec. 3.5), post-norm residual sub-layers, dropout 0.1.
Presets: transformer-base (65M params with a 37,000-token shared vocabulary), transformer-big
(213M), transformer-tiny (< 1M, for tests). Every choice is a config string, so the same class
also builds pre-norm, RMSNorm, SwiGLU, GQA, RoPE / ALiBi / T5-bias and the RNN-era attentions,
and Marian's OPUS-MT models (position "sinusoidal_split", feedforward "silu", output_bias: the
`final_logits_bias` of Hugging Face's MarianMTModel; io/hf/marian.py maps their folders).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.io.limits import size_error
from attnlab.models.common import check_input_ids, check_token_ids, key_padding_mask
from attnlab.models.seq2seq import EncoderDecoderModel, Seq2SeqOutput  # noqa: F401
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import DecoderLayer, EncoderLayer
from attnlab.nn.cache import DecoderCache
from attnlab.nn.feedforward import FEEDFORWARD
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION
from attnlab.nn.stack import Decoder, Encoder


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of the encoder-decoder Transformer (defaults: the paper's base model)."""

    model_type: ClassVar[str] = "transformer"

    vocab_size: int = 37000
    d_model: int = 512
    n_heads: int = 8
    n_layers: int = 6  # encoder layers (N in the paper)
    n_decoder_layers: int | None = None  # default: n_layers
    d_ff: int = 2048
    dropout: float = 0.1  # on sub-layer outputs and on embeddings + positions (sec. 5.4)
    attention_dropout: float = 0.0
    max_seq_len: int = 1024
    n_kv_heads: int | None = None  # grouped-query attention when < n_heads
    attention: str = "multi_head"  # any ATTENTION name
    attention_options: dict[str, Any] = field(default_factory=dict)  # extra mechanism kwargs
    kernel: str = "sdpa"  # "sdpa" (fused) or "reference" (the paper's four steps)
    position: str = "sinusoidal"  # any POSITION name
    norm: str = "layer"  # "layer" or "rms"
    norm_first: bool = False  # False = post-norm as in the paper
    feedforward: str = "relu"  # "relu", "gelu", "swiglu", "geglu"
    bias: bool = True
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    scale_embeddings: bool = True
    output_bias: bool = False  # a bias on the output projection (Marian's final_logits_bias)
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.n_decoder_layers is None:
            object.__setattr__(self, "n_decoder_layers", self.n_layers)
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "n_decoder_layers", "d_ff",
                     "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            if size_error(name, value) is not None:  # a sane bound (attnlab.io.limits)
                raise ValueError(size_error(name, value))
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        check_token_ids(self, ("pad_token_id", "bos_token_id", "eos_token_id"))
        for registry, name in ((ATTENTION, self.attention), (POSITION, self.position),
                               (NORM, self.norm), (FEEDFORWARD, self.feedforward)):
            registry.get(name)  # KeyError listing the valid names
        mechanism = ATTENTION.get(self.attention)
        needs = {"supports_causal": "causal masking (decoder self-attention)",
                 "supports_cross": "cross-attention (decoder)",
                 "supports_mask": "padding masks"}
        missing = [what for flag, what in needs.items() if not getattr(mechanism, flag, True)]
        if missing:
            raise ValueError(
                f"attention={self.attention!r} cannot serve an encoder-decoder Transformer: it "
                f"lacks {', '.join(missing)}; see `attnlab list` for what each mechanism supports"
            )
        if self.attention_dropout > 0 and "dropout" not in inspect.signature(mechanism).parameters:
            raise ValueError(f"attention={self.attention!r} has no attention dropout; "
                             f"set attention_dropout=0.0, got {self.attention_dropout}")

    @property
    def decoder_start_token_id(self) -> int:
        return self.bos_token_id


class Transformer(EncoderDecoderModel):
    """Encoder-decoder Transformer. forward(input_ids, decoder_input_ids, attention_mask,
    decoder_attention_mask, labels) -> Seq2SeqOutput(logits (B, T, V), loss)."""

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embeddings else 1.0
        self.embed_dropout = nn.Dropout(c.dropout)
        common = dict(d_model=c.d_model, n_heads=c.n_heads, max_seq_len=c.max_seq_len)
        kind = POSITION.get(c.position).kind
        self.position = POSITION.build(c.position, **common) if kind == "absolute" else None
        rotary = POSITION.build(c.position, **common) if kind == "rotary" else None
        self.encoder = Encoder(
            [self._encoder_layer(rotary) for _ in range(c.n_layers)],
            final_norm=self._norm() if c.norm_first else None,
            position_bias=self._position_bias(bidirectional=True),
        )
        self.decoder = Decoder(
            [self._decoder_layer(rotary) for _ in range(c.n_decoder_layers)],
            final_norm=self._norm() if c.norm_first else None,
            position_bias=self._position_bias(bidirectional=False),
        )
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=c.output_bias)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    # -- construction -------------------------------------------------------------------------

    def _norm(self) -> nn.Module:
        return NORM.build(self.config.norm, d_model=self.config.d_model,
                          eps=self.config.layer_norm_eps, bias=self.config.norm == "layer")

    def _attention(self, rotary: nn.Module | None) -> nn.Module:
        c = self.config
        options = dict(c.attention_options)
        if c.attention == "multi_head":
            options.update(kernel=c.kernel, n_kv_heads=c.n_kv_heads, bias=c.bias, rotary=rotary)
        elif rotary is not None or c.n_kv_heads is not None:
            raise ValueError(
                f"attention={c.attention!r} supports neither rotary positions nor n_kv_heads"
            )
        if "dropout" in inspect.signature(ATTENTION.get(c.attention)).parameters:
            options.setdefault("dropout", c.attention_dropout)
        return ATTENTION.build(c.attention, d_model=c.d_model, n_heads=c.n_heads, **options)

    def _feed_forward(self) -> nn.Module:
        c = self.config
        return FEEDFORWARD.build(c.feedforward, d_model=c.d_model, d_ff=c.d_ff, bias=c.bias,
                                 dropout=0.0)

    def _position_bias(self, bidirectional: bool) -> nn.Module | None:
        c = self.config
        if POSITION.get(c.position).kind != "bias":
            return None
        extra = {"bidirectional": bidirectional} if c.position == "relative" else {}
        return POSITION.build(c.position, d_model=c.d_model, n_heads=c.n_heads,
                              max_seq_len=c.max_seq_len, **extra)

    def _encoder_layer(self, rotary: nn.Module | None) -> EncoderLayer:
        return EncoderLayer(
            self._attention(rotary), self._feed_forward(), self._norm(), self._norm(),
            dropout=self.config.dropout, norm_first=self.config.norm_first,
        )

    def _decoder_layer(self, rotary: nn.Module | None) -> DecoderLayer:
        return DecoderLayer(
            self._attention(rotary), self._attention(None), self._feed_forward(),
            self._norm(), self._norm(), self._norm(),
            dropout=self.config.dropout, norm_first=self.config.norm_first,
        )

    def reset_parameters(self) -> None:
        """Xavier-uniform projections; embeddings N(0, d_model^-1/2) so that after the sqrt(d)
        scale they have unit variance; the padding row is zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=self.config.d_model**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[self.config.pad_token_id].zero_()

    # -- forward ------------------------------------------------------------------------------

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        """Token embeddings * sqrt(D) (+ absolute positions), then dropout: (B, T) -> (B, T, D)."""
        x = self.embed_tokens(ids) * self.embed_scale  # (B, T, D)
        if self.position is not None:
            positions = torch.arange(offset, offset + ids.size(1), device=ids.device)  # (T,)
            x = x + self.position(positions).to(x.dtype)  # (B, T, D)
        return self.embed_dropout(x)

    def encode(
        self, input_ids: Tensor, attention_mask: Tensor | None = None,
        output_attentions: bool = False,
    ):
        """Run the encoder: input_ids (B, S) -> EncoderOutput(last_hidden_state (B, S, D))."""
        check_input_ids(input_ids, self.config, "input_ids")
        mask = key_padding_mask(attention_mask, *input_ids.shape)  # (B, 1, 1, S)
        return self.encoder(self.embed(input_ids), mask=mask, output_attentions=output_attentions)

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor | None,
        *,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        output_attentions: bool = False,
    ):
        """Run the decoder on new target ids (B, T) after `cache.length` cached positions."""
        past = 0 if cache is None else cache.length
        check_input_ids(decoder_input_ids, self.config, "decoder_input_ids", offset=past)
        batch, length = decoder_input_ids.size(0), past + decoder_input_ids.size(1)
        source = None if memory is None else memory.size(1)
        memory_mask = key_padding_mask(attention_mask, batch, source)  # (B, 1, 1, S)
        self_mask = key_padding_mask(decoder_attention_mask, batch, length,
                                     "decoder_attention_mask")  # (B, 1, 1, past + T)
        return self.decoder(
            self.embed(decoder_input_ids, offset=past), memory, mask=self_mask,
            memory_mask=memory_mask, cache=cache, output_attentions=output_attentions,
        )

    def new_cache(self, max_length: int | None = None) -> DecoderCache:
        """An empty cache for incremental decoding with `decode`; `max_length` preallocates
        the self-attention caches for that many target positions (None: they grow)."""
        return DecoderCache.empty(len(self.decoder.layers), max_length)

