"""The token ids of the server's most recent finished completions, kept so the playground can
ask for the attention of one afterwards (`GET /v1/attention/{id}`, serve/playground.py).

A bounded store: at most `capacity` completions, the oldest added evicted first (an id added
again counts as new). The HTTP handlers add from the event loop and the attention endpoint
reads from a worker thread, so every method holds one lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class RecentCompletions:
    """completion id -> (prompt token ids, output token ids) of the last `capacity` ones."""

    def __init__(self, capacity: int = 64) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[tuple[int, ...], tuple[int, ...]]] = OrderedDict()

    def add(self, completion_id: str, prompt_ids: list[int], output_ids: list[int]) -> None:
        """Keep a finished completion's ids (copied: the caller's lists may change later)."""
        item = (tuple(int(i) for i in prompt_ids), tuple(int(i) for i in output_ids))
        with self._lock:
            self._items.pop(completion_id, None)
            self._items[completion_id] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)  # the oldest

    def get(self, completion_id: str) -> tuple[list[int], list[int]] | None:
        """(prompt ids, output ids) of `completion_id`, or None when unknown or evicted."""
        with self._lock:
            item = self._items.get(completion_id)
        if item is None:
            return None
        return list(item[0]), list(item[1])

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, completion_id: object) -> bool:
        with self._lock:
            return completion_id in self._items
