"""The contract of a recurrent sequence mixer: what may replace attention in a block.

    forward(x, context=None, *, mask=None, causal=True, cache=None, need_weights=False,
            bias=None, position_ids=None) -> AttentionOutput(output, None, cache)

The same call an attention takes (`nn/attention/base.py`), so a DecoderLayer takes a mixer in
its self-attention slot unchanged. x: (B, T, D). mask: the key-padding mask attention gets,
bool, broadcastable to (B, 1, 1, past + T) (True = real token); a mixer reads the last T
columns as the (B, T) mask of its new positions and leaves padded positions out of its state,
so a left-padded row gives the outputs of the same row without padding. cache: a
`RecurrentState` (nn/cache.py) holding the mixer's fixed-size state; the mixer continues from
it and writes it back (`get` / `set`, then `advance(T)`). position_ids: (T,) or (B, T) absolute
positions, for mixers with relative rotations (RetNet's xPos); the others ignore them.

A mixer reads left to right: `causal=False`, a `context` (cross-attention), an additive `bias`
or `need_weights=True` are refused with a ValueError naming the mixer. A classifier built on a
mixer pools its causal outputs (the last or the mean position), as the Mamba and RWKV papers do.

Each mixer computes the same function in several forms, listed in `forms` (e.g. "parallel",
"chunkwise", "recurrent"); `form` picks the one used for a multi-token forward (a one-token
step with a cache is always the recurrent step). The forms agree to float64 rounding; the
contract tests (tests/nn/test_mixer_contract.py) check every registered mixer against itself
across forms, step by step with a cache, with left padding and in a DecoderLayer.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.nn.attention.base import AttentionOutput
from attnlab.nn.cache import KVCache, RecurrentState
from attnlab.registry import Registry

MIXER: Registry = Registry("mixer")


class SequenceMixer(nn.Module):
    """Base class of the recurrent mixers: stores `d_model` and the form, checks the call."""

    forms: ClassVar[tuple[str, ...]] = ("recurrent",)

    def __init__(self, d_model: int, form: str | None = None) -> None:
        super().__init__()
        self.d_model = positive_int(type(self).__name__, "d_model", d_model)
        self.form = self.forms[0] if form is None else form

    @property
    def form(self) -> str:
        return self._form

    @form.setter
    def form(self, value: str) -> None:
        if value not in self.forms:
            raise ValueError(f"{type(self).__name__}: form must be one of {self.forms}, got "
                             f"{value!r}")
        self._form = value

    def check_call(self, x: Tensor, context: Tensor | None, mask: Tensor | None, causal: bool,
                   cache: object, need_weights: bool, bias: Tensor | None) -> Tensor | None:
        """Refuse what a left-to-right mixer cannot do; return the (B, T) bool mask of the new
        positions (None: every position is real)."""
        name = type(self).__name__
        if x.dim() != 3 or x.size(-1) != self.d_model:
            raise ValueError(f"{name}: x must be (batch, length, {self.d_model}), got "
                             f"{tuple(x.shape)}")
        if context is not None:
            raise ValueError(f"{name} mixes one sequence left to right; it has no "
                             "cross-attention (context must be None)")
        if not causal:
            raise ValueError(f"{name} reads left to right: call it with causal=True (a "
                             "classifier pools its causal outputs)")
        if need_weights:
            raise ValueError(f"{name} has no attention weights to return (need_weights=True)")
        if bias is not None:
            raise ValueError(f"{name} takes no additive attention bias (positions are in its "
                             "recurrence)")
        if cache is not None and not isinstance(cache, RecurrentState):
            kind = "a KVCache" if isinstance(cache, KVCache) else type(cache).__name__
            raise TypeError(f"{name} keeps a RecurrentState, got {kind}: build the cache with "
                            "DecoderCache.recurrent(n_layers) (the model's new_cache())")
        return token_mask(mask, x.size(0), x.size(1), name)

    def result(self, y: Tensor, cache: RecurrentState | None) -> AttentionOutput:
        """The attention-shaped result of a forward: (B, T, D), no weights, the cache."""
        return AttentionOutput(y, None, cache)


def positive_int(owner: str, name: str, value: object) -> int:
    """`value` when it is a positive int (not a bool); else a ConfigError (a ValueError) naming
    the mixer, the argument and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return value


def token_mask(mask: Tensor | None, batch: int, length: int, name: str = "mixer"
               ) -> Tensor | None:
    """The (B, T) bool mask of the T newest positions from a key-padding mask broadcastable to
    (B, 1, 1, S) or a (B, S) mask, S >= T; None stays None."""
    if mask is None:
        return None
    if mask.dim() == 4:
        if mask.size(1) != 1 or mask.size(2) != 1:
            raise ValueError(f"{name} takes key-padding masks (B, 1, 1, S) only, got "
                             f"{tuple(mask.shape)}")
        mask = mask[:, 0, 0]
    if mask.dim() != 2 or mask.size(-1) < length or mask.size(0) not in (1, batch):
        raise ValueError(f"{name}: mask must cover (batch={batch}, >= {length} positions), got "
                         f"{tuple(mask.shape)}")
    return mask[:, -length:].bool().expand(batch, length)  # (B, T)


def zero_padding(x: Tensor, keep: Tensor | None) -> Tensor:
    """x (B, T, ...) with the padded positions (keep False) set to zero."""
    if keep is None:
        return x
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2))).to(x.dtype)
