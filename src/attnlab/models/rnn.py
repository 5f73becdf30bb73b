"""RNN encoder-decoders, the baselines the Transformer replaced, under its interfaces.

`RNNConfig.attention` picks the paper; everything else is shared by one class, `RNNSeq2Seq`:
- "none": Sutskever, Vinyals and Le, 2014, "Sequence to Sequence Learning with Neural Networks":
  the whole source squeezed into the final encoder state, read reversed (`reverse_source`).
- "additive": Bahdanau, Cho and Bengio, 2014, "Neural Machine Translation by Jointly Learning to
  Align and Translate": bidirectional encoder; s_{i-1} attends (ATTENTION "additive"),
  s_i = f(s_{i-1}, y_{i-1}, c_i), deep output t_i = maxout(U_o s_i + V_o E y_{i-1} + C_o c_i).
- "dot" / "general": Luong, Pham and Manning, 2015, "Effective Approaches to Attention-based
  Neural Machine Translation": h_t attends (ATTENTION "multiplicative"); h~_t = tanh(W_c [c_t; h_t])
  feeds the softmax and, with `input_feeding`, the next input.

Deviations, each made to fit the shared encoder-decoder interface:
- Greedy and beam search hand `decode` only the encoder output, not the encoder's per-layer
  final (h, c), so every decoder layer starts from h_0 = tanh(W_init summary): Bahdanau's
  s_0 = tanh(W_s h<-_1) (backward state at the first position) for a bidirectional encoder,
  else the output at the last position the encoder read. Sutskever and Luong copy each
  encoder layer's (h, c) instead. LSTM cell states start at zero.
- One joint BPE vocabulary: source and target share an embedding, tied to the output layer, as
  in our Transformer (the papers had two vocabularies); embedding width = d_model.
- The registered additive attention projects the 2D-wide context to D (`out_proj`); the
  recurrence and the deep output read that projected context.
- Bahdanau's output reads s_i as in eq. 4 (Appendix A.2.2 writes s_{i-1}).
- Any cell with any variant (the papers: LSTM for Sutskever and Luong, GRU for Bahdanau).
- Weights uniform in [-r, r], r = 0.1 * sqrt(1000 / d_model): Luong's 0.1 at the papers' 1000
  units, widened at our smaller widths to keep its pre-activation variance (at 64 units, 0.1
  left the LSTM variants far slower to fit a few pairs). Dropout on embeddings, between layers
  and before the softmax (Zaremba et al., 2014, as Luong).
Source padding must be on the right (as `data.batching.collate` makes it): the encoder packs
rows, so padding never changes a row. The left-to-right decoder reads no right target padding
before a real position, so `decoder_attention_mask` is accepted and unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.models.common import (
    check_attention_mask,
    check_input_ids,
    check_positive_ints,
    check_token_ids,
    key_padding_mask,
)
from attnlab.models.seq2seq import EncoderDecoderModel
from attnlab.nn.attention import ATTENTION
from attnlab.nn.cache import KVCache
from attnlab.nn.functional import padding_mask
from attnlab.nn.stack import DecoderOutput, EncoderOutput

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
ATTENTIONS = ("none", "additive", "dot", "general")


@dataclass(frozen=True)
class RNNConfig:
    """Hyperparameters of the RNN encoder-decoder (defaults: the papers' 4 x 1000 units)."""

    model_type: ClassVar[str] = "rnn"

    vocab_size: int = 37000
    d_model: int = 1000  # hidden units per layer and direction; also the embedding width
    n_layers: int = 4  # encoder layers, and as many decoder layers
    cell: str = "lstm"  # "lstm" or "gru"
    attention: str = "general"  # "none" (Sutskever), "additive" (Bahdanau), "dot" / "general"
    bidirectional: bool | None = None  # encoder; default True for "additive", else False
    input_feeding: bool = False  # Luong sec. 3.3; "dot" / "general" only
    reverse_source: bool = False  # Sutskever sec. 3.3; unidirectional encoders only
    dropout: float = 0.0
    init_range: float | None = None  # uniform init; default 0.1 * sqrt(1000 / d_model)
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.bidirectional is None:
            object.__setattr__(self, "bidirectional", self.attention == "additive")
        if self.init_range is None and isinstance(self.d_model, int) and self.d_model > 0:
            object.__setattr__(self, "init_range", 0.1 * math.sqrt(1000 / self.d_model))
        check_positive_ints(self, ("vocab_size", "d_model", "n_layers", "max_seq_len"))
        for name, allowed in (("cell", tuple(CELLS)), ("attention", ATTENTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("bidirectional", "input_feeding", "reverse_source", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for bad, why in (
            (self.input_feeding and self.attention not in ("dot", "general"),
             f"input_feeding needs attention 'dot' or 'general', got {self.attention!r}"),
            (self.reverse_source and self.bidirectional,
             "reverse_source needs bidirectional=False, got True (it reads both ways already)"),
            (self.attention == "dot" and self.bidirectional,
             "attention='dot' needs bidirectional=False (2D-wide keys), got True; use 'general'"),
            (not (isinstance(self.init_range, float | int) and self.init_range > 0),
             f"init_range must be a positive number, got {self.init_range!r}"),
        ):
            if bad:
                raise ValueError(why)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_token_ids(self, ("pad_token_id", "bos_token_id", "eos_token_id"))

    @property
    def decoder_start_token_id(self) -> int:
        return self.bos_token_id


@dataclass
class RNNCache:
    """The decoder's recurrent state after `length` target positions; `decode` fills it on the
    first call (from the encoder output) and advances it in place."""

    hidden: Tensor | None = None  # (L, B, D) h of every layer
    cell: Tensor | None = None  # (L, B, D) LSTM cell states
    feed: Tensor | None = None  # (B, 1, D) last attentional state h~ (input feeding)
    keys: KVCache = field(default_factory=lambda: KVCache(cross=True))  # encoder keys, once
    length: int = 0

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search: follow the surviving hypotheses)."""
        for name, dim in (("hidden", 1), ("cell", 1), ("feed", 0)):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(dim, index))
        self.keys.reorder(index)


def source_lengths(attention_mask: Tensor | None, shape: tuple[int, int]) -> Tensor | None:
    """Real lengths (B,) of a right-padded (B, S) mask; None when there is no mask."""
    if attention_mask is None:
        return None
    check_attention_mask(attention_mask, *shape)
    real = padding_mask(attention_mask)[:, 0, 0]  # (B, S) bool; checks the dtype
    lengths = real.sum(-1)  # (B,)
    if bool((lengths == 0).any()):
        raise ValueError("attention_mask: every row needs at least one real token")
    if not torch.equal(real, torch.arange(shape[1], device=real.device) < lengths[:, None]):
        raise ValueError("attention_mask must be right padding (1s, then 0s) for an RNN encoder")
    return lengths


def reverse_rows(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each row's real positions (B, S, ...), leaving right padding in place."""
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.size(1), device=x.device)  # (S,)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, S)
    return x.gather(1, index.view(*index.shape, 1).expand_as(x))  # (B, S, D)


class RNNSeq2Seq(EncoderDecoderModel):
    """RNN encoder-decoder. forward(input_ids, decoder_input_ids, attention_mask,
    decoder_attention_mask, labels) -> Seq2SeqOutput(logits (B, T, V), loss)."""

    config_class = RNNConfig

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = c = config
        D, L, rnn = c.d_model, c.n_layers, CELLS[c.cell]
        self.d_memory = 2 * D if c.bidirectional else D
        between = c.dropout if L > 1 else 0.0  # torch applies it between layers only
        self.embed_tokens = nn.Embedding(c.vocab_size, D, padding_idx=c.pad_token_id)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = rnn(D, D, L, batch_first=True, dropout=between,
                           bidirectional=c.bidirectional)
        self.bridge = nn.Linear(D, L * D)  # W_init (Bahdanau's W_s), one D block per layer
        extra = D if c.attention == "additive" or c.input_feeding else 0  # c_i or h~_{t-1}
        self.decoder = rnn(D + extra, D, L, batch_first=True, dropout=between)
        self.attention = None
        if c.attention == "additive":
            self.attention = ATTENTION.build("additive", d_model=D, d_context=self.d_memory)
            self.deep_output = nn.Linear(3 * D, 2 * D)  # [U_o V_o C_o], maxout of 2 units
        elif c.attention != "none":
            self.attention = ATTENTION.build("multiplicative", d_model=D, score=c.attention,
                                             d_context=self.d_memory)
            self.combine = nn.Linear(2 * D, D, bias=False)  # W_c
        self.lm_head = nn.Linear(D, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        """Every weight uniform in [-init_range, init_range]; the padding embedding is zero."""
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -self.config.init_range, self.config.init_range)
        with torch.no_grad():
            self.embed_tokens.weight[self.config.pad_token_id].zero_()

    # -- encoder ------------------------------------------------------------------------------

    def encode(
        self, input_ids: Tensor, attention_mask: Tensor | None = None,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """input_ids (B, S) -> EncoderOutput(last_hidden_state (B, S, D_mem)), zeros on padding;
        D_mem = 2D for a bidirectional encoder ([forward; backward] annotations), else D."""
        check_input_ids(input_ids, self.config, "input_ids")
        B, S = input_ids.shape
        lengths = source_lengths(attention_mask, (B, S))  # (B,) or None
        x = self.dropout(self.embed_tokens(input_ids))  # (B, S, D)
        if self.config.reverse_source:
            x = reverse_rows(x, lengths)
        if lengths is None:
            out = self.encoder(x)[0]  # (B, S, D_mem)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out = pad_packed_sequence(self.encoder(packed)[0], batch_first=True,
                                      total_length=S)[0]  # (B, S, D_mem)
        if self.config.reverse_source:
            out = reverse_rows(out, lengths)  # back to source order, so attention maps align
        return EncoderOutput(out)

    # -- decoder ------------------------------------------------------------------------------

    def _start(self, memory: Tensor, attention_mask: Tensor | None, cache: RNNCache) -> None:
        """Fill an empty cache with the initial state h_0 = tanh(W_init summary)."""
        c, D = self.config, self.config.d_model
        B, S, _ = memory.shape
        lengths = source_lengths(attention_mask, (B, S))
        if c.bidirectional:
            summary = memory[:, 0, D:]  # (B, D) backward state at position 1 (Bahdanau's h<-_1)
        elif c.reverse_source or lengths is None:
            summary = memory[:, 0 if c.reverse_source else -1]  # (B, D) last position read
        else:
            summary = memory[torch.arange(B, device=memory.device), lengths - 1]  # (B, D)
        h0 = torch.tanh(self.bridge(summary)).view(B, c.n_layers, D)  # (B, L, D)
        cache.hidden = h0.transpose(0, 1).contiguous()  # (L, B, D)
        cache.cell = torch.zeros_like(cache.hidden) if c.cell == "lstm" else None
        cache.feed = memory.new_zeros(B, 1, D) if c.input_feeding else None  # h~_0 = 0

    def _advance(
        self, x: Tensor, memory: Tensor | None, mask: Tensor | None, cache: RNNCache,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Run the decoder over embedded inputs x (B, T, D) from the state in `cache` and advance
        it; T = 1 for the variants whose next input depends on this output."""
        c, D = self.config, self.config.d_model
        state = cache.hidden if c.cell == "gru" else (cache.hidden, cache.cell)
        weights = None
        if c.attention == "additive":  # Bahdanau: attend from s_{i-1}, then update
            query = cache.hidden[-1].unsqueeze(1)  # (B, 1, D) top layer s_{i-1}
            att = self.attention(query, memory, mask=mask, cache=cache.keys,
                                 need_weights=need_weights)
            h, state = self.decoder(torch.cat([x, att.output], -1), state)  # (B, 1, D) s_i
            t = self.deep_output(torch.cat([h, x, att.output], -1))  # (B, 1, 2D)
            out, weights = t.unflatten(-1, (D, 2)).amax(-1), att.weights  # (B, 1, D) maxout
        else:  # Sutskever, or Luong: update, then attend from h_t
            inputs = x if cache.feed is None else torch.cat([x, cache.feed], -1)  # (B, T, D+)
            out, state = self.decoder(inputs, state)  # (B, T, D)
            if self.attention is not None:
                att = self.attention(out, memory, mask=mask, cache=cache.keys,
                                     need_weights=need_weights)
                out = torch.tanh(self.combine(torch.cat([att.output, out], -1)))  # (B, T, D) h~
                weights = att.weights  # (B, 1, T, S)
                if cache.feed is not None:
                    cache.feed = out
        cache.hidden, cache.cell = (state, None) if c.cell == "gru" else state
        return out, weights

    def decode(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor | None,
        *,
        attention_mask: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        cache: RNNCache | None = None,
        output_attentions: bool = False,
    ) -> DecoderOutput:
        """Run the decoder on new target ids (B, T) after `cache.length` decoded positions.
        An empty (or no) cache starts from `memory` (B, S, D_mem), the encoder output."""
        c = self.config
        work = RNNCache() if cache is None else cache
        check_input_ids(decoder_input_ids, c, "decoder_input_ids", offset=work.length)
        B, T = decoder_input_ids.shape
        if memory is not None and (memory.dim() != 3 or memory.size(0) != B
                                   or memory.size(-1) != self.d_memory):
            raise ValueError(f"memory must be (batch={B}, length, {self.d_memory}), "
                             f"got {tuple(memory.shape)}")
        if work.hidden is None:
            if memory is None:
                raise ValueError("memory (the encoder output) is needed to start decoding")
            self._start(memory, attention_mask, work)
        source = None if memory is None else memory.size(1)
        mask = key_padding_mask(attention_mask, B, source)  # (B, 1, 1, S)
        x = self.dropout(self.embed_tokens(decoder_input_ids))  # (B, T, D)
        stepwise = c.attention == "additive" or c.input_feeding
        steps = [self._advance(chunk, memory, mask, work, output_attentions)
                 for chunk in (x.split(1, dim=1) if stepwise else (x,))]
        work.length += T
        hidden = self.dropout(torch.cat([out for out, _ in steps], dim=1))  # (B, T, D)
        cross = None
        if output_attentions and self.attention is not None:
            cross = (torch.cat([weights for _, weights in steps], dim=2),)  # (B, 1, T, S)
        return DecoderOutput(hidden, cross_attentions=cross, cache=cache)

    def new_cache(self) -> RNNCache:
        """An empty decoder state for incremental decoding with `decode`."""
        return RNNCache()


PAPERS = {
    "none": "Sutskever et al. 2014: 4-layer LSTMs, 1000 units, reversed source, no attention",
    "additive": "Bahdanau et al. 2014 (RNNsearch): bidirectional GRU encoder, 1000 units",
    "general": "Luong et al. 2015: 4-layer LSTMs, 1000 units, reversed source, global 'general' "
               "attention, input feeding",
}


def _preset(attention: str, d_model: int, n_layers: int, **extra: Any) -> tuple[dict, str]:
    """The paper's cell and source order (Sutskever's reversal, kept by Luong; Bahdanau's GRU)
    at a smaller size."""
    cell, reverse = ("gru", False) if attention == "additive" else ("lstm", True)
    values = dict(attention=attention, cell=cell, d_model=d_model, n_layers=n_layers,
                  reverse_source=reverse, input_feeding=attention == "general", max_seq_len=256)
    return {**values, **extra}, f"{PAPERS[attention]}; here {n_layers} x {d_model} units"


# name -> (config values, source). "-tiny": < 1M params at vocab_size 1000 (tests); "-mini" /
# "-small" match "transformer-mini" (1,239,936) / "transformer-small" (6,553,600) at vocab_size
# 4000 within 5%. The comments give the measured counts at those vocabulary sizes.
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "rnn-sutskever-tiny": _preset("none", 64, 2, vocab_size=1000, dropout=0.1),  # 205,440
    "rnn-bahdanau-tiny": _preset("additive", 64, 1, vocab_size=1000, dropout=0.1),  # 200,704
    "rnn-luong-tiny": _preset("general", 64, 2, vocab_size=1000, dropout=0.1),  # 234,112
    "rnn-sutskever-mini": _preset("none", 144, 2),  # 1,285,920 (+3.7%)
    "rnn-bahdanau-mini": _preset("additive", 144, 1),  # 1,263,744 (+1.9%)
    "rnn-luong-mini": _preset("general", 128, 2),  # 1,188,096 (-4.2%)
    "rnn-sutskever-small": _preset("none", 280, 4, dropout=0.1),  # 6,470,240 (-1.3%)
    "rnn-bahdanau-small": _preset("additive", 392, 1, dropout=0.1),  # 6,648,320 (+1.4%)
    "rnn-luong-small": _preset("general", 272, 4, dropout=0.2),  # 6,655,296 (+1.6%)
}
