"""Approximation error of an attention variant against exact softmax attention (Vaswani et al.,
2017) with the same projection weights, for `attnlab bench attention`.

Every efficient variant keeps the q/k/v/out projections of multi-head attention under the same
parameter names, so loading its state_dict into MultiHeadAttention(kernel="reference") with
strict=False gives the exact attention it approximates. Two cases are handled apart:
- shared query-key projection (Reformer: K = X W^Q, no k_proj): compared with exact attention
  whose k_proj is a copy of q_proj;
- no query-key scores at all (Synthesizer): there is no exact counterpart; the error is None.

With PyTorch's default initialisation the scores q k^T / sqrt(Dh) of random inputs have a
standard deviation near 0.3, so exact attention is almost uniform and a crude approximation
looks good. The query projection is therefore scaled (in the variant and hence in the oracle)
until the exact scores have the standard deviation `score_std` (default 2.5): peaked rows.
"""

from __future__ import annotations

import inspect
import math
import statistics
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from attnlab.nn.attention import ATTENTION, MultiHeadAttention

if TYPE_CHECKING:
    from attnlab.studies.attention_bench import AttentionBenchSettings

# Mechanisms whose weights come from no query-key comparison: an error vs exact is meaningless.
NO_EXACT_COUNTERPART = {
    "synthesizer": "Synthesizer (Tay et al., 2021) learns its attention weights without "
                   "query-key dot products: there is no exact attention with the same weights",
}


def build_module(name: str, extra: dict[str, Any], s: AttentionBenchSettings, T: int,
                 seed: int) -> nn.Module:
    """ATTENTION.build with the benchmark's sizes, plus max_length=T where the class takes it."""
    cls = ATTENTION.get(name)
    kwargs: dict[str, Any] = dict(d_model=s.d_model, n_heads=s.n_heads, **extra)
    if "max_length" in inspect.signature(cls).parameters:
        kwargs["max_length"] = T
    torch.manual_seed(seed)
    return ATTENTION.build(name, **kwargs)


def _score_std(q_proj: nn.Linear, k_proj: nn.Linear, x: Tensor, H: int, Dh: int) -> float:
    B, T, _ = x.shape
    q = q_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    k = k_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
    return float((q @ k.transpose(-2, -1) / math.sqrt(Dh)).std())  # over (B, H, T, T)


def _one_seed(name: str, extra: dict[str, Any], s: AttentionBenchSettings, seed: int,
              device: torch.device) -> tuple[float, float] | str:
    """(relative error, exact score std) for one seed, or the reason there is none."""
    module = build_module(name, extra, s, s.error_length, seed).to(device).eval()
    shared = bool(getattr(type(module), "shared_qk", False))
    q_proj = getattr(module, "q_proj", None)
    k_proj = q_proj if shared else getattr(module, "k_proj", None)
    if not isinstance(q_proj, nn.Linear) or not isinstance(k_proj, nn.Linear):
        return "no q_proj / k_proj linear projections: no exact attention with the same weights"
    H = module.n_heads
    Dh = getattr(module, "head_dim", s.d_model // H)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s.batch, s.error_length, s.d_model, generator=g).to(device)  # (B, T, D)
    with torch.no_grad():
        ratio = s.score_std / _score_std(q_proj, k_proj, x, H, Dh)
        factor = math.sqrt(ratio) if shared else ratio  # shared: scores scale as factor^2
        for param in q_proj.parameters():
            param.mul_(factor)
        global_q = getattr(module, "global_q_proj", None)  # Longformer's global-row queries
        if isinstance(global_q, nn.Linear):
            for param in global_q.parameters():
                param.mul_(factor)
    oracle = MultiHeadAttention(s.d_model, H, head_dim=Dh, bias=q_proj.bias is not None,
                                kernel="reference").to(device).eval()
    state = dict(module.state_dict())
    if shared:
        state.update({key.replace("q_proj.", "k_proj.", 1): value
                      for key, value in state.items() if key.startswith("q_proj.")})
    try:
        missing = oracle.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as error:  # shapes that do not match multi-head projections
        return f"its projections do not load into exact attention ({error})"
    if missing:
        return f"no {', '.join(missing)} in its state_dict: no exact attention with its weights"
    with torch.no_grad():
        y = module(x).output  # (B, T, D)
        y_exact = oracle(x).output  # (B, T, D)
        error = float((y - y_exact).norm() / y_exact.norm())
        return error, _score_std(oracle.q_proj, oracle.k_proj, x, H, Dh)


def approximation_error(name: str, extra: dict[str, Any],
                        s: AttentionBenchSettings) -> dict[str, Any]:
    """Mean relative error ||y - y_exact|| / ||y_exact|| over `s.error_seeds` seeds at
    T = `s.error_length` (non-causal self-attention, no mask), or None with a reason."""
    info: dict[str, Any] = {"value": None, "std": None, "per_seed": [], "length": s.error_length,
                            "seeds": s.error_seeds, "score_std": None, "reason": None,
                            "note": None}
    if name in NO_EXACT_COUNTERPART:
        info["reason"] = NO_EXACT_COUNTERPART[name]
        return info
    cls = ATTENTION.get(name)
    if getattr(cls, "shared_qk", False):
        info["note"] = ("shared query-key projection: compared with exact attention whose "
                        "k_proj := q_proj")
    elif getattr(cls, "budget_knob", None) is None and name != "multi_head":
        info["note"] = "a different kernel, not an approximation: the error is a distance"
    errors, stds = [], []
    device = torch.device(s.device)
    for seed in range(s.error_seeds):
        try:
            got = _one_seed(name, extra, s, seed, device)
        except Exception as error:  # noqa: BLE001  (a failing variant must not end the run)
            got = f"raised {type(error).__name__}: {error}"
        if isinstance(got, str):
            info["reason"] = got
            return info
        errors.append(got[0])
        stds.append(got[1])
    info.update(value=statistics.fmean(errors), per_seed=errors,
                std=statistics.stdev(errors) if len(errors) > 1 else 0.0,
                score_std=round(statistics.fmean(stds), 3))
    return info
