"""Mixtral (Jiang et al. 2024, "Mixtral of Experts"): LLaMA / Mistral's decoder with every
feed-forward replaced by a sparse mixture of 8 SwiGLU experts, each token sent to the top 2 of
a linear router's softmax, their probabilities renormalised to sum to 1, no token dropped.

The architecture is `models/llama.py` with `moe` set (nn/moe.py does the routing); this file
holds Mixtral's defaults, those of transformers' `MixtralConfig` (rope theta 1e6, RMSNorm eps
1e-5, 8 key/value heads, 14336-wide experts, a 131072-position window, the load-balancing loss
weighted 0.001 as its `router_aux_loss_coef`). Folders of transformers' MixtralForCausalLM
load both ways (`io/hf/mixtral.py`).

    model = build_model("mixtral-tiny")
    out = model(input_ids, attention_mask=mask, labels=input_ids)
    out.loss, out.lm_loss, out.aux_loss, out.expert_load   # (L, E) share per expert
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from attnlab.errors import ConfigError
from attnlab.models.llama import Llama, LlamaConfig
from attnlab.nn.moe import MoEConfig


def mixtral_moe() -> MoEConfig:
    """transformers' MixtralConfig defaults: num_local_experts 8, num_experts_per_tok 2,
    router_aux_loss_coef 0.001, router_jitter_noise 0 (no capacity, renormalised top 2)."""
    return MoEConfig(experts=8, top_k=2, aux_loss_coef=0.001)


@dataclass(frozen=True)
class MixtralConfig(LlamaConfig):
    """Hyperparameters of a Mixtral decoder (defaults: transformers' MixtralConfig, whose
    sizes are Mixtral 8x7B's)."""

    model_type: ClassVar[str] = "mixtral"

    max_seq_len: int = 4096 * 32
    d_ff: int = 14336  # each expert's width
    n_kv_heads: int | None = 8
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1e6
    moe: MoEConfig | None = field(default_factory=mixtral_moe)  # a dict: over these defaults

    def __post_init__(self) -> None:
        if isinstance(self.moe, Mapping):
            object.__setattr__(self, "moe", {**asdict(mixtral_moe()), **self.moe})
        super().__post_init__()
        if self.moe is None:
            raise ConfigError("moe: Mixtral's feed-forwards are mixtures of experts; give an "
                              "object of MoE settings (or use a llama preset), got None")


class Mixtral(Llama):
    """forward(input_ids, attention_mask=None, labels=None) -> CausalLMOutput with the
    router logits, load-balancing loss and expert load."""

    config_class = MixtralConfig


__all__ = ["Mixtral", "MixtralConfig", "mixtral_moe"]
