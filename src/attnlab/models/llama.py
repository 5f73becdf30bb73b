"""LLaMA (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"): a
decoder-only Transformer from `attnlab.nn` blocks. Against GPT-2 it swaps LayerNorm for RMSNorm,
learned positions for rotary ones (RoPE, Su et al. 2021) applied to queries and keys, the GELU
MLP for SwiGLU (Shazeer 2020), drops every bias, and may share key/value heads across query
heads (grouped-query attention, Ainslie et al. 2023). Mistral- and Qwen2-style configs that
differ only in these settings (head counts, theta, tied head) load into the same class.
With `moe` set, the chosen layers' SwiGLU becomes a mixture of SwiGLU experts (nn/moe.py);
Mixtral (models/mixtral.py) is this class with Mixtral's defaults.

    model = build_model("llama-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from attnlab.models.causal_lm import CausalLM, check_decoder_config
from attnlab.models.common import init_moe_, init_normal_
from attnlab.nn.attention import ATTENTION
from attnlab.nn.block import DecoderLayer
from attnlab.nn.moe import MoEConfig, feed_forward, layer_moe
from attnlab.nn.norm import NORM
from attnlab.nn.position import POSITION
from attnlab.nn.stack import Decoder


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters of a LLaMA-style decoder (defaults: LLaMA-2 7B)."""

    model_type: ClassVar[str] = "llama"

    vocab_size: int = 32000
    max_seq_len: int = 4096
    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None  # None = n_heads (multi-head); fewer = grouped-query
    n_layers: int = 32
    d_ff: int = 11008
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False  # Qwen2 has q/k/v biases
    tie_embeddings: bool = False
    kernel: str = "sdpa"
    init_std: float = 0.02
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int | None = None
    moe: MoEConfig | None = None  # mixture-of-experts feed-forwards (a dict is coerced)

    def __post_init__(self) -> None:
        object.__setattr__(self, "moe", MoEConfig.coerce(self.moe))
        check_decoder_config(self)
        kv = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        if kv <= 0 or self.n_heads % kv:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({kv})")


class Llama(CausalLM):
    """forward(input_ids, attention_mask=None, labels=None) -> CausalLMOutput."""

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.d_model)
        rotary = POSITION.build("rope", d_model=c.d_model, n_heads=c.n_heads,
                                max_seq_len=c.max_seq_len, base=c.rope_theta)
        self.decoder = Decoder([self._layer(rotary, i) for i in range(c.n_layers)],
                               final_norm=self._norm())
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _norm(self) -> nn.Module:
        return NORM.build("rms", d_model=self.config.d_model, eps=self.config.rms_norm_eps)

    def _layer(self, rotary: nn.Module, i: int) -> DecoderLayer:
        c = self.config
        attention = ATTENTION.build("multi_head", d_model=c.d_model, n_heads=c.n_heads,
                                    n_kv_heads=c.n_kv_heads, bias=c.attention_bias,
                                    kernel=c.kernel, rotary=rotary)
        if c.attention_bias:  # Qwen2: biases on q, k, v only
            attention.out_proj.bias = None
        ffn = feed_forward("swiglu", c.d_model, c.d_ff, layer_moe(c.moe, i))
        return DecoderLayer(attention, None, ffn, self._norm(), None, self._norm(),
                            dropout=0.0, norm_first=True)

    def reset_parameters(self) -> None:
        """N(0, init_std) weights, routers and experts, zero biases (as Hugging Face
        initialises LLaMA and Mixtral)."""
        init_normal_(self, self.config.init_std)
        init_moe_(self, self.config.init_std)

    def embed(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Token embeddings only: positions enter as rotations of queries and keys."""
        return self.embed_tokens(input_ids)
