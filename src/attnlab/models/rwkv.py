"""RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era"): a decoder of
time-mix / channel-mix blocks, the model transformers implements as RwkvForCausalLM.

    embedding -> LayerNorm (pre_ln, layer 0 only)
      -> n_layers x (x + time_mix(LayerNorm(x)); x + channel_mix(LayerNorm(x)))
      -> LayerNorm (ln_out) -> head

Both mixes shift tokens (nn/mixers/rwkv.py), so a layer keeps a fixed-size RecurrentState
(the time mix's last input and WKV num / den / max, the channel mix's last input) in place of
keys and values: generation memory does not grow with the context. Training runs the WKV's
chunked parallel form; a one-token step with a state runs the recurrence.

`rescale_every` (transformers' option, 6 in the released checkpoints): in eval mode the hidden
state is halved after every `rescale_every`-th layer and each layer's two branch outputs are
scaled by 2^-(layer // rescale_every), as transformers does when it divides the output weights
in place on `eval()`. We scale the outputs instead (the same numbers: powers of two are exact),
so the weights are never changed and saving needs no undoing. It keeps fp16 inference of the
large checkpoints from overflowing; in training mode (and with rescale_every=0) there is no
rescaling. Every branch reads its input through a LayerNorm, so the logits are the same either
way up to the norms' eps.

    model = build_model("rwkv-tiny")
    out = model(input_ids, labels=input_ids)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM
from attnlab.models.common import check_positive_ints, check_token_ids
from attnlab.nn.block import LayerOutput
from attnlab.nn.cache import DecoderLayerCache
from attnlab.nn.mixers import token_mask
from attnlab.nn.mixers.rwkv import RwkvChannelMix, RwkvTimeMix
from attnlab.nn.stack import Decoder

LN_OUT_EPS = 1e-5  # transformers' (and RWKV-LM's) ln_out takes LayerNorm's default eps


@dataclass(frozen=True)
class RwkvConfig:
    """Hyperparameters of an RWKV-4 decoder (defaults: transformers' RwkvConfig, the 7B size)."""

    model_type: ClassVar[str] = "rwkv"

    vocab_size: int = 50277
    d_model: int = 4096
    n_layers: int = 32
    attention_hidden_size: int | None = None  # width of k, v and the WKV state; None = d_model
    d_ff: int | None = None  # the channel mix's key width (intermediate_size); None = 4 d_model
    layer_norm_eps: float = 1e-5
    rescale_every: int = 6  # eval-mode halving every k layers (module docstring); 0 = never
    chunk_size: int = 4  # positions per chunk of the WKV's parallel form (nn/mixers/rwkv.py)
    context_length: int = 1024  # the training context (transformers' CUDA-kernel bound); kept
    # for the Hugging Face layout, not a limit here: the state reads up to max_seq_len positions
    tie_embeddings: bool = False
    max_seq_len: int = 2**20
    init_std: float = 1e-4  # the embedding's std (small-init embedding; linears: 1/fan_in)
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.attention_hidden_size is None:
            object.__setattr__(self, "attention_hidden_size", self.d_model)
        if self.d_ff is None and isinstance(self.d_model, int):
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        check_positive_ints(self, ("vocab_size", "d_model", "n_layers", "attention_hidden_size",
                                   "d_ff", "chunk_size", "context_length", "max_seq_len"))
        if isinstance(self.rescale_every, bool) or not isinstance(self.rescale_every, int) \
                or self.rescale_every < 0:
            raise ValueError(f"rescale_every must be an integer >= 0 (0: never), got "
                             f"{self.rescale_every!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        check_token_ids(self)


class RwkvLayer(nn.Module):
    """One RWKV block: (layer 0: pre_ln) -> x + time mix(ln1(x)) -> x + channel mix(ln2(x)).
    Called as a Decoder layer; returns LayerOutput(hidden, None, None)."""

    def __init__(self, config: RwkvConfig, layer_id: int) -> None:
        super().__init__()
        c, D = config, config.d_model
        self.layer_id, self.rescale_every = layer_id, c.rescale_every
        self.pre_ln = nn.LayerNorm(D, eps=c.layer_norm_eps) if layer_id == 0 else None
        self.ln1 = nn.LayerNorm(D, eps=c.layer_norm_eps)
        self.ln2 = nn.LayerNorm(D, eps=c.layer_norm_eps)
        self.attention = RwkvTimeMix(D, c.attention_hidden_size, chunk_size=c.chunk_size,
                                     layer_id=layer_id, n_layers=c.n_layers)
        self.feed_forward = RwkvChannelMix(D, c.d_ff, layer_id=layer_id, n_layers=c.n_layers)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None,
                memory_mask: Tensor | None = None, bias: Tensor | None = None,
                cache: DecoderLayerCache | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False) -> LayerOutput:
        """x (B, T, D); mask (B, 1, 1, past + T) bool key-padding mask or None."""
        if memory is not None:
            raise ValueError("RwkvLayer is decoder-only: it takes no encoder memory")
        state = None if cache is None else cache.self_attn
        if self.pre_ln is not None:
            x = self.pre_ln(x)
        rescale = bool(self.rescale_every) and not self.training  # eval mode only
        scale = 2.0 ** -(self.layer_id // self.rescale_every) if rescale else 1.0
        mixed = self.attention(self.ln1(x), mask=mask, causal=True, cache=state,
                               need_weights=need_weights, bias=bias,
                               position_ids=position_ids).output
        x = x + (mixed * scale if scale != 1.0 else mixed)
        keep = token_mask(mask, x.size(0), x.size(1), type(self).__name__)
        mixed = self.feed_forward(self.ln2(x), keep, state)  # type: ignore[arg-type]
        x = x + (mixed * scale if scale != 1.0 else mixed)
        if rescale and (self.layer_id + 1) % self.rescale_every == 0:
            x = x / 2
        return LayerOutput(x, None, None)


class Rwkv(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None, cache=None) -> CausalLMOutput;
    `new_cache()` gives one RecurrentState per layer."""

    config_class = RwkvConfig
    recurrent: ClassVar[bool] = True

    def __init__(self, config: RwkvConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.decoder = Decoder([RwkvLayer(c, i) for i in range(c.n_layers)],
                               final_norm=nn.LayerNorm(c.d_model, eps=LN_OUT_EPS))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """RWKV's init (RWKV-LM's, which transformers' _init_weights follows), at the scale of
        its orthogonal matrices without their QR cost: linear weights N(0, 1/fan_in) (the head
        at half that std); the paper's small-init embedding N(0, init_std = 1e-4) unless tied,
        which pre_ln lifts, so the branches, not the embedding, drive a fresh model; the paper's
        depth-dependent decays, bonuses and token-shift mixes; LayerNorms at ones / zeros."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = module.in_features ** -0.5
                nn.init.normal_(module.weight, std=0.5 * std if module is self.lm_head else std)
        tied = self.config.tie_embeddings  # a tied embedding is the head: the head's std
        nn.init.normal_(self.embed_tokens.weight, std=0.5 * self.config.d_model ** -0.5 if tied
                        else self.config.init_std)
        for layer in self.decoder.layers:
            layer.attention.reset_time_parameters()
            layer.feed_forward.reset_time_parameters()

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token embeddings only: order enters through the token shift and the decays."""
        return self.embed_tokens(input_ids)
