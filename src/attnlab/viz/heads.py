"""Head analysis: score every attention head for behaviours the interpretability literature
named, on probing inputs that need no text (seeded random token ids).

Each score is in [0, 1] per (layer, head), computed from attention weights (..., T, S) whose
rows sum to 1. Query 0 is left out of the self-attention scores: in a causal model it can only
attend to itself, which says nothing about the head.

- previous-token: mean weight from position i on position i - 1 (the first half of the
  induction circuit; Olsson et al. 2022, "In-context Learning and Induction Heads").
- first-token (attention sink): mean weight from position i on position 0 (Xiao et al. 2023,
  "Efficient Streaming Language Models with Attention Sinks").
- positional offset: the fixed relative offset d (key = query - d, |d| <= T // 2) whose
  diagonal carries the most weight, and that mean weight (a generalisation of previous-token;
  the positional heads of Voita et al. 2019, "Analyzing Multi-Head Self-Attention").
- induction: on random tokens r_0..r_{n-1} repeated twice, the mean weight from the token at
  position n + j (the second copy of r_j) on position j + 1, the token that followed r_j the
  first time (Olsson et al. 2022).
- duplicate-token: on the same repeated input, the mean weight from n + j on j, the earlier
  occurrence of the same token (Wang et al. 2022, "Interpretability in the Wild").
- diagonal (cross-attention): mean weight from target position i on the source positions within
  `radius` of the scaled diagonal i * (S - 1) / (T - 1), the monotonic alignment of translation
  models (Bahdanau et al. 2014; Vaswani et al. 2017, Figure 3-5 style pictures).

Self-attention scores other than induction and duplicate-token are read on plain random
sequences, so a head copying from the earlier copy does not pass for a positional head.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.generation.mixin import ENCODER_DECODER, model_kind

# What people read names layers and heads from 1 ("layer 1" is the first), everywhere: the heads
# report, scores.json, heads.png, and `attnlab viz`'s file names, titles and --layers/--heads.
# Tensors and the functions here index from 0 as Python does; head_name converts.
NUMBERING = ("layers and heads are numbered from 1: L1H1 is the first head of the first layer "
             "(row 0, column 0 of each layers x heads array), as in `attnlab viz`")


def head_name(layer: int, head: int) -> str:
    """The printed name of the head at 0-based (layer, head): head_name(0, 0) == "L1H1"."""
    return f"L{layer + 1}H{head + 1}"


SELF_BEHAVIOURS = ("previous_token", "first_token", "offset", "induction", "duplicate_token")
CROSS_BEHAVIOURS = ("diagonal", "first_token")


def _check_weights(weights: Tensor, name: str = "weights", square: bool = False) -> None:
    if not isinstance(weights, Tensor) or weights.dim() < 2:
        raise ValueError(f"{name} must be a tensor (..., T, S), got "
                         f"{getattr(weights, 'shape', type(weights).__name__)}")
    T, S = weights.shape[-2:]
    if square and T != S:
        raise ValueError(f"{name} must be self-attention with T == S, got T={T}, S={S}")
    if T < 2:
        raise ValueError(f"{name} needs at least 2 queries, got T={T}")


def offset_scores(weights: Tensor, max_offset: int | None = None) -> Tensor:
    """Mean weight on each diagonal key = query - d for d in [-m, m], queries >= 1:
    (..., T, T) -> (..., 2m + 1), index m + d holds offset d. m defaults to T // 2."""
    _check_weights(weights, square=True)
    T = weights.size(-1)
    m = T // 2 if max_offset is None else max_offset
    if not 0 <= m < T:
        raise ValueError(f"max_offset must be in [0, T={T}), got {m}")
    out = []
    for d in range(-m, m + 1):
        diagonal = torch.diagonal(weights, offset=-d, dim1=-2, dim2=-1)  # (..., T - |d|)
        if d <= 0:  # queries 0 .. T-1-|d|; leave out query 0
            diagonal = diagonal[..., 1:]
        out.append(diagonal.mean(-1) if diagonal.size(-1) else diagonal.sum(-1))
    return torch.stack(out, dim=-1)  # (..., 2m + 1)


def previous_token_score(weights: Tensor) -> Tensor:
    """Mean weight from position i on i - 1, i >= 1: (..., T, T) -> (...)."""
    _check_weights(weights, square=True)
    return torch.diagonal(weights, offset=-1, dim1=-2, dim2=-1).mean(-1)  # (...)


def first_token_score(weights: Tensor) -> Tensor:
    """Mean weight from queries 1.. on key 0 (the attention sink): (..., T, S) -> (...)."""
    _check_weights(weights)
    return weights[..., 1:, 0].mean(-1)  # (...)


def best_offset(weights: Tensor, max_offset: int | None = None) -> tuple[Tensor, Tensor]:
    """(score, offset): the largest mean diagonal weight and its offset d (key = query - d),
    each (...)."""
    by_offset = offset_scores(weights, max_offset)  # (..., 2m + 1)
    m = (by_offset.size(-1) - 1) // 2
    score, index = by_offset.max(dim=-1)  # (...), (...)
    return score, index - m


def induction_score(weights: Tensor, period: int) -> Tensor:
    """On a sequence whose second half repeats the first (`period` tokens each, T = 2 * period
    plus any prefix before the first copy is not allowed), mean weight from position
    period + j on position j + 1, j = 0 .. period - 2: (..., T, T) -> (...)."""
    _check_repeat(weights, period)
    shifted = torch.diagonal(weights, offset=-(period - 1), dim1=-2, dim2=-1)  # (..., T-p+1)
    return shifted[..., 1:period].mean(-1)  # queries period .. 2 period - 2


def duplicate_token_score(weights: Tensor, period: int) -> Tensor:
    """Mean weight from position period + j on position j (the same token, earlier):
    (..., T, T) -> (...)."""
    _check_repeat(weights, period)
    same = torch.diagonal(weights, offset=-period, dim1=-2, dim2=-1)  # (..., T - period)
    return same[..., :period].mean(-1)


def _check_repeat(weights: Tensor, period: int) -> None:
    _check_weights(weights, square=True)
    T = weights.size(-1)
    if period < 2 or 2 * period != T:
        raise ValueError(f"period must be >= 2 with T == 2 * period, got period={period}, T={T}")


def diagonal_score(weights: Tensor, radius: float = 1.0) -> Tensor:
    """Mean weight (over target positions) within `radius` source positions of the scaled
    diagonal i * (S - 1) / (T - 1): (..., T, S) -> (...)."""
    _check_weights(weights)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    T, S = weights.shape[-2:]
    centre = torch.arange(T, dtype=torch.float32) * (S - 1) / (T - 1)  # (T,)
    keys = torch.arange(S, dtype=torch.float32)  # (S,)
    band = (keys[None, :] - centre[:, None]).abs() <= radius + 1e-6  # (T, S)
    return (weights * band.to(weights.dtype)).sum(-1).mean(-1)  # (...)


def score_self(plain: Tensor, repeated: Tensor) -> dict[str, Tensor]:
    """Every self-attention behaviour; plain (L, H, T, T) on random tokens, repeated
    (L, H, 2n, 2n) on random tokens repeated twice. Returns name -> (L, H) (offset_value:
    the best offset itself)."""
    offset, where = best_offset(plain)
    period = repeated.size(-1) // 2
    return {
        "previous_token": previous_token_score(plain),
        "first_token": first_token_score(plain),
        "offset": offset,
        "offset_value": where.float(),
        "induction": induction_score(repeated, period),
        "duplicate_token": duplicate_token_score(repeated, period),
    }


def score_cross(plain: Tensor, radius: float = 1.0) -> dict[str, Tensor]:
    """Cross-attention behaviours of plain (L, H, T, S): name -> (L, H)."""
    return {"diagonal": diagonal_score(plain, radius), "first_token": first_token_score(plain)}


# ---------------------------------------------------------------- probing inputs and the model


def special_ids(config: Any, extra: Iterable[int] = ()) -> set[int]:
    """Ids a probe avoids: the config's pad / bos / eos / decoder-start / unk ids and `extra`
    (e.g. the tokenizer's special tokens)."""
    names = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
             "unk_token_id")
    found = {getattr(config, name, None) for name in names}
    return {int(i) for i in found | set(extra) if isinstance(i, int)}


def probe_ids(vocab_size: int, batch: int, length: int, *, repeat: bool, seed: int,
              exclude: Iterable[int] = ()) -> Tensor:
    """(batch, length) random ids without the `exclude` ids. With `repeat`, each row is n
    distinct ids followed by the same n again (length = 2n)."""
    allowed = torch.tensor(sorted(set(range(vocab_size)) - set(exclude)), dtype=torch.long)
    n = length // 2 if repeat else length
    if repeat and (length % 2 or n < 2):
        raise ValueError(f"length must be even and >= 4 for a repeated probe, got {length}")
    if repeat and allowed.numel() < n:
        raise ValueError(f"a repeated probe of {n} distinct ids needs vocab_size > {n} "
                         f"usable ids, got {allowed.numel()}")
    if allowed.numel() < 2:
        raise ValueError(f"vocab_size={vocab_size} leaves {allowed.numel()} usable probe ids")
    generator = torch.Generator().manual_seed(seed)
    if repeat:
        rows = [allowed[torch.randperm(allowed.numel(), generator=generator)[:n]]
                for _ in range(batch)]
        half = torch.stack(rows)  # (B, n)
        return torch.cat([half, half], dim=1)  # (B, 2n)
    picks = torch.randint(allowed.numel(), (batch, n), generator=generator)  # (B, T)
    return allowed[picks]


def model_attentions(model: nn.Module, ids: Tensor, shift: bool = True) -> dict[str, Tensor]:
    """Run `model` on ids (B, T) with output_attentions=True; view name -> weights averaged
    over the batch (L, H, T, S). Encoder-decoders read `ids` as the source and as the decoder
    input, shifted right after the decoder start token when `shift` (a copy task, so a
    translation-like head should follow the diagonal; unshifted keeps a repeated probe's
    positions for induction)."""
    with torch.no_grad():
        if model_kind(model) == ENCODER_DECODER:
            decoder_ids = ids
            if shift:
                start = torch.full_like(ids[:, :1], model.config.decoder_start_token_id)
                decoder_ids = torch.cat([start, ids[:, :-1]], dim=1)  # (B, T)
            out = model(ids, decoder_input_ids=decoder_ids, output_attentions=True)
            found = {"encoder self-attention": out.encoder_attentions,
                     "decoder self-attention": out.decoder_attentions,
                     "cross-attention": out.cross_attentions}
        else:
            out = model(ids, output_attentions=True)
            found = {"self-attention": out.attentions}
    views = {name: torch.stack([w.float().mean(0) for w in layers]).cpu()  # (L, H, T, S)
             for name, layers in found.items() if layers}
    if not views:
        raise ValueError(f"{type(model).__name__} returned no attention weights: "
                         "does the model attend?")
    return views


@dataclass
class HeadScores:
    """Scores of one model: view name -> behaviour -> (L, H), and how they were probed."""

    model: str
    scores: dict[str, dict[str, Tensor]]
    probe: dict[str, Any] = field(default_factory=dict)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)  # uniform attention's

    def to_json(self, decimals: int = 4) -> dict[str, Any]:
        return {
            "model": self.model,
            "numbering": NUMBERING,
            "probe": self.probe,
            "chance": self.chance,
            "views": {view: {name: [[round(float(x), decimals) for x in row] for row in value]
                             for name, value in behaviours.items()}
                      for view, behaviours in self.scores.items()},
        }

    def top_heads(self, view: str, behaviour: str, k: int = 3) -> list[tuple[int, int, float]]:
        """The k best (layer, head, score) of one behaviour, best first; layer and head are
        0-based indices (`head_name` gives the printed name)."""
        values = self.scores[view][behaviour]  # (L, H)
        order = values.flatten().argsort(descending=True)[:k]
        H = values.size(1)
        return [(int(i) // H, int(i) % H, float(values.flatten()[i])) for i in order]


def analyse_heads(model: nn.Module, *, name: str = "model", batch: int = 8, length: int = 32,
                  seed: int = 0, exclude: Iterable[int] = (), radius: float = 1.0) -> HeadScores:
    """Probe `model` with seeded random ids (plain and repeated) and score every head."""
    config = model.config
    length = min(length, config.max_seq_len) if hasattr(config, "max_seq_len") else length
    length -= length % 2
    if batch < 1 or length < 4:
        raise ConfigError(f"need batch >= 1 and length >= 4, got batch={batch}, length={length}")
    avoid = special_ids(config, exclude)
    plain = model_attentions(model, probe_ids(config.vocab_size, batch, length, repeat=False,
                                              seed=seed, exclude=avoid))
    repeated = model_attentions(model, probe_ids(config.vocab_size, batch, length, repeat=True,
                                                 seed=seed + 1, exclude=avoid), shift=False)
    scores = {view: (score_cross(weights, radius) if view == "cross-attention"
                     else score_self(weights, repeated[view]))
              for view, weights in plain.items()}
    probe = {"batch": batch, "length": length, "seed": seed, "excluded_ids": sorted(avoid),
             "diagonal_radius": radius}
    return HeadScores(name, scores, probe, chance_scores(plain, radius))


def uniform_like(weights: Tensor) -> Tensor:
    """Uniform attention (T, S) over what `weights` (L, H, T, S) can see: causal when no weight
    lies above the diagonal (aligned lower-right), else every key."""
    T, S = weights.shape[-2:]
    visible = torch.ones(T, S)
    if T == S and float(torch.triu(weights, diagonal=1).abs().sum()) < 1e-6:
        visible = torch.tril(visible)
    return visible / visible.sum(-1, keepdim=True)  # (T, S)


def chance_scores(plain: dict[str, Tensor], radius: float = 1.0) -> dict[str, dict[str, float]]:
    """What a head attending uniformly would score on each view: the floor to read scores
    against (e.g. about 0.1 on previous-token for causal attention over 32 tokens)."""
    chance = {}
    for view, weights in plain.items():
        uniform = uniform_like(weights)
        # the probes have an even length, so one uniform matrix serves both
        scores = (score_cross(uniform, radius) if view == "cross-attention"
                  else score_self(uniform, uniform))
        chance[view] = {name: round(float(value), 4) for name, value in scores.items()
                        if name != "offset_value"}
    return chance


def plot_head_scores(result: HeadScores, path: str | Path) -> Path:
    """One heatmap (layers x heads, 0..1) per view and behaviour, layers and heads numbered
    from 1 on the axes; the offset panel writes each head's best offset d in its cell. Returns
    the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnlab.viz.figures import save_png

    views = list(result.scores)
    columns = max(len(_behaviours(result, v)) for v in views)
    L, H = next(iter(result.scores[views[0]].values())).shape
    cell = max(0.35, min(0.7, 6.0 / max(L, H)))
    fig, axes = plt.subplots(len(views), columns, squeeze=False, layout="constrained",
                             figsize=(columns * (H * cell + 1.0) + 1.0,
                                      len(views) * (L * cell + 1.1) + 0.4))
    for row, view in enumerate(views):
        names = _behaviours(result, view)
        for col in range(columns):
            ax = axes[row][col]
            if col >= len(names):
                ax.axis("off")
                continue
            values = result.scores[view][names[col]]  # (L, H)
            image = ax.imshow(values.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_title(f"{view}\n{names[col].replace('_', '-')}", fontsize=8)
            ax.set_xlabel("head", fontsize=7)
            ax.set_ylabel("layer", fontsize=7)
            # ticks numbered from 1, as the report and `attnlab viz` name heads (NUMBERING)
            ax.set_xticks(range(values.size(1)), [str(h + 1) for h in range(values.size(1))])
            ax.set_yticks(range(values.size(0)), [str(i + 1) for i in range(values.size(0))])
            ax.tick_params(labelsize=6)
            if values.numel() <= 256:
                offsets = result.scores[view].get("offset_value")
                for (layer, head), score in zip(torch.cartesian_prod(
                        torch.arange(values.size(0)), torch.arange(values.size(1))).tolist(),
                        values.flatten().tolist(), strict=True):
                    text = f"{score:.2f}"
                    if names[col] == "offset" and offsets is not None:
                        text += f"\nd={int(offsets[layer, head])}"
                    ax.text(head, layer, text, ha="center", va="center", fontsize=7,
                            color="white" if score < 0.6 else "black")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="score")
    fig.suptitle(f"head scores: {result.model}", fontsize=9)
    return save_png(fig, path, dpi=120, tight=False)


def _behaviours(result: HeadScores, view: str) -> list[str]:
    return [name for name in result.scores[view] if name != "offset_value"]
