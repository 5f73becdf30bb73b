"""Continuous batching: sequences join and leave one batched decoding run between its steps
(iteration-level scheduling, Yu et al. 2022, "Orca"), so a new request never waits for the
others to finish and a finished one frees its row at once.

`ContinuousBatch` (decoder-only models, GPT-2 / LLaMA / Mixtral and the recurrent families):

- a joining sequence's prompt runs alone through the model (its "prefill", batch 1, its own
  cache); its keys/values (or recurrent state) are then copied into a free row of the batch;
- each step feeds every running row its last token: one forward of (rows, 1) ids;
- a leaving row is overwritten by the last row, so the running rows stay rows 0 .. rows - 1 and
  a step computes nothing for free rows.

The keys/values live in one `SlotKVCache` per layer (nn/cache.py): all rows share the filled
length S, and each row's own tokens are its last positions (right-aligned, the rest masked
out), so a step appends one position to every row with one slice write and the model runs
unchanged, with the per-row attention mask and positions it already takes for left-padded
batches. When S outgrows the rows (the longest row needs far fewer positions, or the buffer is
full), the window of the last `longest` positions slides back to the start: one copy, no
per-row work. A recurrent family's state has a fixed size per row, so rows are simply
concatenated and dropped.

`SequentialStates` serves encoder-decoders (T5, the 2017 Transformer, the RNN and ConvS2S
baselines) behind the same interface: each sequence keeps its own `EncoderDecoderState` and a
step advances each in turn. Requests still join and leave between steps, but their decoder
steps are not batched together (the decoders take no per-row self-attention mask).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.generation.state import EncoderDecoderState
from attnlab.nn.cache import DecoderCache, DecoderLayerCache, RecurrentState, SlotKVCache

# Slide the window back once the shared length exceeds twice the longest row by this much:
# attention then reads at most ~2x the positions it needs, and the copy stays rare.
SLACK = 32


class ContinuousBatch:
    """Running sequences of a decoder-only model, stepped together.

    Args:
        model: a decoder-only model (`forward(ids, attention_mask=, position_ids=, cache=)`,
            `new_cache(max_length)`, `config.max_seq_len`), in eval mode.
        max_rows: sequences that may run at once.
        max_length: positions each sequence may reach (prompt + new tokens), at most
            config.max_seq_len; the key/value buffers hold this many positions.
    """

    def __init__(self, model: nn.Module, *, max_rows: int, max_length: int) -> None:
        if not 0 < max_length <= model.config.max_seq_len:
            raise ValueError(f"max_length must be in [1, max_seq_len="
                             f"{model.config.max_seq_len}], got {max_length}")
        self.model = model
        self.max_rows, self.max_length = max_rows, max_length
        self.recurrent = bool(getattr(model, "recurrent", False))
        device = next(model.parameters()).device
        n_layers = len(model.new_cache(1).layers)
        if self.recurrent:
            self.cache = DecoderCache.recurrent(n_layers)
        else:
            self.cache = DecoderCache([DecoderLayerCache(self_attn=SlotKVCache(max_rows,
                                                                               max_length))
                                       for _ in range(n_layers)])
        self.mask = torch.zeros(max_rows, max_length, dtype=torch.long, device=device)
        # each row's next position, which is also the number of its tokens in the cache
        self.positions = torch.zeros(max_rows, dtype=torch.long, device=device)
        self.rows = 0
        self.length = 0  # S: filled positions shared by every row

    @torch.no_grad()
    def add(self, prompt_ids: list[int]) -> Tensor:
        """Run `prompt_ids` (T,) alone and make it the last running row; returns the logits
        (T, V) of every prompt position (the last one gives its first new token)."""
        if self.rows == self.max_rows:
            raise RuntimeError(f"the batch is full ({self.max_rows} rows)")
        T = len(prompt_ids)
        if not 0 < T < self.max_length:
            raise ValueError(f"a prompt of {T} tokens does not fit {self.max_length} positions")
        device = self.mask.device
        ids = torch.tensor([prompt_ids], device=device)  # (1, T)
        own = self.model.new_cache(T)
        logits = self.model(ids, position_ids=torch.arange(T, device=device)[None],
                            cache=own).logits[0]  # (T, V)
        row = self.rows
        if self.recurrent:
            for mine, theirs in zip(self.cache.layers, own.layers, strict=True):
                mine.self_attn.append_rows(theirs.self_attn)
        else:
            if T > self.length:  # make room on the left: every row's tokens move right
                self._slide(self.length, to=T)
            for mine, theirs in zip(self.cache.layers, own.layers, strict=True):
                mine.self_attn.put(row, theirs.self_attn.key, theirs.self_attn.value,
                                   end=self.length)
            self.mask[row] = 0
            self.mask[row, self.length - T:self.length] = 1
        self.positions[row] = T
        self._resize(self.rows + 1)
        return logits

    @torch.no_grad()
    def step(self, next_ids: Tensor) -> Tensor:
        """Feed each running row its next token (rows,); returns the logits (rows, V)."""
        n = self.rows
        if next_ids.shape != (n,):
            raise ValueError(f"next_ids must have shape ({n},), got {tuple(next_ids.shape)}")
        mask = None
        if not self.recurrent:
            longest = self._longest()
            if self.length + 1 > self.max_length or self.length > 2 * longest + SLACK:
                self._slide(longest, to=longest, start=self.length - longest)
            self.mask[:n, self.length] = 1
            mask = self.mask[:n, : self.length + 1]  # (rows, S + 1)
        out = self.model(next_ids[:, None].to(self.mask.device), attention_mask=mask,
                         position_ids=self.positions[:n, None], cache=self.cache)
        self.positions[:n] += 1
        self._resize(n, self.length + 1)
        return out.logits[:, -1]  # (rows, V)

    def remove(self, row: int) -> None:
        """Drop running row `row`; the last row takes its place (callers mirror this)."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is not running (rows: {self.rows})")
        last = self.rows - 1
        keep = torch.arange(last, device=self.mask.device)  # recurrent states: rows kept
        if row != last:
            keep[row] = last
        for layer in self.cache.layers:
            state = layer.self_attn
            if isinstance(state, RecurrentState):
                state.reorder(keep)
            else:
                state.move(last, row)
        self.mask[row] = self.mask[last]
        self.positions[row] = self.positions[last]
        if last == 0:  # the batch is empty: the next sequence starts a fresh window and state
            self._reset_recurrent()
            self._resize(0, 0)
        else:
            self._resize(last)

    def _slide(self, count: int, *, to: int, start: int = 0) -> None:
        """Move the last `count` filled positions [start, start + count) of every row so they
        end at `to` (the window grows on the left for a longer prompt, or shrinks back)."""
        begin = to - count
        for layer in self.cache.layers:
            layer.self_attn.shift(start, count, begin)
        n = self.rows
        window = self.mask[:n, start:start + count].clone()
        self.mask[:n] = 0
        self.mask[:n, begin:to] = window
        self._resize(n, to)

    def _resize(self, rows: int, length: int | None = None) -> None:
        self.rows = rows
        if length is not None:
            self.length = length
        for layer in self.cache.layers:
            state = layer.self_attn
            if isinstance(state, SlotKVCache):
                state.resize(rows, self.length)
            else:
                state.length = self._longest()

    def _longest(self) -> int:
        """Tokens of the longest running row (0 when none runs)."""
        return int(self.positions[: self.rows].max()) if self.rows else 0

    def _reset_recurrent(self) -> None:
        for layer in self.cache.layers:
            if isinstance(layer.self_attn, RecurrentState):
                layer.self_attn.tensors = {}


class SequentialStates:
    """Running sequences of an encoder-decoder, each with its own decoding state, behind the
    `ContinuousBatch` interface (`add`, `step`, `remove`, `rows`)."""

    def __init__(self, model: nn.Module, *, max_rows: int, max_length: int) -> None:
        self.model = model
        self.max_rows, self.max_length = max_rows, max_length
        self.states: list[Any] = []

    @property
    def rows(self) -> int:
        return len(self.states)

    @torch.no_grad()
    def add(self, source_ids: list[int], max_new_tokens: int) -> Tensor:
        """Encode `source_ids` and start its decoder; returns the logits (1, V) of the first
        target token."""
        if self.rows == self.max_rows:
            raise RuntimeError(f"the batch is full ({self.max_rows} rows)")
        device = next(self.model.parameters()).device
        limit = min(max_new_tokens, self.model.config.max_seq_len - 1)
        state = EncoderDecoderState(self.model, torch.tensor([source_ids], device=device),
                                    max_new_tokens=limit)
        self.states.append(state)
        return state.next_logits()  # (1, V)

    @torch.no_grad()
    def step(self, next_ids: Tensor) -> Tensor:
        """Append each row's token (rows,) and return the logits (rows, V) of the next."""
        logits = []
        for state, token in zip(self.states, next_ids.tolist(), strict=True):
            state.append(torch.tensor([token], device=state.sequences.device))
            logits.append(state.next_logits())  # (1, V)
        return torch.cat(logits)

    def remove(self, row: int) -> None:
        self.states[row] = self.states[-1]
        self.states.pop()
