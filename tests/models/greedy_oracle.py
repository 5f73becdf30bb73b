"""The slow oracle of the recurrent families' generation tests: greedy decoding that runs the
whole sequence again for every new token, with no cache or state at all."""

from __future__ import annotations

import torch


@torch.no_grad()
def greedy_by_recompute(model, ids, steps, mask=None):
    """`ids` (B, T) followed by `steps` greedy tokens, each from a full forward of everything
    so far (`mask`, if given, is the (B, T) padding mask of `ids`; new tokens are real)."""
    for _ in range(steps):
        next_id = model(ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], 1)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(next_id)], 1)
    return ids
