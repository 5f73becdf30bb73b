"""Sane upper bounds on the size fields of every family's config, checked before a model is built.

A config.json with `vocab_size: 10**12` used to end in a torch allocation traceback (or the
machine swapping) in from_pretrained, generate, translate and viz. The bounds below are far
above every real model, so they refuse only sizes no one trains, and they are checked both by
the folder owner (before anything is built) and by each config's `__post_init__`.

The largest real values they must admit (model cards / config.json of each):

| field | LLaMA-2-70B | GPT-2 XL | T5-11B | largest known | bound |
|---|---|---|---|---|---|
| vocab_size | 32,000 | 50,257 | 32,128 | 256,000 (Gemma) | 2**22 = 4,194,304 |
| d_model | 8,192 | 1,600 | 1,024 | 16,384 (LLaMA-3.1-405B) | 2**16 = 65,536 |
| d_ff | 28,672 | 6,400 | 65,536 | 65,536 (T5-11B) | 2**18 = 262,144 |
| n_heads / n_kv_heads | 64 / 8 | 25 | 128 | 128 | 2**12 = 4,096 |
| n_layers | 80 | 48 | 24 + 24 | 126 (LLaMA-3.1-405B) | 2**12 = 4,096 |
| max_seq_len | 4,096 | 1,024 | 512 | 131,072 (LLaMA-3.1) | 2**20 = 1,048,576 |
| head_dim (T5 d_kv) | 128 | 64 | 128 | 256 | 2**14 = 16,384 |

The remaining sizes (BERT's type_vocab_size, T5's relative-position buckets, ConvS2S's
d_hidden and kernel_size, a classifier's num_labels, Mamba's d_state / d_conv / expand (16 / 4 /
2 in every released checkpoint), RWKV's attention_hidden_size) get bounds of the same
generosity.
A config can still ask for more memory than the machine has within these bounds; the folder
owner also compares every tensor the config implies with the weights on disk before building
the model (`io/folder.py`), so a folder's model is never larger than its weights file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnlab.errors import ConfigError

SIZE_LIMITS: dict[str, int] = {
    "vocab_size": 2**22,
    "d_model": 2**16,
    "d_hidden": 2**16,
    "d_ff": 2**18,
    "n_heads": 2**12,
    "n_kv_heads": 2**12,
    "head_dim": 2**14,
    "n_layers": 2**12,
    "n_decoder_layers": 2**12,
    "max_seq_len": 2**20,
    "type_vocab_size": 2**16,
    "num_buckets": 2**16,
    "max_distance": 2**20,
    "kernel_size": 2**10,
    "num_labels": 2**20,
    "d_state": 2**12,
    "d_conv": 2**10,
    "expand": 2**6,
    "attention_hidden_size": 2**16,
}


def size_error(name: str, value: Any) -> str | None:
    """Why `value` is not a sane `name`, or None when it is (or `name` is not a size field).
    Sizes must be ints (not bool) in [1, bound]; num_labels may be 0 (no classifier) and an
    optional size may be None."""
    if name not in SIZE_LIMITS or value is None:
        return None
    low = 0 if name == "num_labels" else 1
    bound = SIZE_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be an integer, got {value!r}"
    if not low <= value <= bound:
        return (f"{name}={value} is outside the sane range [{low}, {bound:,}] (the bound "
                f"admits every real model up to LLaMA-2-70B, GPT-2 XL and T5-11B; "
                f"see attnlab.io.limits)")
    return None


def check_sizes(values: Mapping[str, Any], where: str = "config",
                error: type[Exception] = ConfigError) -> None:
    """Raise `error` naming `where` and the first size field of `values` out of bounds."""
    for name, value in values.items():
        problem = size_error(name, value)
        if problem is not None:
            raise error(f"{where}: {problem}")
