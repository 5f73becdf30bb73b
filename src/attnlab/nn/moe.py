"""Mixture-of-experts feed-forward layer: a router sends each token to k of E expert FFNs.

- Sparsely-gated MoE (Shazeer et al. 2017, "Outrageously Large Neural Networks"): top-k gating,
  optionally with learned Gaussian noise on the router logits while training (`router_noise`).
- Switch Transformer (Fedus, Zoph and Shazeer 2021): top-1 routing, an expert capacity of
  ceil(capacity_factor * N * k / E) token-assignments beyond which tokens are dropped (their
  FFN output is zero: the residual carries them), multiplicative jitter on the router input,
  the router in float32 ("selective precision"), and the load-balancing loss
  E * sum_i f_i * P_i (f_i: share of assignments to expert i, P_i: its mean router probability).
- Mixtral (Jiang et al. 2024, "Mixtral of Experts"): top-2 of 8 SwiGLU experts without
  dropping, the two selected probabilities renormalised to sum to 1.
- Router z-loss (Zoph et al. 2022, "ST-MoE"): mean over tokens of logsumexp(logits)^2.

The experts are evaluated per expert on the tokens routed to it, never per token: assignments
are sorted by expert and each projection is one grouped matmul over the sorted rows
(`torch.nn.functional.grouped_mm`, jagged groups by offsets), or with `dispatch="loop"` one
matmul per expert on its gathered rows (the reference; benchmarks/moe_dispatch.py compares).
Routing statistics come back in `MoEOutput.router`, never stored on the module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.nn.feedforward import ACTIVATIONS, FEEDFORWARD

DISPATCHES = ("grouped", "loop")
MAX_EXPERTS = 4096  # a bound on a typo like --set moe.experts=1000000000
GATED = {"swiglu": "silu", "geglu": "gelu"}  # FEEDFORWARD kind -> activation of its gate


@dataclass(frozen=True)
class MoEConfig:
    """How a model's MoE feed-forward layers route (a model config's `moe` field)."""

    experts: int = 8  # E
    top_k: int = 2  # k: 1 = Switch, 2 = Mixtral
    capacity_factor: float = 0.0  # 0 = no dropping; > 0: ceil(cf * N * k / E) per expert
    router_jitter: float = 0.0  # router input * U(1 - eps, 1 + eps) while training (Switch)
    router_noise: bool = False  # learned Gaussian noise on the logits while training (Shazeer)
    # The k selected probabilities renormalised to sum to 1 (Mixtral). Never with k = 1, where
    # every weight would be 1 and the router would get no gradient from the output (Switch).
    normalize_top_k: bool = True
    aux_loss_coef: float = 0.01  # weight of the load-balancing loss in the training loss
    z_loss_coef: float = 0.0  # weight of the router z-loss (ST-MoE uses 1e-3)
    every: int = 1  # layer i (0-based) is MoE when (i + 1) % every == 0 (Switch: 2)
    dispatch: str = "grouped"  # "grouped" matmuls over sorted rows, or "loop" per expert

    def __post_init__(self) -> None:
        for name in ("experts", "top_k", "every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"moe.{name} must be a positive integer, got {value!r}")
        if self.experts > MAX_EXPERTS:
            raise ConfigError(f"moe.experts must be at most {MAX_EXPERTS}, got {self.experts}")
        if self.top_k > self.experts:
            raise ConfigError(f"moe.top_k ({self.top_k}) must be at most moe.experts "
                              f"({self.experts})")
        for name in ("capacity_factor", "router_jitter", "aux_loss_coef", "z_loss_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"moe.{name} must be a number >= 0, got {value!r}")
        if not self.router_jitter < 1:
            raise ConfigError(f"moe.router_jitter must be below 1, got {self.router_jitter}")
        if self.dispatch not in DISPATCHES:
            raise ConfigError(f"moe.dispatch must be one of {DISPATCHES}, got {self.dispatch!r}")

    @classmethod
    def coerce(cls, value: MoEConfig | Mapping[str, Any] | None) -> MoEConfig | None:
        """None, a dict (a config.json's or `--set moe.experts=8`'s) or a MoEConfig."""
        if value is None or isinstance(value, MoEConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"moe must be an object of MoE settings or null, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown moe setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**value)

    def is_moe_layer(self, i: int) -> bool:
        return (i + 1) % self.every == 0

    def capacity(self, tokens: int) -> int | None:
        """Token-assignments one expert takes from a batch of `tokens`; None = unlimited."""
        if not self.capacity_factor:
            return None
        return math.ceil(self.capacity_factor * tokens * self.top_k / self.experts)


@dataclass
class RouterOutput:
    """One MoE layer's routing of N = B * T tokens."""

    logits: Tensor  # (N, E) float32, before any noise
    top_k_index: Tensor  # (N, k) long
    top_k_weights: Tensor  # (N, k) combine weights, 0 where the assignment was dropped
    expert_tokens: Tensor  # (E,) float: assignments routed to each expert, before drops
    dropped: Tensor  # () float: assignments dropped by the capacity
    z_loss: Tensor  # () mean(logsumexp(logits)^2)


class MoEOutput(NamedTuple):
    output: Tensor  # (B, T, D)
    router: RouterOutput


def router_z_loss(logits: Tensor) -> Tensor:
    """ST-MoE's z-loss: mean over tokens of logsumexp(logits)^2, (N, E) -> ()."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def load_balancing_loss(router_logits: Sequence[Tensor], experts: int, top_k: int,
                        attention_mask: Tensor | None = None) -> Tensor:
    """Switch's auxiliary loss E * sum_i f_i * P_i over every layer's tokens at once (the
    definition transformers' Mixtral uses): f_i is the share of top-k assignments to expert i
    (summed over the k choices, so it totals k), P_i the mean router probability of expert i.
    Each logits tensor is (B * T, E); `attention_mask` (B, T) leaves padding out."""
    if not router_logits:
        raise ValueError("router_logits is empty: no MoE layer produced logits")
    tokens = torch.zeros(experts, dtype=torch.float32, device=router_logits[0].device)
    probs = torch.zeros_like(tokens)
    rows = torch.zeros((), dtype=torch.float32, device=tokens.device)
    weight = None if attention_mask is None else attention_mask.reshape(-1, 1).float()
    for logits in router_logits:
        p = logits.float().softmax(-1)  # (N, E)
        chosen = F.one_hot(p.topk(top_k, dim=-1).indices, experts).sum(1).float()  # (N, E)
        if weight is not None:
            p, chosen = p * weight, chosen * weight
        tokens, probs = tokens + chosen.sum(0), probs + p.sum(0)
        rows = rows + (p.size(0) if weight is None else weight.sum())
    return experts * torch.sum((tokens / rows) * (probs / rows))


class Router(nn.Module):
    """x (N, D) -> float32 logits (N, E), the k experts of each token and their weights."""

    def __init__(self, d_model: int, config: MoEConfig) -> None:
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(torch.empty(config.experts, d_model))  # (E, D)
        self.noise = nn.Linear(d_model, config.experts, bias=False) if config.router_noise \
            else None
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = self.config
        with torch.autocast(x.device.type, enabled=False):  # selective precision (Switch)
            x = x.float()
            if self.training and c.router_jitter:
                x = x * torch.empty_like(x).uniform_(1 - c.router_jitter, 1 + c.router_jitter)
            logits = F.linear(x, self.weight.float())  # (N, E)
            chosen_from = logits
            if self.training and self.noise is not None:
                scale = F.softplus(F.linear(x, self.noise.weight.float()))  # (N, E)
                chosen_from = logits + torch.randn_like(logits) * scale
            probs = chosen_from.softmax(-1)  # (N, E)
            weights, index = probs.topk(c.top_k, dim=-1)  # (N, k)
            if c.normalize_top_k and c.top_k > 1:
                weights = weights / weights.sum(-1, keepdim=True)
        return logits, index, weights


def capacity_keep(index: Tensor, experts: int, capacity: int | None) -> Tensor:
    """(N, k) expert choices -> (N, k) bool: kept unless the expert already holds `capacity`
    assignments. Assignments queue by choice rank, then token order (every token's first
    choice before any second choice, as in GShard / Switch)."""
    if capacity is None:
        return torch.ones_like(index, dtype=torch.bool)
    order = F.one_hot(index.t().reshape(-1), experts)  # (k * N, E), choice-major
    position = (order.cumsum(0) * order).sum(-1) - 1  # (k * N,) place in its expert's queue
    return (position < capacity).view(index.size(1), index.size(0)).t()  # (N, k)


class Experts(nn.Module):
    """E feed-forward networks stored as (E, out, in) weights: gated (SwiGLU / GeGLU,
    (act(x Wg) * x Wu) Wd) or not (act(x Wu + bu) Wd + bd)."""

    def __init__(self, d_model: int, d_ff: int, experts: int, *, activation: str, gated: bool,
                 bias: bool, dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.activation, self.act = activation, ACTIVATIONS[activation]
        self.gate_proj = nn.Parameter(torch.empty(experts, d_ff, d_model)) if gated else None
        self.up_proj = nn.Parameter(torch.empty(experts, d_ff, d_model))  # (E, F, D)
        self.down_proj = nn.Parameter(torch.empty(experts, d_model, d_ff))  # (E, D, F)
        self.up_bias = nn.Parameter(torch.zeros(experts, d_ff)) if bias else None
        self.down_bias = nn.Parameter(torch.zeros(experts, d_model)) if bias else None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(0.02)

    def reset_parameters(self, std: float, down_std: float | None = None) -> None:
        """N(0, std) weights (down projections N(0, down_std) if given), zero biases."""
        for weight in (self.gate_proj, self.up_proj):
            if weight is not None:
                nn.init.normal_(weight, std=std)
        nn.init.normal_(self.down_proj, std=std if down_std is None else down_std)
        for bias in (self.up_bias, self.down_bias):
            if bias is not None:
                nn.init.zeros_(bias)

    def forward(self, rows: Tensor, counts: Tensor, dispatch: str) -> Tensor:
        """rows (M, D) sorted by expert, counts (E,) rows per expert -> (M, D)."""
        # torch's grouped GEMM takes any float dtype on CPU in eager mode, but only bfloat16
        # on CUDA and under torch.compile.
        # Its rows must also be 16-byte aligned (widths a multiple of 4 floats / 8 bf16).
        eager_cpu = rows.device.type == "cpu" and not torch.compiler.is_compiling()
        aligned = all(n * rows.element_size() % 16 == 0 for n in self.down_proj.shape[1:])
        grouped = dispatch == "grouped" and aligned and (eager_cpu
                                                         or rows.dtype == torch.bfloat16)
        project = _grouped if grouped else _per_expert
        h = project(rows, self.up_proj, counts, self.up_bias)  # (M, F)
        if self.gate_proj is None:
            h = self.act(h)
        else:
            h = self.act(project(rows, self.gate_proj, counts, None)) * h
        return project(self.dropout(h), self.down_proj, counts, self.down_bias)  # (M, D)


def _grouped(rows: Tensor, weight: Tensor, counts: Tensor, bias: Tensor | None) -> Tensor:
    """rows (M, in) x per-expert weight (E, out, in) -> (M, out), one grouped matmul."""
    offsets = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's group
    w = weight.transpose(1, 2).to(rows.dtype)  # (E, in, out)
    out = F.grouped_mm(rows, w, offs=offsets)  # (M, out)
    if bias is not None:
        out = out + bias.to(out.dtype).repeat_interleave(counts, dim=0)
    return out


def _per_expert(rows: Tensor, weight: Tensor, counts: Tensor, bias: Tensor | None) -> Tensor:
    """The same as `_grouped`, one F.linear per expert that received rows."""
    outs = [F.linear(group, weight[e], None if bias is None else bias[e])
            for e, group in enumerate(rows.split(counts.tolist())) if group.size(0)]
    return torch.cat(outs) if outs else rows.new_zeros(0, weight.size(1))


class MoE(nn.Module):
    """A feed-forward sub-layer of E experts: x (B, T, D) -> MoEOutput((B, T, D), routing)."""

    def __init__(self, d_model: int, d_ff: int, config: MoEConfig, *,
                 activation: str = "silu", gated: bool = True, bias: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.router = Router(d_model, config)
        self.experts = Experts(d_model, d_ff, config.experts, activation=activation,
                               gated=gated, bias=bias, dropout=dropout)

    def forward(self, x: Tensor) -> MoEOutput:
        c = self.config
        B, T, D = x.shape
        flat = x.reshape(-1, D)  # (N, D)
        logits, index, weights = self.router(flat)  # (N, E), (N, k), (N, k)
        keep = capacity_keep(index, c.experts, c.capacity(flat.size(0)))  # (N, k)
        weights = weights * keep
        expert_of = index.masked_fill(~keep, c.experts).reshape(-1)  # (N k,); E = dropped
        order = expert_of.argsort(stable=True)  # assignments grouped by expert
        counts = torch.bincount(expert_of, minlength=c.experts + 1)[:c.experts]  # (E,)
        kept = order[:int(counts.sum())]  # (M,) the dropped sort last
        token = kept // c.top_k  # (M,) the token of each kept assignment
        out = self.experts(flat[token], counts, c.dispatch)  # (M, D)
        out = out * weights.reshape(-1)[kept, None].to(out.dtype)
        combined = torch.zeros_like(flat).index_add_(0, token, out.to(flat.dtype))  # (N, D)
        routed = torch.bincount(index.reshape(-1), minlength=c.experts).float()  # (E,)
        router = RouterOutput(logits, index, weights, routed,
                              (~keep).sum().float(), router_z_loss(logits))
        return MoEOutput(combined.view(B, T, D), router)


def layer_moe(moe: MoEConfig | None, i: int) -> MoEConfig | None:
    """The routing of layer i (0-based): `moe` where it makes that layer a mixture of experts,
    None (a dense feed-forward) otherwise or for a dense model."""
    return moe if moe is not None and moe.is_moe_layer(i) else None


def feed_forward(kind: str, d_model: int, d_ff: int, moe: MoEConfig | None, *,
                 dropout: float = 0.0, bias: bool | None = None) -> nn.Module:
    """The FEEDFORWARD `kind` ("swiglu", "gelu", ...) as one dense FFN (moe None) or as E
    experts of that kind behind a router. `bias` None keeps the kind's default (gated: none)."""
    gated = kind in GATED
    if bias is None:
        bias = not gated
    if moe is None:
        return FEEDFORWARD.build(kind, d_model=d_model, d_ff=d_ff, dropout=dropout, bias=bias)
    if kind not in FEEDFORWARD.names():
        raise ValueError(f"feed-forward kind must be one of {FEEDFORWARD.names()}, got {kind!r}")
    activation = GATED.get(kind, kind)
    return MoE(d_model, d_ff, moe, activation=activation, gated=gated, bias=bias,
               dropout=dropout)
