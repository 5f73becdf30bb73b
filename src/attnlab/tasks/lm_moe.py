"""What `attnlab train lm` logs of a mixture-of-experts model's routing while it trains: the
terms of its loss, the experts' load and dropped tokens per optimizer step, a warning when an
expert collapses, and the load per layer and expert for metrics.json.

The figures are those Switch Transformers (Fedus, Zoph and Shazeer 2021, sec. 2.2 and 4) and
ST-MoE (Zoph et al. 2022) watch: the load-balancing loss, the router z-loss, the share of
token-assignments each expert receives (balanced: 1/E each) and the share dropped by the
capacity. A model's forward gives them (`CausalLMOutput.aux_loss`, `z_loss`, `lm_loss`,
`expert_load` (L_moe, E): each MoE layer's share of assignments per expert, rows summing to 1,
`dropped_fraction`); a dense model leaves them None and nothing is logged.

Per optimizer step (`ExpertMonitor.step`, the task's `step_metrics`), the mean over the step's
micro-batches of: `lm_loss` (next-token loss alone), `aux_loss`, `z_loss`, `dropped`, and
`load_min` / `load_max`, the smallest and largest share over all layers and experts times E (1.0
everywhere = perfectly balanced; 0 = an expert that got nothing). An expert whose share stays
below `collapse_share / E` for `collapse_steps` consecutive steps is reported once, with a
warning (the router sends (almost) nothing to it: the model has fewer experts than it pays for).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

STEP_KEYS = ("lm_loss", "aux_loss", "z_loss", "dropped", "load_min", "load_max")
SCALARS = {"lm_loss": "lm_loss", "aux_loss": "aux_loss", "z_loss": "z_loss",
           "dropped": "dropped_fraction"}  # step key -> output field


def moe_layers(config: Any) -> list[int] | None:
    """The 0-based indices of a decoder config's MoE layers, None for a dense model."""
    moe = getattr(config, "moe", None)
    if moe is None:
        return None
    return [i for i in range(config.n_layers) if moe.is_moe_layer(i)]


class ExpertMonitor:
    """Gathers each micro-batch's routing figures (`add`), gives the step's means (`step`),
    watches for collapse, and keeps the load over the current evaluation window and the run."""

    def __init__(self, collapse_share: float = 0.1, collapse_steps: int = 100,
                 layers: list[int] | None = None) -> None:
        self.collapse_share, self.collapse_steps = collapse_share, collapse_steps
        self.layers = layers  # model layer index of each row of expert_load (None: 0, 1, ...)
        self.steps = 0  # optimizer steps seen by this process
        self._micro: dict[str, Tensor] = {}  # sums over the step's micro-batches
        self._micro_count = 0
        self._window: dict[str, Any] = self._empty()  # since the last evaluation
        self.last_window: dict[str, Any] | None = None  # the window the last evaluation ended
        self._run: dict[str, Any] = self._empty()
        self._below: Tensor | None = None  # (L, E) consecutive steps under the threshold
        self.collapsed: list[dict[str, Any]] = []

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"steps": 0, "sums": {}, "load": None}

    def add(self, out: Any) -> None:
        """One micro-batch's model output; a dense model's (aux_loss None) is ignored."""
        if getattr(out, "aux_loss", None) is None:
            return
        for key, field in SCALARS.items():
            value = getattr(out, field, None)
            if value is not None:
                value = value.detach().float()
                self._micro[key] = self._micro[key] + value if key in self._micro else value
        load = getattr(out, "expert_load", None)
        if load is not None:
            load = load.detach().float()
            self._micro["load"] = self._micro["load"] + load if "load" in self._micro else load
        self._micro_count += 1

    def step(self) -> dict[str, float]:
        """The step's figures (means over its micro-batches), then forgotten; {} for a dense
        model. Also counts toward the window, the run and the collapse watch."""
        if not self._micro_count:
            return {}
        n, sums = self._micro_count, self._micro
        figures = {k: float(sums[k].cpu()) / n for k in SCALARS if k in sums}
        load = None
        if "load" in sums:
            load = (sums["load"] / n).cpu().double()  # (L, E)
            experts = load.size(-1)
            figures["load_min"] = float(load.min()) * experts
            figures["load_max"] = float(load.max()) * experts
        self._micro, self._micro_count = {}, 0
        self.steps += 1
        for span in (self._window, self._run):
            span["steps"] += 1
            for k, v in figures.items():
                span["sums"][k] = span["sums"].get(k, 0.0) + v
            if load is not None:
                span["load"] = load.clone() if span["load"] is None else span["load"] + load
        if load is not None:
            self._watch(load)
        return figures

    def _watch(self, load: Tensor) -> None:
        """Count consecutive steps each expert stays under collapse_share / E; warn once."""
        experts = load.size(-1)
        under = load < self.collapse_share / experts  # (L, E)
        if self._below is None or self._below.shape != under.shape:
            self._below = torch.zeros(under.shape, dtype=torch.long)
        self._below = torch.where(under, self._below + 1, 0)
        reported = {(c["moe_layer"], c["expert"]) for c in self.collapsed}
        for row, expert in (self._below == self.collapse_steps).nonzero().tolist():
            if (row, expert) in reported:
                continue
            layer = self.layers[row] if self.layers else row
            self.collapsed.append({"moe_layer": row, "layer": layer, "expert": expert,
                                   "after_steps": self.steps})
            log.warning("expert collapse: layer %d expert %d has received under %.3g of the "
                        "layer's token-assignments (collapse_share %.3g / %d experts) for %d "
                        "consecutive steps; it is not being used. A larger moe.aux_loss_coef, "
                        "moe.router_jitter or a lower lr may help", layer, expert,
                        self.collapse_share / experts, self.collapse_share, experts,
                        self.collapse_steps)

    def end_window(self) -> None:
        """An evaluation ends the current window (its load is what metrics.json reports)."""
        if self._window["steps"]:
            self.last_window = self._window
        self._window = self._empty()

    @staticmethod
    def _means(span: dict[str, Any]) -> dict[str, Any]:
        n = span["steps"]
        out: dict[str, Any] = {k: v / n for k, v in span["sums"].items()}
        if span["load"] is not None:
            load = span["load"] / n  # (L, E) mean share per layer and expert
            experts = load.size(-1)
            out["load_min"] = float(load.min()) * experts  # of the window's mean load
            out["load_max"] = float(load.max()) * experts
            out["expert_load"] = [[round(float(x), 5) for x in row] for row in load]
        return out

    def summary(self) -> dict[str, Any] | None:
        """metrics.json's `moe` record (None when no MoE figure was seen): the means over the
        last evaluation window (its `steps`) and over the run (this process), the collapses."""
        if not self._run["steps"]:
            return None
        window = self.last_window or self._window
        if not window["steps"]:
            window = self._run
        return {"window": {"steps": window["steps"], **self._means(window)},
                "run": {"steps": self._run["steps"], **self._means(self._run)},
                "layers": self.layers, "collapse_share": self.collapse_share,
                "collapse_steps": self.collapse_steps, "collapsed": self.collapsed}
