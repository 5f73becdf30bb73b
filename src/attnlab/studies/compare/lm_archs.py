"""The architectures of `attnlab compare --family lm` and how each is matched to the
Transformer's non-embedding parameters (Kaplan et al. 2020, sec. 2.1): a table of presets, the
config fields that follow a width d, the depth per Transformer layer and the recipe, and a
search over d (models built on the meta device: nothing is allocated), then over a feed-forward
width to close the remaining gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from attnlab.errors import ConfigError
from attnlab.models import PRESETS, build_model
from attnlab.studies.scaling.sweep import parameter_counts

REFERENCE = "transformer"  # every other architecture is matched to it


def _mult8(x: float) -> int:
    return max(8, round(x / 8) * 8)


@dataclass(frozen=True)
class LMArch:
    """One architecture of the comparison: its preset, how its shape follows a width d (given
    the Transformer's heads h), and its training recipe. `layers` is its depth per Transformer
    layer; `step(h)` the multiples of which d is searched; `fine` a field tuned after d to close
    the remaining parameter gap."""

    label: str
    preset: str
    source: str
    width: Callable[[int, int], dict[str, Any]]
    step: Callable[[int], int] = lambda h: 1
    layers: int = 1
    fine: str | None = None
    lr: float = 2e-3
    lr_reason: str = ""


SAME_RECIPE = ("the recipe the papers compare under: Mamba (sec. 4.2, App. E.2) trains its "
               "Transformer++ baseline and Mamba with one recipe, RWKV-4 and RetNet use "
               "GPT-style AdamW rates; not tuned per architecture here")
ARCHS: dict[str, LMArch] = {
    "transformer": LMArch(
        "Transformer (LLaMA)", "llama-tiny", "Touvron et al. 2023: pre-RMSNorm, RoPE, SwiGLU",
        lambda d, h: {"d_model": d, "n_heads": h, "n_kv_heads": h, "d_ff": _mult8(8 * d / 3)},
        step=lambda h: h, fine="d_ff",
        lr_reason="Kaplan et al. 2020 (eq. D.1) gives ~1.3e-3 at 0.8M non-embedding "
                  "parameters; the short budgets of this study favour a higher peak; "
                  + SAME_RECIPE),
    "mamba": LMArch(
        "Mamba", "mamba-tiny", "Gu & Dao 2023: selective SSM blocks, no MLP, 2 per layer",
        lambda d, h: {"d_model": d, "dt_rank": "auto"}, layers=2, lr_reason=SAME_RECIPE),
    "rwkv": LMArch(
        "RWKV-4", "rwkv-tiny", "Peng et al. 2023: time mix + channel mix",
        lambda d, h: {"d_model": d, "attention_hidden_size": d, "d_ff": 4 * d}, fine="d_ff",
        lr_reason=SAME_RECIPE),
    "retnet": LMArch(
        "RetNet", "retnet-tiny", "Sun et al. 2023: multi-scale retention, FFN 2d",
        lambda d, h: {"d_model": d, "n_heads": h, "d_ff": 2 * d}, step=lambda h: 2 * h,
        fine="d_ff", lr_reason=SAME_RECIPE),
    "lstm-lm": LMArch(
        "LSTM LM", "lstm-lm-tiny", "Hochreiter & Schmidhuber 1997; Merity et al. 2018",
        lambda d, h: {"d_model": d, "d_ff": 0}, lr_reason=SAME_RECIPE),
    # A second Transformer (GPT-2: learned positions, GELU MLP): not in the default list; the
    # harness's own check that two attention models land close at equal parameters and time.
    "gpt2": LMArch(
        "Transformer (GPT-2)", "gpt2-tiny", "Radford et al. 2019",
        lambda d, h: {"d_model": d, "n_heads": h, "d_ff": 4 * d}, step=lambda h: h,
        fine="d_ff", lr_reason=SAME_RECIPE),
}
DEFAULT_ARCHS = ("transformer", "mamba", "rwkv", "retnet", "lstm-lm")


# -- equal parameters ------------------------------------------------------------------------------

def non_embedding(preset: str, values: dict[str, Any], vocab_size: int) -> int:
    """Parameters but the token (and position) embeddings and the LM head, on the meta device
    (Kaplan et al. 2020, sec. 2.1; studies/scaling's count). The special ids are 0, as the LM
    task's and the probes' are (a preset's own may lie outside a small vocabulary)."""
    with torch.device("meta"):
        model = build_model(preset, vocab_size=vocab_size, bos_token_id=0, eos_token_id=0,
                            **values)
    return parameter_counts(model, None)["non_embedding"]


def shape(name: str, d: int, n_layers: int, n_heads: int) -> dict[str, Any]:
    """The config overrides of `name` at width d: depth, width-tied fields, dropout off (equal
    short budgets: no regulariser slows one architecture and not another)."""
    arch = ARCHS[name]
    fields = {f.name for f in dataclasses.fields(PRESETS[arch.preset].model_class.config_class)}
    values = {"n_layers": n_layers * arch.layers, **arch.width(d, n_heads)}
    values.update({f: 0.0 for f in sorted(fields) if f == "dropout" or f.endswith("_dropout")})
    return values


def _closest(count: Callable[[int], int], target: int, low: int, high: int) -> int:
    """The integer k in [low, high] whose count(k) (increasing in k) is closest to target."""
    while count(high) < target and high < 2**16:
        low, high = high, high * 2
    while high - low > 1:  # invariant: count(low) < target <= count(high), or low at the floor
        mid = (low + high) // 2
        if count(mid) < target:
            low = mid
        else:
            high = mid
    return min((low, high), key=lambda k: (abs(count(k) - target), k))


def match(name: str, target: int, *, d_model: int, n_layers: int, n_heads: int,
          vocab_size: int, tolerance: float) -> dict[str, Any]:
    """`name`'s shape whose non-embedding parameters are closest to `target`: its width d
    searched over multiples of its step, then its `fine` field (the FFN width) tuned; a
    ConfigError when the gap stays over `tolerance`."""
    arch = ARCHS[name]
    step = arch.step(n_heads)
    counts: dict[tuple[Any, ...], int] = {}

    def count_values(values: dict[str, Any]) -> int:
        key = tuple(sorted(values.items()))
        if key not in counts:
            counts[key] = non_embedding(arch.preset, values, vocab_size)
        return counts[key]

    k = _closest(lambda k: count_values(shape(name, k * step, n_layers, n_heads)), target,
                 1, max(1, d_model // step))
    values = shape(name, k * step, n_layers, n_heads)
    if arch.fine and values.get(arch.fine):
        base = values[arch.fine]
        tuned = _closest(lambda f: count_values({**values, arch.fine: f}), target,
                         max(1, base // 2), 2 * base)
        values[arch.fine] = tuned
    params = count_values(values)
    gap = params / target - 1
    if abs(gap) > tolerance:
        raise ConfigError(f"{name}: no shape within tolerance {tolerance:.0%} of the "
                          f"Transformer's {target:,} non-embedding parameters (closest: "
                          f"{params:,} at {values}); raise --set tolerance or change d_model")
    return {"values": values, "non_embedding": params, "gap": gap}


def matched_models(architectures: list[str], tolerance: float, *, d_model: int, n_layers: int,
                   n_heads: int, vocab_size: int) -> dict[str, dict[str, Any]]:
    """arch -> {"values", "non_embedding", "gap"} at the Transformer's shape, for each of
    `architectures` (the Transformer among them)."""
    reference = shape(REFERENCE, d_model, n_layers, n_heads)
    target = non_embedding(ARCHS[REFERENCE].preset, reference, vocab_size)
    models = {REFERENCE: {"values": reference, "non_embedding": target, "gap": 0.0}}
    for name in architectures:
        if name != REFERENCE:
            models[name] = match(name, target, d_model=d_model, n_layers=n_layers,
                                 n_heads=n_heads, vocab_size=vocab_size, tolerance=tolerance)
    return {name: models[name] for name in architectures}
