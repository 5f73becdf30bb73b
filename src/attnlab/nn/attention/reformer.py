"""LSH attention of the Reformer (Kitaev, Kaiser and Levskaya, 2020, "Reformer: The Efficient
Transformer").

Keys are the queries (one shared projection), unit-normalised. Angular LSH (a random rotation
R, bucket = argmax [x R; -x R]) gives near vectors the same bucket; each of `n_hashes` rounds
sorts the tokens by (bucket, position) and cuts that order into chunks of `bucket_size`. A token
attends to the tokens of its own bucket in its chunk and the previous one (causal: to the
`bucket_size` latest earlier tokens of its bucket, a set no future token can change), and to
itself only when it has nothing else (paper sec. 2.2). Rounds are merged through their
log-sum-exp, each (query, key) pair counted once over the rounds (paper eq. 6-7).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.nn.attention.base import ATTENTION, check_positive
from attnlab.nn.attention.efficient import EfficientAttention

SELF_PENALTY = 1e5  # subtracted from a token's score with itself: used only when alone (eq. 7)


def bucket_count(n: int, bucket_size: int) -> int:
    """Buckets for n tokens: 1 when one chunk holds them all, else an even ~n / bucket_size."""
    return 1 if n <= bucket_size else 2 * math.ceil(n / (2 * bucket_size))


@ATTENTION.register("reformer")
class ReformerAttention(EfficientAttention):
    """Shared-QK LSH attention: sort by hash bucket, attend within chunks.

    Time O(R T c Dh + R T (T / c) Dh + R T log T) and memory O(R T c + R T^2 / c) (R^2 T c
    for the pair counts when R > 1) for R = n_hashes rounds and chunks of c = bucket_size.
    Hashing takes an argmax over about T / c buckets per token, so at a fixed bucket size its
    term is quadratic (T^2 / c): measured, time grows about as T^1.4 up to T = 16384.
    One chunk (T <= c) is exact shared-QK attention without self-attention.

    Args:
        d_model, n_heads, head_dim, bias: as EfficientAttention.
        n_hashes: hash rounds R (more rounds find more of each query's near keys).
        bucket_size: chunk length c; about T / c buckets, rounded to an even number.
        max_length: longest sequence (sizes the buffer of random rotations).
    """

    supports_causal: ClassVar[bool] = True
    supports_mask: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = False
    supports_cache: ClassVar[bool] = False
    shared_qk: ClassVar[bool] = True
    budget_knob: ClassVar[str | None] = "n_hashes"
    complexity: ClassVar[str] = (
        "time O(R T (c + T / c) Dh + R T log T), memory O(R T (c + T / c)) (R = n_hashes; "
        "the T / c term is the hash's argmax over buckets)"
    )

    def __init__(self, d_model: int, n_heads: int, *, n_hashes: int = 2, bucket_size: int = 32,
                 max_length: int = 4096, head_dim: int | None = None, bias: bool = True) -> None:
        super().__init__(d_model, n_heads, head_dim=head_dim, bias=bias)
        check_positive("n_hashes", n_hashes)
        check_positive("bucket_size", bucket_size)
        check_positive("max_length", max_length)
        self.n_hashes = n_hashes
        self.bucket_size = bucket_size
        self.max_length = max_length
        half = max(1, bucket_count(max_length, bucket_size) // 2)
        rotations = torch.randn(n_heads, n_hashes, self.head_dim, half)  # (H, R, Dh, n/2)
        self.register_buffer("rotations", rotations)

    def redraw(self) -> None:
        """Draw new random rotations from the global RNG."""
        self.rotations.normal_()

    def hash(self, k: Tensor, key_keep: Tensor | None = None) -> Tensor:
        """Bucket of every key in every round: (B, H, S, Dh) -> (B, H, R, S) long.

        Rows with padding hash with the bucket count of their real length (so right padding
        changes nothing); padded keys get a bucket after all the others.
        """
        B, H, S, _ = k.shape
        keep = k.new_ones(B, S, dtype=torch.bool) if key_keep is None else key_keep
        half = bucket_count(S, self.bucket_size) // 2
        n_real = keep.sum(-1)  # (B,)
        half_b = torch.where(n_real <= self.bucket_size, 0,
                             -(-n_real // (2 * self.bucket_size)))  # (B,)
        half_b = half_b[:, None, None, None]  # (B, 1, 1, 1)
        buckets = k.new_zeros(B, H, self.n_hashes, S, dtype=torch.long)  # (B, H, R, S)
        if half > 0:
            direction = F.normalize(k.detach(), dim=-1)
            rotations = self.rotations[..., :half].to(k.dtype)  # (H, R, Dh, half)
            rotated = torch.einsum("bhsd,hrdn->bhrsn", direction, rotations)  # (B, H, R, S, half)
            unused = torch.arange(half, device=k.device) >= half_b[..., None]  # (B, 1, 1, 1, half)
            both = torch.cat([rotated.masked_fill(unused, -math.inf),
                              (-rotated).masked_fill(unused, -math.inf)], dim=-1)
            index = both.argmax(-1)  # (B, H, R, S) in [0, 2 half)
            # Buckets of a row numbered 0 .. 2 half_b - 1 whatever the padded length.
            index = torch.where(index >= half, index - half + half_b, index)
            buckets = torch.where(half_b > 0, index, buckets)
        return buckets.masked_fill(~keep[:, None, None, :], 2 * half + 1)  # (B, H, R, S)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, key_keep: Tensor | None,
               mask: Tensor | None, causal: bool, need_weights: bool,
               ) -> tuple[Tensor, Tensor | None]:
        B, H, T, Dh = q.shape
        if T > self.max_length:
            raise ValueError(f"sequence length must be <= max_length={self.max_length}, got {T}")
        R, c = self.n_hashes, self.bucket_size
        n = -(-T // c)  # chunks
        pad = n * c - T
        dtype = torch.promote_types(q.dtype, torch.float32)
        keep = q.new_ones(B, T, dtype=torch.bool) if key_keep is None else key_keep
        buckets = self.hash(k, key_keep)  # (B, H, R, T)
        position = torch.arange(T, device=q.device)
        order = (buckets * T + position).argsort(dim=-1)  # (B, H, R, T): slot -> position
        slot_of = order.argsort(dim=-1)  # (B, H, R, T): position -> slot

        def chunk(x: Tensor) -> Tensor:  # (B, H, R, T) -> (B, H, R, n, c), padding at the end
            return F.pad(x, (0, pad), value=-1).unflatten(-1, (n, c))

        def look(x: Tensor) -> Tensor:  # (B, H, R, n, c, ...) -> (B, H, R, n, 2c, ...)
            return torch.cat([x.roll(1, dims=3), x], dim=4)

        def sort(x: Tensor) -> Tensor:  # (B, H, T, E) -> (B, H, R, n, c, E) in slot order
            index = F.pad(order, (0, pad)).unsqueeze(-1).expand(B, H, R, n * c, x.size(-1))
            x = x.unsqueeze(2).expand(B, H, R, T, x.size(-1)).gather(3, index)
            return x.unflatten(3, (n, c))  # (B, H, R, n, c, E)

        qs = sort(q.to(dtype))  # (B, H, R, n, c, Dh)
        ks = look(sort(F.normalize(k.to(dtype), dim=-1)))  # (B, H, R, n, 2c, Dh)
        vs = look(sort(v.to(dtype)))  # (B, H, R, n, 2c, Dh)
        scores = qs @ ks.transpose(-1, -2) * Dh ** -0.5  # (B, H, R, n, c, 2c)

        slot = torch.arange(n * c, device=q.device).view(n, c)
        q_slot = slot[:, :, None]  # (n, c, 1)
        k_slot = torch.cat([slot - c, slot], dim=-1)[:, None, :]  # (n, 1, 2c); < 0: no chunk
        q_pos = chunk(order)[..., None]  # (B, H, R, n, c, 1); -1 = padding slot
        k_pos = look(chunk(order))[..., None, :]  # (B, H, R, n, 1, 2c)
        q_bucket = chunk(buckets.gather(-1, order))[..., None]  # (B, H, R, n, c, 1)
        k_bucket = look(q_bucket.squeeze(-1))[..., None, :]  # (B, H, R, n, 1, 2c)
        real = keep[:, None, None, :].expand(B, H, R, T).gather(-1, order)  # (B, H, R, T)
        allowed = (look(chunk(real.long()) > 0)[..., None, :] & (q_bucket == k_bucket)
                   & (k_slot >= 0) & (q_pos >= 0))  # (B, H, R, n, c, 2c)
        if causal:  # one bucket is sorted by position: its c latest keys before the query
            allowed = allowed & (k_slot <= q_slot) & (k_slot >= q_slot - c)
        scores = scores - SELF_PENALTY * (q_pos == k_pos)
        if R > 1:
            count = self.pair_rounds(slot_of, buckets, q_pos, k_pos, causal).to(dtype)
            scores = scores - count.log()
        scores = scores.masked_fill(~allowed, torch.finfo(dtype).min)
        lse = scores.logsumexp(-1)  # (B, H, R, n, c)
        p = torch.exp(scores - lse[..., None]) * allowed  # (B, H, R, n, c, 2c)
        out = (p @ vs).flatten(3, 4)  # (B, H, R, n c, Dh)
        out = out.gather(3, slot_of[..., None].expand(B, H, R, T, Dh))  # (B, H, R, T, Dh)
        lse = lse.flatten(3).gather(3, slot_of)  # (B, H, R, T)
        round_weight = torch.softmax(lse, dim=2)  # (B, H, R, T)
        output = (round_weight[..., None] * out).sum(2).to(v.dtype)  # (B, H, T, Dh)
        if not need_weights:
            return output, None
        p = p * chunk(round_weight.gather(3, order))[..., None].clamp(min=0)  # (B, H, R, n, c, 2c)
        flat = (q_pos.clamp(min=0) * T + k_pos.clamp(min=0)).expand_as(p).flatten(2)
        weights = p.new_zeros(B, H, T * T).scatter_add_(2, flat, p.flatten(2))  # (B, H, T S)
        return output, weights.view(B, H, T, T).to(v.dtype)  # (B, H, T, S)

    def pair_rounds(self, slot_of: Tensor, buckets: Tensor, q_pos: Tensor, k_pos: Tensor,
                    causal: bool) -> Tensor:
        """In how many rounds each (query, key) slot pair meets, >= 1: (B, H, R, n, c, 2c)."""
        B, H, R, n, c, _ = q_pos.shape
        q_pos = q_pos.clamp(min=0).expand(B, H, R, n, c, 1).flatten(2)  # (B, H, R n c)
        k_pos = k_pos.clamp(min=0).expand(B, H, R, n, 1, 2 * c).flatten(2)  # (B, H, R n 2c)
        count = torch.zeros(B, H, R, n, c, 2 * c, device=slot_of.device)
        for r in range(R):
            s_r, b_r = slot_of[:, :, r], buckets[:, :, r]  # (B, H, T)
            sq = s_r.gather(2, q_pos).view(B, H, R, n, c, 1)
            sk = s_r.gather(2, k_pos).view(B, H, R, n, 1, 2 * c)
            met = b_r.gather(2, q_pos).view(B, H, R, n, c, 1) == b_r.gather(2, k_pos).view(
                B, H, R, n, 1, 2 * c)
            if causal:
                met = met & (sk <= sq) & (sk >= sq - c)
            else:
                met = met & ((sk // c == sq // c) | (sk // c == sq // c - 1))
            count = count + met
        return count.clamp(min=1)  # (B, H, R, n, c, 2c)
