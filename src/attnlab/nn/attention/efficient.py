"""Shared plumbing for the efficient attention variants (sliding window, sparse, Longformer,
BigBird, Linformer, Performer, linear, Reformer, Routing, Synthesizer, Nystrom).

Each variant keeps the projections of multi-head attention (Vaswani et al., 2017) and replaces
only the step softmax(Q K^T / sqrt(Dh)) V by something cheaper. This base class owns what they
share: the four projections, head splitting, the KV cache for those that support one, and mask
handling. A subclass implements one method:

    attend(q, k, v, *, key_keep, mask, causal, need_weights) -> (output, weights | None)
        q (B, H, T, Dh); k, v (B, H, S, Dh); key_keep (B, S) bool or None (True = real key);
        mask: the full bool mask broadcastable to (B, H, T, S), only when the class sets
        supports_full_mask (else None); causal: lower-right aligned (query i of T sees key j of
        S iff j <= i + S - T).
        output (B, H, T, Dh). weights: only when need_weights, the (B, H, T, S) matrix the
        variant effectively applies (rows of non-negative weights summing to 1, or 0 for a query
        with nothing to attend to), materialized for inspection at O(T S) cost; variants whose
        weights are not over the keys (Linformer: over its k projected slots) set
        `weights_over_keys = False` and return (B, H, T, slots).

Masks: most variants only take key-padding masks (broadcastable to (B, 1, 1, S)): an arbitrary
(T, S) pattern would cost the O(T S) they exist to avoid. A full mask given to such a variant
is a ValueError naming its shape.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from attnlab.nn import functional as AF
from attnlab.nn.attention.base import Attention, AttentionOutput, check_positive
from attnlab.nn.cache import KVCache


class EfficientAttention(Attention):
    """Q, K, V and output projections around a variant's `attend`.

    Args:
        d_model: model width D.
        n_heads: heads H.
        head_dim: Dh (default D // H).
        d_context: width of the cross-attention source (default D).
        bias: biases on the projections.
    """

    supports_cache: ClassVar[bool] = False
    supports_bias: ClassVar[bool] = False
    supports_full_mask: ClassVar[bool] = False  # True: any mask broadcastable to (B, H, T, S)
    weights_over_keys: ClassVar[bool] = True  # False: need_weights returns (B, H, T, slots)
    permutation_equivariant: ClassVar[bool] = False  # True: no dependence on token order
    # The constructor argument that trades cost for accuracy ("window", "n_features", "rank",
    # "n_hashes", ...), None where the variant is not an approximation of softmax attention.
    budget_knob: ClassVar[str | None] = None
    # False (Nystrom): the implied weights need not be non-negative nor sum exactly to 1.
    normalized_weights: ClassVar[bool] = True
    # True: `attend` also receives query_keep (B, T) bool or None: in self-attention without a
    # cache the key-padding mask marks padded queries too (Nystrom leaves them out of the query
    # landmarks); None in cross-attention and decoding, where queries carry no padding mask.
    needs_query_keep: ClassVar[bool] = False
    # True (Reformer): keys come from the query projection, K = X W^Q; there is no k_proj.
    shared_qk: ClassVar[bool] = False
    # Time and memory in T (queries), S (keys), Dh and the variant's knobs, e.g.
    # "time O(T w Dh), memory O(T w)"; also stated in the class docstring.
    complexity: ClassVar[str] = ""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        head_dim: int | None = None,
        d_context: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads)
        if head_dim is None:
            if d_model % n_heads != 0:
                raise ValueError(
                    f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), "
                    "or pass head_dim explicitly"
                )
            head_dim = d_model // n_heads
        check_positive("head_dim", head_dim)
        self.head_dim = head_dim
        d_context = d_model if d_context is None else d_context
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=bias)
        if self.shared_qk and d_context != d_model:
            raise ValueError(f"shared query-key projection needs d_context == d_model "
                             f"({d_model}), got {d_context}")
        if not self.shared_qk:
            self.k_proj = nn.Linear(d_context, n_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_context, n_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * head_dim, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        key_keep: Tensor | None,
        mask: Tensor | None,
        causal: bool,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def split_mask(
        self, mask: Tensor | None, B: int, T: int, S: int
    ) -> tuple[Tensor | None, Tensor | None]:
        """Validate a user mask; return (key_keep (B, S) or None, full mask or None)."""
        if mask is None:
            return None, None
        AF.check_mask(mask, B, self.n_heads, T, S)
        if self.supports_full_mask:
            return None, mask
        shape = tuple(mask.shape)
        padded = (1,) * (4 - len(shape)) + shape  # (b, h, t, s) with 1 = broadcast
        if padded[1] != 1 or padded[2] != 1:
            raise ValueError(
                f"{type(self).__name__} takes only key-padding masks broadcastable to "
                f"(B, 1, 1, S) = ({B}, 1, 1, {S}), got mask of shape {shape}"
            )
        return mask.reshape(padded).expand(B, 1, 1, S)[:, 0, 0], None  # (B, S)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
        bias: Tensor | None = None,
        position_ids: Tensor | None = None,  # unused: no rotary form
    ) -> AttentionOutput:
        self.check_call(x, context, mask, causal, cache, bias)
        B, T, _ = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, H, T, Dh)
        key_proj = self.q_proj if self.shared_qk else self.k_proj
        k, v = self.keys_and_values(
            x, context, cache, key_proj.in_features,
            lambda source: (self.split_heads(key_proj(source)),
                               self.split_heads(self.v_proj(source))),
        )  # (B, H, S, Dh) each
        key_keep, full_mask = self.split_mask(mask, B, T, k.size(2))
        extra = {}
        if self.needs_query_keep:
            extra["query_keep"] = key_keep if context is None and cache is None else None
        out, weights = self.attend(
            q, k, v, key_keep=key_keep, mask=full_mask, causal=causal, need_weights=need_weights,
            **extra,
        )  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H * Dh)
        return AttentionOutput(self.out_proj(out), weights, cache)

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}, head_dim={self.head_dim}"
