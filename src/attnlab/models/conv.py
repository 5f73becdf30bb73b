"""Convolutional encoder-decoder (Gehring et al., 2017, "Convolutional Sequence to Sequence
Learning", ConvS2S), the CNN baseline under the encoder-decoder Transformer's interfaces.

Token + learned position embeddings (sec. 3.1); 1-D convolutions with gated linear units and
residuals scaled by sqrt(0.5) (secs. 3.2, 3.4); causal decoder convolutions (k - 1 positions of
left padding), each decoder layer with its own multi-step attention (sec. 3.3): d_i = W_d h_i +
b_d + g_i, scores against the encoder outputs z, context from z + e scaled by m * sqrt(1/m).
Initialisation of sec. 3.5, encoder gradients scaled by the number of attentions, dropout on
embeddings, conv inputs and decoder output. The sqrt(0.5) on d_i, on z + e and on h + c follow
the authors' fairseq `fconv.py`. Left out: weight normalisation, per-layer widths.

`encode(...).last_hidden_state` is cat([z, (z + e) * sqrt(0.5)], -1) of width 2 * d_model: the
attention keys and values in the one tensor greedy and beam search pass around (and repeat per
beam). Source padding is zeroed before every encoder convolution and masked in the attention,
so right padding never changes a row's outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.common import check_attention_mask, check_input_ids, check_positive_ints
from attnlab.models.seq2seq import EncoderDecoderModel
from attnlab.nn.position import POSITION

SQRT_HALF = math.sqrt(0.5)  # keeps the variance of a sum of two unit-variance terms (sec. 3.4)
EMBED_STD = 0.1  # N(0, 0.1) for token and position embeddings (sec. 3.5)


@dataclass(frozen=True)
class ConvS2SConfig:
    """Hyperparameters of ConvS2S (defaults: the paper's WMT'16 En-Ro model, fairseq
    `fconv_wmt_en_ro`: 20 + 20 layers of 512 channels, kernel 3, embeddings 512)."""

    model_type: ClassVar[str] = "convs2s"

    vocab_size: int = 40000
    d_model: int = 512  # embedding width f: tokens, positions, z, attention, decoder output
    d_hidden: int = 512  # convolution channels d
    n_layers: int = 20  # encoder blocks
    n_decoder_layers: int | None = None  # default: n_layers
    kernel_size: int = 3
    dropout: float = 0.1  # embeddings, every conv input, decoder output (fairseq default)
    max_seq_len: int = 1024
    tie_embeddings: bool = False  # one table for source, target and output (the paper: three)
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.n_decoder_layers is None:
            object.__setattr__(self, "n_decoder_layers", self.n_layers)
        check_positive_ints(self, ("vocab_size", "d_model", "d_hidden", "n_layers",
                                   "n_decoder_layers", "kernel_size", "max_seq_len"))
        value = self.dropout
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value, V = getattr(self, name), self.vocab_size
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < V:
                raise ValueError(f"{name} must be an int in [0, vocab_size={V}), got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}")

    @property
    def decoder_start_token_id(self) -> int:
        return self.bos_token_id


@dataclass
class ConvOutput:
    """Encoder: last_hidden_state (B, S, 2D) = [z, (z + e) * sqrt(0.5)]. Decoder:
    last_hidden_state (B, T, D) for lm_head, cross_attentions per layer (B, 1, T, S), cache."""

    last_hidden_state: Tensor
    cross_attentions: tuple[Tensor, ...] | None = None
    cache: ConvDecoderCache | None = None


@dataclass
class ConvDecoderCache:
    """Incremental decoding state: per decoder layer the last kernel_size - 1 inputs of its
    convolution (B, k - 1, d_hidden), None before the first step; `length` positions decoded."""

    states: list[Tensor | None]
    length: int = 0

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search: keep the surviving hypotheses' histories)."""
        self.states = [None if s is None else s.index_select(0, index) for s in self.states]


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity forward (exactly), gradient multiplied by `factor` backward."""
    return x.detach() + (x - x.detach()) * factor


class ConvStack(nn.Module):
    """What encoder and decoder share: token + learned position embeddings (sec. 3.1), fc1
    from the embedding width D to the conv width H, n convolutions H -> 2H (GLU), fc2 H -> D."""

    def __init__(self, config: ConvS2SConfig, n_layers: int) -> None:
        super().__init__()
        c = config
        self.tokens = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.positions = POSITION.build("learned", d_model=c.d_model, n_heads=1,
                                        max_seq_len=c.max_seq_len, init_std=EMBED_STD)
        self.fc1 = nn.Linear(c.d_model, c.d_hidden)
        self.convs = nn.ModuleList(nn.Conv1d(c.d_hidden, 2 * c.d_hidden, c.kernel_size)
                                   for _ in range(n_layers))
        self.fc2 = nn.Linear(c.d_hidden, c.d_model)
        self.dropout = nn.Dropout(c.dropout)

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        """e = dropout(w + p): (B, T) -> (B, T, D)."""
        positions = torch.arange(offset, offset + ids.size(1), device=ids.device)  # (T,)
        return self.dropout(self.tokens(ids) + self.positions(positions))  # (B, T, D)


class MultiStepAttention(nn.Module):
    """One decoder layer's attention (sec. 3.3): d_i = (W_d h_i + b_d + g_i) * sqrt(0.5),
    a_ij = softmax_j(d_i . z_j), c_i = sqrt(m) * sum_j a_ij v_j over the m real source positions,
    output (h_i + W_o c_i + b_o) * sqrt(0.5)."""

    def __init__(self, d_hidden: int, d_model: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_hidden, d_model)
        self.out_proj = nn.Linear(d_model, d_hidden)

    def forward(self, h: Tensor, g: Tensor, keys: Tensor, values: Tensor,
                mask: Tensor) -> tuple[Tensor, Tensor]:
        d = (self.in_proj(h) + g) * SQRT_HALF  # (B, T, D)
        scores = (d @ keys.transpose(1, 2)).masked_fill(~mask[:, None], -math.inf)  # (B, T, S)
        weights = scores.softmax(-1).masked_fill(~mask[:, None], 0.0)  # no source: zeros
        # m * sqrt(1/m) = sqrt(m) over the m real source positions: a sum of m values' variance
        # if the attention were uniform.
        m = mask.sum(-1).to(h.dtype).clamp(min=1)  # (B,)
        context = (weights @ values) * m.sqrt()[:, None, None]  # (B, T, D)
        return (h + self.out_proj(context)) * SQRT_HALF, weights  # (B, T, H), (B, T, S)


def glu_conv(conv: nn.Conv1d, x: Tensor, left: int, right: int) -> Tensor:
    """Zero-padded convolution to 2 * d_hidden channels, then GLU: (B, T, H) -> (B, T', H)."""
    x = F.pad(x.transpose(1, 2), (left, right))  # (B, H, left + T + right)
    return F.glu(conv(x), dim=1).transpose(1, 2)  # (B, T + left + right - k + 1, H)


class ConvEncoder(ConvStack):
    """Encoder: e -> fc1 -> [dropout -> conv -> GLU, + residual, * sqrt(0.5)] x N -> fc2 = z."""

    def __init__(self, config: ConvS2SConfig) -> None:
        super().__init__(config, config.n_layers)
        # Every decoder attention sends gradient into z (sec. 3.4); fairseq's 1 / (2 * n).
        self.grad_scale = 1.0 / (2.0 * config.n_decoder_layers)

    def forward(self, ids: Tensor, mask: Tensor | None) -> ConvOutput:
        e = self.embed(ids)  # (B, S, D)
        x = self.fc1(e)  # (B, S, H)
        for conv in self.convs:
            residual, k = x, conv.kernel_size[0]
            if mask is not None:  # padding reads as the zeros past the sentence end
                x = x.masked_fill(~mask[..., None], 0.0)  # (B, S, H)
            x = glu_conv(conv, self.dropout(x), (k - 1) // 2, k // 2)  # (B, S, H)
            x = (x + residual) * SQRT_HALF  # (B, S, H)
        z = self.fc2(x)  # (B, S, D)
        if mask is not None:
            z = z.masked_fill(~mask[..., None], 0.0)  # (B, S, D)
        z = scale_grad(z, self.grad_scale)  # source embeddings e keep their full gradient
        return ConvOutput(torch.cat([z, (z + e) * SQRT_HALF], dim=-1))  # (B, S, 2D)


class ConvDecoder(ConvStack):
    """Decoder: g -> fc1 -> [dropout -> causal conv -> GLU -> attention, + residual,
    * sqrt(0.5)] x N -> fc2 -> dropout: (B, T, D) for the output projection."""

    def __init__(self, config: ConvS2SConfig) -> None:
        super().__init__(config, config.n_decoder_layers)
        self.attentions = nn.ModuleList(MultiStepAttention(config.d_hidden, config.d_model)
                                        for _ in range(config.n_decoder_layers))

    def forward(self, ids: Tensor, memory: Tensor, mask: Tensor,
                cache: ConvDecoderCache | None, output_attentions: bool) -> ConvOutput:
        past = 0 if cache is None else cache.length
        g = self.embed(ids, offset=past)  # (B, T, D)
        keys, values = memory.chunk(2, dim=-1)  # (B, S, D) each
        x = self.fc1(g)  # (B, T, H)
        weights = []
        for i, (conv, attention) in enumerate(zip(self.convs, self.attentions, strict=True)):
            residual, x, k = x, self.dropout(x), conv.kernel_size[0]
            if cache is not None:  # the cached inputs replace the zero left padding
                state = cache.states[i]
                x = x if state is None else torch.cat([state, x], dim=1)  # (B, k-1 + T, H)
                cache.states[i] = F.pad(x, (0, 0, k - 1, 0))[:, x.size(1):]  # (B, k - 1, H)
                x = glu_conv(conv, x, k - 1 if state is None else 0, 0)  # (B, T, H)
            else:
                x = glu_conv(conv, x, k - 1, 0)  # (B, T, H): position i sees i-k+1 .. i
            x, a = attention(x, g, keys, values, mask)  # (B, T, H), (B, T, S)
            x = (x + residual) * SQRT_HALF  # (B, T, H)
            weights.append(a[:, None])  # (B, 1, T, S)
        if cache is not None:
            cache.length = past + ids.size(1)
        h = self.dropout(self.fc2(x))  # (B, T, D)
        return ConvOutput(h, tuple(weights) if output_attentions else None, cache)


class ConvS2S(EncoderDecoderModel):
    """ConvS2S. forward(input_ids, decoder_input_ids, attention_mask, decoder_attention_mask,
    labels) -> Seq2SeqOutput(logits (B, T, V), loss); encode / decode / lm_head / new_cache for
    greedy and beam search."""

    config_class = ConvS2SConfig

    def __init__(self, config: ConvS2SConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder, self.decoder = ConvEncoder(c), ConvDecoder(c)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size)
        self.reset_parameters()
        if c.tie_embeddings:
            self.decoder.tokens.weight = self.lm_head.weight = self.encoder.tokens.weight

    def reset_parameters(self) -> None:
        """Sec. 3.5: embeddings N(0, 0.1); a layer with n inputs N(0, sqrt(1/n)), the variance
        times 4 for the convolutions feeding a GLU (its output keeps about a quarter of it) and
        times the retention probability 1 - dropout where the input was dropped out; zero biases
        and padding rows."""
        keep = 1.0 - self.config.dropout
        dropped = {self.encoder.fc1, self.decoder.fc1, self.lm_head}
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                n = module.in_channels * module.kernel_size[0]
                nn.init.normal_(module.weight, std=math.sqrt(4.0 * keep / n))
            elif isinstance(module, nn.Linear):
                gain = keep if module in dropped else 1.0
                nn.init.normal_(module.weight, std=math.sqrt(gain / module.in_features))
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=EMBED_STD)
            if isinstance(module, nn.Conv1d | nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for stack in (self.encoder, self.decoder):
                stack.tokens.weight[self.config.pad_token_id].zero_()

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               output_attentions: bool = False) -> ConvOutput:
        """input_ids (B, S) -> ConvOutput(last_hidden_state (B, S, 2D) = [z, z + e])."""
        check_input_ids(input_ids, self.config, "input_ids")
        return self.encoder(input_ids, self._source_mask(attention_mask, input_ids.shape))

    def decode(self, decoder_input_ids: Tensor, memory: Tensor, *,
               attention_mask: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
               cache: ConvDecoderCache | None = None, output_attentions: bool = False,
               ) -> ConvOutput:
        """Run the decoder on new target ids (B, T) after `cache.length` cached positions.

        `decoder_attention_mask` is accepted for the shared interface and unused: causal
        convolutions never let right padding reach an earlier position."""
        past = 0 if cache is None else cache.length
        check_input_ids(decoder_input_ids, self.config, "decoder_input_ids", offset=past)
        if memory.dim() != 3 or memory.size(-1) != 2 * self.config.d_model:
            raise ValueError(f"memory must be encode(...).last_hidden_state (B, S, 2 * d_model="
                             f"{2 * self.config.d_model}), got {tuple(memory.shape)}")
        mask = self._source_mask(attention_mask, memory.shape[:2])
        if mask is None:
            mask = memory.new_ones(memory.shape[:2], dtype=torch.bool)  # (B, S)
        return self.decoder(decoder_input_ids, memory, mask, cache, output_attentions)

    def new_cache(self) -> ConvDecoderCache:
        """An empty cache for incremental decoding with `decode`."""
        return ConvDecoderCache([None] * len(self.decoder.convs))

    @staticmethod
    def _source_mask(attention_mask: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
        """(B, S) bool, True on real source tokens; None when there is no padding."""
        if attention_mask is None:
            return None
        check_attention_mask(attention_mask, *shape)
        return attention_mask.bool()


# Presets: name -> (config values, source). Parameter counts measured with num_parameters().
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    # 20 + 20 layers of 512, kernel 3, 512-d embeddings: 137,040,960 params at vocab 40000.
    "convs2s-wmt-en-ro": (
        dict(d_model=512, d_hidden=512, n_layers=20, kernel_size=3, dropout=0.1),
        "Gehring et al. 2017, WMT'16 En-Ro (fairseq fconv_wmt_en_ro)",
    ),
    # 1,206,432 params at vocab_size 4000 (transformer-mini: 1,239,936; -2.7%).
    "convs2s-mini": (
        dict(d_model=128, d_hidden=128, n_layers=3, n_decoder_layers=2, kernel_size=3,
             dropout=0.0, tie_embeddings=True, max_seq_len=256),
        "attnlab CPU demo size: transformer-mini's width, embedding sharing and no dropout",
    ),
    # 6,411,168 params at vocab_size 4000 (transformer-small: 6,553,600; -2.2%).
    "convs2s-small": (
        dict(d_model=256, d_hidden=256, n_layers=6, n_decoder_layers=5, kernel_size=3,
             dropout=0.1, tie_embeddings=True, max_seq_len=256),
        "fairseq fconv_iwslt_de_en widths (256, kernel 3), depth raised to transformer-small",
    ),
    # 357,864 params (three separate embedding tables, as in the paper).
    "convs2s-tiny": (
        dict(vocab_size=1000, d_model=64, d_hidden=64, n_layers=2, kernel_size=3, dropout=0.1,
             max_seq_len=256),
        "attnlab test size (< 1M params)",
    ),
}
