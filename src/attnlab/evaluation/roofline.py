"""The roofline of a machine and of a model (Williams, Waterman and Patterson 2009, "Roofline:
an insightful visual performance model"): the fastest a job can go when bound by memory
bandwidth (decoding: every weight and the KV cache read once per step) or by matmul FLOP/s
(training: 6 FLOPs per parameter per token plus attention, Chowdhery et al. 2022, PaLM,
appendix B).

    peak = matmul_peak(torch.float32)         # Measurement: FLOP/s of a large GEMM
    bw = read_bandwidth()                     # Measurement: GB/s of summing a large tensor
    generation_roofline(model, batch=1, context=128, bandwidth_gb_s=bw.value)   # tokens/s
    training_roofline(model, seq_len=128, peak_flops=peak.value)                 # tokens/s

The model functions read only the module's tensors and its config (`n_layers`, `d_model`,
`n_heads`, optional `n_kv_heads`, as the decoder-only families declare them).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab.errors import ConfigError

# The /proc/cpuinfo flags that decide matmul and bandwidth figures on an x86 CPU.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
             "amx_bf16", "amx_int8", "amx_fp16")


@dataclass(frozen=True)
class Measurement:
    """One measured limit: its value, unit, the torch thread count and what was timed."""

    value: float
    unit: str
    threads: int
    op: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (empty where /proc/cpuinfo is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return [f for f in CPU_FLAGS if f in flags]


def has_fast_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up, not counted
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048,
                repeats: int = 5) -> Measurement:
    """FLOP/s of an (n x n) @ (n x n) GEMM in `dtype` on the CPU: 2 n^3 over the best of
    `repeats` timed runs after one warm-up."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch dtype, got {dtype!r}")
    _positive("n", n)
    _positive("repeats", repeats)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    seconds = _best_seconds(lambda: a @ b, repeats)
    name = str(dtype).removeprefix("torch.")
    return Measurement(2 * n**3 / seconds, "FLOP/s", torch.get_num_threads(),
                       f"torch.matmul {n}x{n} @ {n}x{n} {name}, best of {repeats}")


def read_bandwidth(nbytes: int = 2 * 2**30, repeats: int = 5) -> Measurement:
    """GB/s (10^9 bytes) of streaming a float32 tensor of `nbytes` from memory with
    `tensor.sum()`, best of `repeats` after one warm-up. Choose nbytes well above the
    last-level cache, or the figure is the cache's."""
    _positive("nbytes", nbytes)
    _positive("repeats", repeats)
    x = torch.empty(max(1, nbytes // 4), dtype=torch.float32).fill_(1.0)  # pages touched
    seconds = _best_seconds(x.sum, repeats)
    return Measurement(x.numel() * 4 / seconds / 1e9, "GB/s", torch.get_num_threads(),
                       f"torch.sum over a {x.numel() * 4 / 2**30:.3g} GiB float32 tensor, "
                       f"best of {repeats}")


def _shape(model: nn.Module) -> tuple[int, int, int, int, int]:
    """(n_layers, d_model, n_heads, n_kv_heads, head_dim) from the model's config."""
    config = getattr(model, "config", None)
    needed = ("n_layers", "d_model", "n_heads")
    if config is None or any(not hasattr(config, f) for f in needed):
        raise ConfigError(f"model must have a config with {', '.join(needed)} (a decoder-only "
                          f"family such as gpt2 or llama), got {type(model).__name__}")
    kv = getattr(config, "n_kv_heads", None) or config.n_heads
    head_dim = getattr(config, "head_dim", None) or config.d_model // config.n_heads
    return config.n_layers, config.d_model, config.n_heads, kv, head_dim


def _tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights read whole, lookup tables): the model's state tensors, each counted once
    (a tied embedding / output table is one tensor, read whole by the output matmul); an
    embedding table that nothing else shares is a lookup, of which a step reads a few rows."""
    state = model.state_dict(keep_vars=True)
    users: dict[int, int] = {}
    for tensor in state.values():
        users[id(tensor)] = users.get(id(tensor), 0) + 1
    lookups = {id(m.weight): m.weight for m in model.modules()
               if isinstance(m, nn.Embedding) and users.get(id(m.weight), 0) == 1}
    whole: dict[int, torch.Tensor] = {}
    for tensor in state.values():
        if id(tensor) not in lookups:
            whole.setdefault(id(tensor), tensor)
    return list(whole.values()), list(lookups.values())


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _activation_bytes(model: nn.Module) -> int:
    """Bytes per element of the model's floating tensors (the KV cache's dtype)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.element_size()
    return 4


def generation_bytes_per_token(model: nn.Module, batch: int, context: int) -> int:
    """Bytes read per decoding step (one new token for each of `batch` sequences) at `context`
    tokens of history: every weight once
    (in its own dtype; a tied embedding / output table once), `batch` rows of each lookup
    table (token and learned-position embeddings), and the KV cache:
    2 x layers x n_kv_heads x head_dim x context x batch x bytes."""
    _positive("batch", batch)
    _positive("context", context)
    n_layers, _, _, kv_heads, head_dim = _shape(model)
    whole, lookups = _tensors(model)
    weights = sum(_nbytes(t) for t in whole)
    rows = sum(batch * t.shape[-1] * t.element_size() for t in lookups)
    cache = 2 * n_layers * kv_heads * head_dim * context * batch * _activation_bytes(model)
    return weights + rows + cache


def generation_roofline(model: nn.Module, batch: int, context: int,
                        bandwidth_gb_s: float) -> float:
    """Tokens/s of decoding bound by reading memory: bandwidth / bytes per step x batch."""
    if not bandwidth_gb_s > 0:
        raise ConfigError(f"bandwidth_gb_s must be positive, got {bandwidth_gb_s!r}")
    return bandwidth_gb_s * 1e9 / generation_bytes_per_token(model, batch, context) * batch


def training_flops_per_token(model: nn.Module, seq_len: int) -> int:
    """FLOPs of training on one token at sequence length `seq_len`, PaLM's count
    (Chowdhery et al. 2022, appendix B): 6 x N + 12 x layers x seq_len x d_model, N the
    parameters that take part in a matmul (every weight but the lookup tables; a tied output
    table counts). Kaplan et al. 2020 (eq. 2.2) write the attention term as half of this."""
    _positive("seq_len", seq_len)
    n_layers, d_model, _, _, _ = _shape(model)
    whole, _ = _tensors(model)
    params = sum(t.numel() for t in whole)
    return 6 * params + 12 * n_layers * seq_len * d_model


def training_roofline(model: nn.Module, seq_len: int, peak_flops: float) -> float:
    """Tokens/s of training bound by matmul FLOP/s: peak / training FLOPs per token."""
    if not peak_flops > 0:
        raise ConfigError(f"peak_flops must be positive, got {peak_flops!r}")
    return peak_flops / training_flops_per_token(model, seq_len)
