"""A GGUF file's 4-bit blocks kept 4-bit: each projection stored as llama.cpp's Q4_0 or Q4_1
becomes an `Int4Linear` holding the same 4-bit values, scales and offsets, so a Q4 file runs
in an eighth of fp32's memory on torch's fused int4 kernel instead of being dequantized.

ggml's blocks (its ggml-common.h): 32 weights along a row, stored as a float16 scale d (Q4_1:
and a float16 minimum m) then 16 bytes of 4-bit values, the low nibbles holding weights 0-15 and
the high nibbles 16-31. Q4_0 means w = (q - 8) d, Q4_1 w = q d + m; Int4Linear's form
(q - 8) * scale + zero takes both with scale = d and zero = 0 or m + 8 d.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnlab.io.gguf_names import hf_name, unpermute_rows
from attnlab.io.hf import llama
from attnlab.nn.quant import Int4Linear, resolve_compute_dtype

BLOCK = 32
FOUR_BIT = ("Q4_0", "Q4_1")


def four_bit_blocks(tensor: Any) -> tuple[Tensor, Tensor, Tensor]:
    """(q (N, K) int32 in 0..15, scale (N, K / 32), zero (N, K / 32)) of a Q4_0 / Q4_1 GGUF
    tensor whose numpy shape is (N, K): w = (q - 8) * scale + zero."""
    kind = tensor.tensor_type.name
    k, n = (int(d) for d in tensor.shape.tolist())  # GGUF lists the innermost dimension first
    raw = np.asarray(tensor.data, dtype=np.uint8).reshape(n, k // BLOCK, -1)  # (N, G, bytes)
    d = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)  # (N, G)
    if kind == "Q4_1":
        m = raw[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)  # (N, G)
        zero, nibbles = m + 8 * d, raw[..., 4:]
    else:
        zero, nibbles = np.zeros_like(d), raw[..., 2:]
    q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1)  # (N, G, 32)
    return (torch.from_numpy(q.reshape(n, k).astype(np.int32)), torch.from_numpy(d),
            torch.from_numpy(zero))


def keep_four_bit(model: nn.Module, reader: Any, permuted: bool,
                  compute_dtype: str = "auto") -> dict[str, int]:
    """Replace (in place) each linear layer of `model` whose GGUF tensor is Q4_0 / Q4_1 by an
    Int4Linear of the file's blocks (query/key rows put back in our order where `permuted`);
    a Q4 token embedding tied to the output layer gives that layer its blocks. Returns how
    many tensors of each kind were kept."""
    config = model.config
    dtype = resolve_compute_dtype(compute_dtype, torch.device("cpu"))
    heads = {"q_proj": config.n_heads, "k_proj": config.n_kv_heads or config.n_heads}
    kept: dict[str, int] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in FOUR_BIT or len(tensor.shape) != 2:
            continue
        name = hf_name(tensor.name)
        if name == "model.embed_tokens.weight":
            if not config.tie_embeddings:
                continue  # a lookup table, dequantized for the lookup
            path = "lm_head"
        else:
            ours = llama.state_dict_from_hf({name: torch.empty(0)}, config)
            path = next(iter(ours)).removesuffix(".weight")
        layer = model.get_submodule(path)
        if type(layer) is not nn.Linear:
            continue
        q, scale, zero = four_bit_blocks(tensor)
        projection = name.rsplit(".", 2)[-2]
        if permuted and projection in heads:
            q, scale, zero = (unpermute_rows(t, heads[projection]) for t in (q, scale, zero))
        parent, _, child = path.rpartition(".")
        module = model.get_submodule(parent) if parent else model
        setattr(module, child, Int4Linear.from_blocks(q, scale, zero, layer.bias, dtype))
        kept[kind] = kept.get(kind, 0) + 1
    return kept
