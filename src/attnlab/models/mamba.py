"""Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"): a
decoder-only language model whose layers are selective state-space mixers (nn/mixers/mamba.py)
and nothing else: no attention, no feed-forward, no positions.

    ids (B, T) -> embedding (B, T, D)
      -> n_layers x (x = x + MambaMixer(RMSNorm(x)))
      -> RMSNorm -> lm head (tied to the embedding) -> logits (B, T, V)

Generation keeps one fixed-size RecurrentState per layer (the conv window and the SSM state),
so its memory does not grow with the context. Weights and configs map one to one onto Hugging
Face's MambaForCausalLM (io/hf/mamba.py).

    model = build_model("mamba-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM
from attnlab.models.common import check_positive_ints, check_token_ids
from attnlab.nn.block import LayerOutput
from attnlab.nn.cache import DecoderLayerCache
from attnlab.nn.mixers import MIXER
from attnlab.nn.norm import NORM
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class MambaConfig:
    """Hyperparameters of a Mamba language model (defaults: state-spaces/mamba-130m)."""

    model_type: ClassVar[str] = "mamba"

    vocab_size: int = 50280
    d_model: int = 768
    n_layers: int = 24
    d_state: int = 16  # N, states per inner channel
    d_conv: int = 4  # kernel of the causal depthwise convolution
    expand: int = 2  # inner channels E = expand * d_model
    dt_rank: int | str = "auto"  # rank of Delta's projection; "auto" = ceil(d_model / 16)
    rms_norm_eps: float = 1e-5
    use_bias: bool = False  # biases on in_proj / out_proj
    conv_bias: bool = True
    dt_min: float = 0.001  # Delta's initial range (log-uniform), and its floor
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    form: str = "recurrent"  # the mixers' scan over a multi-token input: or "chunkwise"
    chunk_size: int = 2  # positions per chunk of the chunkwise scan
    tie_embeddings: bool = True
    max_seq_len: int = 2**20  # no positions: only the bound of io/limits
    init_std: float = 0.02  # the embedding's N(0, init_std)
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0
    pad_token_id: int | None = 0

    def __post_init__(self) -> None:
        check_positive_ints(self, ("vocab_size", "max_seq_len", "d_model", "n_layers", "d_state",
                                   "d_conv", "expand", "chunk_size"))
        if self.dt_rank != "auto" and (isinstance(self.dt_rank, bool)
                                       or not isinstance(self.dt_rank, int) or self.dt_rank <= 0):
            raise ValueError(f"dt_rank must be 'auto' or a positive integer, got "
                             f"{self.dt_rank!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got "
                             f"dt_min={self.dt_min!r}, dt_max={self.dt_max!r}")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")
        forms = MIXER.get("mamba").forms
        if self.form not in forms:
            raise ValueError(f"form must be one of {forms}, got {self.form!r}")
        check_token_ids(self)

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def time_step_rank(self) -> int:
        """dt_rank resolved ("auto" = ceil(d_model / 16))."""
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)


class MambaLayer(nn.Module):
    """x + mixer(norm(x)): Mamba's residual block (no feed-forward), called as a DecoderLayer."""

    def __init__(self, norm: nn.Module, mixer: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.mixer = mixer

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None,
                memory_mask: Tensor | None = None, cache: DecoderLayerCache | None = None,
                bias: Tensor | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False) -> LayerOutput:
        """x (B, T, D) -> LayerOutput((B, T, D), None, None); mask (B, 1, 1, past + T)."""
        if memory is not None:
            raise ValueError("MambaLayer has no cross-attention (memory must be None)")
        out = self.mixer(self.norm(x), mask=mask, causal=True, bias=bias,
                         cache=None if cache is None else cache.self_attn,
                         position_ids=position_ids, need_weights=need_weights)
        return LayerOutput(x + out.output, None, None)


class Mamba(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None) -> CausalLMOutput; generation keeps
    a RecurrentState per layer (`new_cache`)."""

    config_class = MambaConfig
    recurrent = True

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        self.decoder = Decoder([MambaLayer(self._norm(), self._mixer())
                                for _ in range(c.n_layers)], final_norm=self._norm())
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _norm(self) -> nn.Module:
        return NORM.build("rms", d_model=self.config.d_model, eps=self.config.rms_norm_eps)

    def _mixer(self) -> nn.Module:
        c = self.config
        return MIXER.build("mamba", d_model=c.d_model, d_state=c.d_state, d_conv=c.d_conv,
                           expand=c.expand, dt_rank=c.dt_rank, use_bias=c.use_bias,
                           conv_bias=c.conv_bias, chunk_size=c.chunk_size, dt_min=c.dt_min,
                           dt_max=c.dt_max, dt_init_floor=c.dt_init_floor, form=c.form)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """As the reference implementation (mamba_ssm) initialises a Mamba LM: each mixer its
        own way (MambaMixer.reset_parameters: A = -(1 .. N), D = 1, Delta's bias from
        [dt_min, dt_max], PyTorch's default for the projections and the convolution), the
        embedding (and an untied head) N(0, init_std), norms ones, and every out_proj divided
        by sqrt(n_layers) (GPT-2's scaling of the layers that write into the residual stream;
        mamba_ssm's rescale_prenorm_residual)."""
        nn.init.normal_(self.embed_tokens.weight, std=self.config.init_std)
        nn.init.normal_(self.lm_head.weight, std=self.config.init_std)
        for layer in self.decoder.layers:
            layer.mixer.reset_parameters()
            layer.mixer.out_proj.weight.div_(math.sqrt(self.config.n_layers))

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token embeddings only: Mamba has no positions (its recurrence orders the tokens)."""
        return self.embed_tokens(input_ids)
