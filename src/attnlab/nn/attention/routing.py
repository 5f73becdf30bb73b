"""Routing attention (Roy, Saffar, Vaswani and Grangier, 2021, "Efficient Content-Based Sparse
Attention with Routing Transformers").

Queries and keys are layer-normalised to unit vectors and routed to their nearest of k shared
centroids (online k-means: an exponential moving average of the vectors routed to each centroid,
updated in training mode only). A query attends to the keys of its own cluster. To stay
balanced whatever the clusters, it sees at most w = ceil(S / k) of them: the w keys of the
cluster nearest it in position (causal: the w latest at or before it, a set no future token can
change), plus its own key when that is not among them. k = 1 is exact attention.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention


def unit(x: Tensor) -> Tensor:
    """Layer norm without gain or bias, scaled to unit length: (..., Dh) -> (..., Dh)."""
    return F.layer_norm(x, x.shape[-1:]) / math.sqrt(x.size(-1))


def tally(index: Tensor, n: int) -> Tensor:
    """How often each of 0 .. n - 1 occurs along the last axis: (B, H, N) -> (B, H, n)."""
    counts = index.new_zeros(*index.shape[:-1], n)
    return counts.scatter_add_(-1, index, torch.ones_like(index))


@ATTENTION.register("routing")
class RoutingAttention(EfficientAttention):
    """Attention within k-means clusters of queries and keys.

    Time O(T S Dh / k + (T + S) (k Dh + log S)), memory O(T S / k) for k = n_clusters: keys
    are sorted by (cluster, position) and cut into chunks of w / 2; queries are grouped by the
    chunk where their window starts, and each group attends to three chunks (1.5 w keys).

    Args:
        d_model, n_heads, head_dim, bias: as EfficientAttention.
        n_clusters: k centroids per head (1 = exact attention).
        decay: EMA decay of the centroids, in [0, 1).
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False
    supports_cache: ClassVar[bool] = False
    budget_knob: ClassVar[str | None] = "n_clusters"
    complexity: ClassVar[str] = "time O(T S Dh / k + (T + S) k Dh), memory O(T S / k)"

    def __init__(self, d_model: int, n_heads: int, *, n_clusters: int = 4, decay: float = 0.999,
                 head_dim: int | None = None, bias: bool = True) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        check_positive("n_clusters", n_clusters)
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a float in [0, 1), got {decay!r}")
        self.n_clusters = n_clusters
        self.decay = float(decay)
        centroids = F.normalize(torch.randn(n_heads, n_clusters, self.head_dim), dim=-1)
        self.register_buffer("centroids", centroids)  # (H, k, Dh)

    def route(self, x: Tensor) -> Tensor:
        """Nearest centroid of every vector: (B, H, T, Dh) -> (B, H, T) long."""
        centroids = F.normalize(self.centroids, dim=-1).to(x.dtype)  # (H, k, Dh)
        return torch.einsum("bhtd,hkd->bhtk", unit(x.detach()), centroids).argmax(-1)

    @torch.no_grad()
    def update_centroids(self, q: Tensor, k: Tensor, q_cluster: Tensor, k_cluster: Tensor,
                         key_keep: Tensor | None) -> None:
        """Move each centroid towards the mean of the unit queries and keys routed to it."""
        B, H, T, Dh = q.shape
        x = torch.cat([unit(q), unit(k)], dim=2).float()  # (B, H, T + S, Dh)
        assign = F.one_hot(torch.cat([q_cluster, k_cluster], dim=2), self.n_clusters).float()
        if key_keep is not None:  # padding (self-attention: S = T) does not move centroids
            used = torch.cat([key_keep, key_keep], dim=1)  # (B, T + S)
            assign = assign * used[:, None, :, None]  # (B, H, T + S, k)
        sums = torch.einsum("bhnk,bhnd->hkd", assign, x)  # (H, k, Dh)
        counts = assign.sum(dim=(0, 2))[..., None]  # (H, k, 1)
        mean = sums / counts.clamp(min=1)
        moved = self.decay * self.centroids + (1 - self.decay) * mean.to(self.centroids.dtype)
        self.centroids.copy_(torch.where(counts > 0, moved, self.centroids))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep: Tensor | None,
               mask: Tensor | None, causal: bool, need_weights: bool,
               ) -> tuple[Tensor, Tensor | None]:
        B, H, T, Dh = q.shape
        S, n_k, device = k.size(2), self.n_clusters, q.device
        dtype = torch.promote_types(q.dtype, torch.float32)
        keep = q.new_ones(B, S, dtype=torch.bool) if key_keep is None else key_keep
        q_cluster, k_cluster = self.route(q), self.route(k)  # (B, H, T), (B, H, S)
        if self.training:
            self.update_centroids(q, k, q_cluster, k_cluster, key_keep)
        # Keys sorted by (cluster, position); padded keys form a last cluster n_k.
        k_cluster = k_cluster.masked_fill(~keep[:, None, :], n_k)  # (B, H, S)
        key_rank = k_cluster * S + torch.arange(S, device=device)  # (B, H, S)
        sorted_rank, k_order = key_rank.sort(dim=-1)  # (B, H, S): slot -> key position
        counts = tally(k_cluster, n_k + 1)  # (B, H, k + 1)
        first = counts.cumsum(-1) - counts  # (B, H, k + 1): first slot of each cluster
        lo, hi = first.gather(-1, q_cluster), (first + counts).gather(-1, q_cluster)  # (B, H, T)
        # Query i sits (lower-right aligned) after the keys of its cluster at or before it.
        aligned = torch.arange(T, device=device) + (S - T)  # (T,)
        here = torch.searchsorted(sorted_rank, q_cluster * S + aligned, right=True)  # (B, H, T)
        w = (-(-keep.sum(-1) // n_k)).clamp(min=1)[:, None, None]  # (B, 1, 1): keys per query
        if causal:
            start, stop = torch.maximum(lo, here - w), here
        else:
            start = torch.minimum(torch.maximum(here - w // 2, lo), torch.maximum(hi - w, lo))
            stop = torch.minimum(start + w, hi)  # (B, H, T)
        # Queries grouped by the key chunk (u slots) where their window starts, so a group's
        # windows lie in 3 chunks; each group is padded to whole blocks of bq queries.
        u = max(1, -(-S // (2 * n_k)))
        n_groups = S // u + 1
        bq = max(1, -(-T // (4 * n_groups)))
        n_blocks = (T + n_groups * (bq - 1)) // bq
        group = start // u  # (B, H, T)
        q_order = (group * T + torch.arange(T, device=device)).argsort(-1)  # (B, H, T)
        group_sorted = group.gather(-1, q_order)  # (B, H, T)
        size = tally(group, n_groups)  # (B, H, n_groups)
        blocks = -(-size // bq)
        rank = torch.arange(T, device=device) - (size.cumsum(-1) - size).gather(-1, group_sorted)
        layout = ((blocks.cumsum(-1) - blocks).gather(-1, group_sorted) * bq + rank)  # (B, H, T)
        q_slot = torch.empty_like(layout).scatter_(-1, q_order, layout)  # query -> layout slot
        L = n_blocks * bq
        q_pos = torch.zeros(B, H, L, dtype=torch.long, device=device).scatter_(-1, layout, q_order)
        filled = torch.zeros(B, H, L, dtype=torch.bool, device=device).scatter_(
            -1, layout, torch.ones_like(layout, dtype=torch.bool))  # (B, H, L)
        block_group = group.gather(-1, q_pos).view(B, H, n_blocks, bq)[..., 0]  # (B, H, nb)
        k_slot = block_group[..., None] * u + torch.arange(3 * u, device=device)  # (B, H, nb, 3u)
        k_pos = k_order.gather(-1, k_slot.clamp(max=S - 1).flatten(2)).view_as(k_slot)

        def rows(x: Tensor, index: Tensor) -> Tensor:  # (B, H, N, E) at (B, H, ...) -> (..., E)
            flat = index.flatten(2)[..., None].expand(-1, -1, -1, x.size(-1))
            return x.gather(2, flat).view(*index.shape, x.size(-1))

        def per_slot(x: Tensor) -> Tensor:  # (B, H, T) per query -> (B, H, nb, bq, 1)
            return x.gather(-1, q_pos).view(B, H, n_blocks, bq, 1)

        qb = rows(q.to(dtype), q_pos.view(B, H, n_blocks, bq))  # (B, H, nb, bq, Dh)
        kb, vb = rows(k.to(dtype), k_pos), rows(v.to(dtype), k_pos)  # (B, H, nb, 3u, Dh)
        scores = qb @ kb.transpose(-1, -2) * Dh ** -0.5  # (B, H, nb, bq, 3u)
        slot = k_slot[..., None, :]  # (B, H, nb, 1, 3u)
        seen = (slot >= per_slot(start)) & (slot < per_slot(stop)) & (slot < S)
        seen = seen & filled.view(B, H, n_blocks, bq, 1)  # (B, H, nb, bq, 3u)
        # Its own key (self-attention, S = T) when the window missed it: no empty row.
        own_slot = torch.empty_like(k_order).scatter_(-1, k_order, torch.arange(
            S, device=device).expand_as(k_order))  # (B, H, S): key position -> slot
        own_in = (own_slot >= start) & (own_slot < stop)  # (B, H, T)
        own_ok = keep[:, None, :] & ~own_in  # (B, H, T)
        k_own, v_own = rows(k.to(dtype), q_pos), rows(v.to(dtype), q_pos)  # (B, H, L, Dh)
        own_score = (qb.flatten(2, 3) * k_own).sum(-1).view(B, H, n_blocks, bq, 1) * Dh ** -0.5
        own_seen = per_slot(own_ok) & filled.view(B, H, n_blocks, bq, 1)  # (B, H, nb, bq, 1)
        # One softmax over the window and the own key, normalised after the weighted sum.
        low = torch.finfo(dtype).min
        scores, own_score = scores.masked_fill(~seen, low), own_score.masked_fill(~own_seen, low)
        top = torch.maximum(scores.amax(-1, keepdim=True), own_score).detach()  # (..., bq, 1)
        e, e_own = (scores - top).exp() * seen, (own_score - top).exp() * own_seen
        total = e.sum(-1, keepdim=True) + e_own  # (B, H, nb, bq, 1); 0 for an empty row
        total = total.masked_fill(total == 0, 1.0)
        out = (e @ vb + e_own * v_own.view(B, H, n_blocks, bq, Dh)) / total
        output = rows(out.flatten(2, 3), q_slot).to(v.dtype)  # (B, H, T, Dh)
        if not need_weights:
            return output, None
        p = torch.cat([e, e_own], dim=-1) / total  # (B, H, nb, bq, 3u + 1)
        query = q_pos.view(B, H, n_blocks, bq, 1)
        index = torch.cat([query * S + k_pos[..., None, :], query * S + query], dim=-1)
        weights = p.new_zeros(B, H, T * S).scatter_add_(2, index.flatten(2), p.flatten(2))
        return output, weights.view(B, H, T, S).to(v.dtype)  # (B, H, T, S)
