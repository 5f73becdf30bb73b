"""Key/value caches for incremental (autoregressive) decoding.

A cache is an explicit object: passed into an attention forward and returned by it, never
hidden on a module. Self-attention caches hold the keys/values of every decoded position; a
cross-attention cache is filled once from the encoder output and then reused, so the
encoder-side projections run once per sentence instead of once per generated token.

A self-attention cache either grows (`torch.cat` of the new keys each step: a fresh copy of
everything cached, O(S) per step) or is preallocated with `max_length` positions, as in
Hugging Face's StaticCache and llama/gpt-fast: one (B, Hkv, max_length, Dh) buffer, each step
written in place by slice assignment, and attention reads the view of the filled positions.
Beam search's `reorder` of a preallocated cache writes the selected rows' filled positions into
a second buffer of the same size (made once) and swaps the two, so it allocates nothing per
step either; a view of the keys taken before a reorder keeps its values until the reorder after
that one (the decoding loops read the keys within the step that made them).

A recurrent sequence mixer (Mamba, RWKV, RetNet, an LSTM: `nn/mixers/`) keeps no keys at all:
its `RecurrentState` holds a fixed-size summary of every position read so far (an SSM state, the
WKV numerator and denominator, the retention matrix, (h, c)), so decoding memory does not grow
with the context. It takes the self-attention slot of a layer's cache, with the same `length`
and `reorder`, so the decoding loops and beam search drive both kinds alike.

Beam search never needs a cross-attention cache reordered: a sentence's beams share one source,
so their rows of the encoder keys/values are equal and any reordering within a sentence leaves
them as they are (`DecoderCache.reorder(index, cross=False)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


class KVCache:
    """Keys and values of one attention layer, each (B, Hkv, S, Dh).

    Args:
        cross: marks a cross-attention cache: once filled, `update` is not called again and
            the attention module reuses `key`/`value` as they are.
        max_length: preallocate room for this many positions on the first `update` (dtype and
            device from the keys) and write later keys in place; None grows by concatenation.
            Going past it is a ValueError.
    """

    def __init__(self, *, cross: bool = False, max_length: int | None = None) -> None:
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int):
                raise TypeError(f"max_length must be an int or None, got {max_length!r}")
            if max_length <= 0:
                raise ValueError(f"max_length must be positive, got {max_length}")
            if cross:
                raise ValueError("max_length is for self-attention caches; a cross-attention "
                                 "cache is filled once, got cross=True with max_length="
                                 f"{max_length}")
        self.cross = cross
        self.max_length = max_length
        # Growing: the cached tensors themselves. Preallocated: buffers of max_length positions
        # of which the first `_length` are filled.
        self._key: Tensor | None = None
        self._value: Tensor | None = None
        self._spare: tuple[Tensor, Tensor] | None = None  # the buffers `reorder` writes into
        self._length = 0

    @property
    def key(self) -> Tensor | None:
        """Cached keys (B, Hkv, S, Dh), or None when empty."""
        if self._key is None or self.max_length is None:
            return self._key
        return self._key[:, :, : self._length]  # (B, Hkv, S, Dh) view of the buffer

    @property
    def value(self) -> Tensor | None:
        """Cached values (B, Hkv, S, Dh), or None when empty."""
        if self._value is None or self.max_length is None:
            return self._value
        return self._value[:, :, : self._length]  # (B, Hkv, S, Dh) view of the buffer

    @property
    def length(self) -> int:
        """Number of cached key positions S (0 when empty)."""
        return self._length

    @property
    def is_filled(self) -> bool:
        return self._key is not None

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append new keys/values (B, Hkv, T_new, Dh) and return all of them (B, Hkv, S, Dh)."""
        if self._key is not None and (
            key.shape[:2] != self._key.shape[:2] or key.size(-1) != self._key.size(-1)
        ):
            raise ValueError(
                f"new keys {tuple(key.shape)} do not match the cache {tuple(self._key.shape)} "
                "on (batch, heads, head_dim)"
            )
        end = self._length + key.size(2)
        if self.max_length is None:
            if self._key is None or self._value is None:
                self._key, self._value = key, value
            else:
                self._key = torch.cat([self._key, key], dim=2)  # (B, Hkv, S + T_new, Dh)
                self._value = torch.cat([self._value, value], dim=2)  # (B, Hkv, S + T_new, Dh)
            self._length = end
            return self._key, self._value
        if end > self.max_length:
            raise ValueError(
                f"KV cache capacity exceeded: max_length={self.max_length}, requested length "
                f"{end} ({self._length} cached + {key.size(2)} new positions)"
            )
        if self._key is None or self._value is None:
            B, Hkv, _, Dh = key.shape
            self._key = key.new_empty(B, Hkv, self.max_length, Dh)  # (B, Hkv, max_length, Dh)
            self._value = value.new_empty(B, Hkv, self.max_length, value.size(-1))
        self._key[:, :, self._length : end] = key
        self._value[:, :, self._length : end] = value
        self._length = end
        return self.key, self.value

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search: keep the surviving hypotheses' histories)."""
        if self._key is None or self._value is None:
            return
        if self.max_length is None:
            self._key = self._key.index_select(0, index)
            self._value = self._value.index_select(0, index)
            return
        # Only the filled positions are copied, straight into a second pair of buffers (made
        # on the first reorder, reused while the row count stays): no allocation per step, one
        # read and one write of the filled keys/values. The old buffers become the spares.
        L, rows = self._length, index.numel()
        if self._spare is None or self._spare[0].size(0) != rows:
            self._spare = tuple(
                buffer.new_empty(rows, *buffer.shape[1:])  # (B', Hkv, max_length, Dh)
                for buffer in (self._key, self._value))
        key, value = self._spare
        torch.index_select(self._key[:, :, :L], 0, index, out=key[:, :, :L])
        torch.index_select(self._value[:, :, :L], 0, index, out=value[:, :, :L])
        self._spare = (self._key, self._value)
        self._key, self._value = key, value

    @property
    def nbytes(self) -> int:
        """Bytes of the cached keys and values (the filled positions of a preallocated
        buffer; 0 when empty)."""
        if self.key is None or self.value is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.key, self.value))

    def __repr__(self) -> str:
        shape = None if self.key is None else tuple(self.key.shape)
        return f"KVCache(cross={self.cross}, max_length={self.max_length}, shape={shape})"


class SlotKVCache(KVCache):
    """Keys and values of one attention layer for a continuous batch (`generation/continuous.py`):
    a preallocated (max_rows, Hkv, max_length, Dh) buffer whose first `rows` rows are the
    running sequences, all sharing `length` filled positions. Each row's own tokens are the last
    of those positions (the rest of the row is masked out by the batch's attention mask), so a
    decoding step appends one position to every row with one slice write, as `KVCache` does.

    A sequence joins by `put` (its prompt's keys written into a free row, ending at `length`),
    leaves by `move` (the last row copied over it) and the filled window slides back by
    `shift` when the rows' tokens no longer need all of it. The batch owns `rows` and `length`
    (`resize`); attention modules see the KVCache protocol: `key`, `value`, `length`,
    `update`, `cross`, `is_filled`, `nbytes` (the last three as KVCache has them).
    """

    def __init__(self, max_rows: int, max_length: int) -> None:
        super().__init__(max_length=max_length)  # _key, _value: (max_rows, Hkv, max_length, Dh)
        if max_rows <= 0:
            raise ValueError(f"max_rows must be positive, got {max_rows}")
        self.max_rows = max_rows
        self.rows = 0

    @property
    def key(self) -> Tensor | None:
        """Keys of the running rows (rows, Hkv, S, Dh), or None before the first `put`."""
        return None if self._key is None else self._key[: self.rows, :, : self._length]

    @property
    def value(self) -> Tensor | None:
        return None if self._value is None else self._value[: self.rows, :, : self._length]

    def resize(self, rows: int, length: int) -> None:
        """Set the running rows and the filled positions (the batch's bookkeeping)."""
        if not 0 <= rows <= self.max_rows or not 0 <= length <= self.max_length:
            raise ValueError(f"rows {rows} / length {length} outside [0, {self.max_rows}] / "
                             f"[0, {self.max_length}]")
        self.rows, self._length = rows, length

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append keys/values (rows, Hkv, T, Dh) at `length` in every running row."""
        if self._key is None or self._value is None:
            raise ValueError("a SlotKVCache is filled by `put` before a decoding step")
        if key.size(0) != self.rows:
            raise ValueError(f"new keys have {key.size(0)} rows, the batch runs {self.rows}")
        end = self._length + key.size(2)
        if end > self.max_length:
            raise ValueError(f"KV cache capacity exceeded: max_length={self.max_length}, "
                             f"requested length {end}")
        self._key[: self.rows, :, self._length:end] = key
        self._value[: self.rows, :, self._length:end] = value
        self._length = end
        return self.key, self.value

    def put(self, row: int, key: Tensor, value: Tensor, end: int) -> None:
        """Write one sequence's keys/values (1, Hkv, T, Dh) into `row`, ending at position
        `end` (the buffer is made on the first call, with their dtype and device)."""
        if self._key is None or self._value is None:
            _, Hkv, _, Dh = key.shape
            self._key = key.new_zeros(self.max_rows, Hkv, self.max_length, Dh)
            self._value = value.new_zeros(self.max_rows, Hkv, self.max_length, value.size(-1))
        T = key.size(2)
        self._key[row, :, end - T:end] = key[0]
        self._value[row, :, end - T:end] = value[0]

    def move(self, source: int, target: int) -> None:
        """Copy row `source`'s filled positions over row `target`."""
        if self._key is not None and self._value is not None and source != target:
            self._key[target, :, : self._length] = self._key[source, :, : self._length]
            self._value[target, :, : self._length] = self._value[source, :, : self._length]

    def shift(self, start: int, length: int, to: int) -> None:
        """Move positions [start, start + length) of every running row to [to, to + length)."""
        if self._key is None or self._value is None or start == to:
            return
        for buffer in (self._key, self._value):
            window = buffer[: self.rows, :, start:start + length].clone()
            buffer[: self.rows, :, to:to + length] = window

    def reorder(self, index: Tensor) -> None:
        raise NotImplementedError("a continuous batch moves rows with `move`, not `reorder`")

    def __repr__(self) -> str:
        return (f"SlotKVCache(rows={self.rows}/{self.max_rows}, length={self._length}/"
                f"{self.max_length})")


class RecurrentState:
    """The state of one recurrent sequence mixer: named tensors, each (B, ...), and the number
    of positions read so far. A mixer reads its tensors with `get` (None before the first
    call: start from zeros), writes them with `set`, and calls `advance(T)` once per forward;
    a stateful feed-forward of the same layer (RWKV's channel mix) keeps its own names in the
    same state and does not advance it. Its size is fixed: `nbytes` does not grow with
    `length`."""

    cross = False

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self._length = 0

    @property
    def length(self) -> int:
        """Positions read so far (0 when empty)."""
        return self._length

    @property
    def is_filled(self) -> bool:
        return bool(self.tensors)

    def get(self, name: str) -> Tensor | None:
        """The tensor `name`, or None when this state has not stored it yet."""
        return self.tensors.get(name)

    def set(self, name: str, value: Tensor) -> None:
        self.tensors[name] = value

    @length.setter
    def length(self, positions: int) -> None:
        """Set the positions read (a continuous batch, whose rows have read different numbers
        of positions, keeps the largest)."""
        self._length = positions

    def append_rows(self, other: RecurrentState) -> None:
        """Add the rows of `other` after this state's rows (a sequence joining a batch)."""
        if not self.tensors:
            self.tensors = dict(other.tensors)
            return
        if set(other.tensors) != set(self.tensors):
            raise ValueError(f"states hold different tensors: {sorted(self.tensors)} vs "
                             f"{sorted(other.tensors)}")
        self.tensors = {name: torch.cat([t, other.tensors[name]]) for name, t in
                        self.tensors.items()}

    def advance(self, positions: int) -> None:
        """Count `positions` more positions read (the mixer, once per forward)."""
        if positions < 0:
            raise ValueError(f"positions must be >= 0, got {positions}")
        self._length += positions

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search: keep the surviving hypotheses' states)."""
        self.tensors = {name: t.index_select(0, index) for name, t in self.tensors.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def __repr__(self) -> str:
        shapes = {name: tuple(t.shape) for name, t in self.tensors.items()}
        return f"RecurrentState(length={self._length}, tensors={shapes})"


@dataclass
class DecoderLayerCache:
    """The caches of one decoder layer: masked self-attention (or a recurrent mixer's state)
    and (optional) cross-attention."""

    self_attn: KVCache | RecurrentState = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=lambda: KVCache(cross=True))


@dataclass
class DecoderCache:
    """All layers' caches for one decoding run."""

    layers: list[DecoderLayerCache]

    @classmethod
    def empty(cls, n_layers: int, max_length: int | None = None) -> DecoderCache:
        """Empty caches for `n_layers` layers; `max_length` preallocates every self-attention
        cache for that many positions (cross-attention caches are filled once either way)."""
        return cls([DecoderLayerCache(self_attn=KVCache(max_length=max_length))
                    for _ in range(n_layers)])

    @classmethod
    def recurrent(cls, n_layers: int) -> DecoderCache:
        """Empty recurrent states for `n_layers` layers of recurrent sequence mixers (no
        preallocation: a state's size does not depend on the length)."""
        return cls([DecoderLayerCache(self_attn=RecurrentState()) for _ in range(n_layers)])

    @property
    def nbytes(self) -> int:
        """Bytes held by every layer's keys/values or recurrent state (filled positions only
        for a preallocated KV cache's view)."""
        return sum(layer.self_attn.nbytes + layer.cross_attn.nbytes for layer in self.layers)

    @property
    def length(self) -> int:
        """Number of target positions already decoded."""
        return self.layers[0].self_attn.length if self.layers else 0

    def reorder(self, index: Tensor, *, cross: bool = True) -> None:
        """Select batch rows `index` (N',) of every layer's caches. `cross=False` leaves the
        cross-attention caches alone: right when every row of `index` picks a row with the
        same source (beam search within a sentence), where selecting would copy equal rows."""
        for layer in self.layers:
            layer.self_attn.reorder(index)
            if cross:
                layer.cross_attn.reorder(index)
