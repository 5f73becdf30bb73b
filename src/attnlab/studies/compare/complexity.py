"""Table 1 of Vaswani et al. (2017), measured: sequential operations per layer and maximum path
length between two positions, for self-attention, recurrent and convolutional layers.

The paper states them as complexity classes. Here they are counted on real layers:
- sequential operations: the longest chain of dependent operations in one layer's autograd
  graph (ops that must run one after another) for n positions, divided by the same chain for
  one position: how many times longer the critical path gets as the sequence grows;
- maximum path length: the layers needed before output position n - 1 depends on input
  position 0 at all (the Jacobian entry becomes non-zero; each position is its own leaf
  tensor), times the sequential steps each of those layers takes: the number of dependent
  hops a signal makes between the two ends of the sequence.
The fused nn.LSTM hides its n steps inside one autograd node, so the recurrent layer is
unrolled from an LSTM cell of the same size: the same arithmetic, with its steps visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.nn.attention import ATTENTION

KINDS = ("self_attention", "recurrent", "convolution")
# Vaswani et al. 2017, Table 1 (convolution: contiguous kernels, as in ConvS2S).
PAPER = {
    "self_attention": {"complexity": "O(n^2 d)", "sequential": "O(1)", "path": "O(1)"},
    "recurrent": {"complexity": "O(n d^2)", "sequential": "O(n)", "path": "O(n)"},
    "convolution": {"complexity": "O(k n d^2)", "sequential": "O(1)", "path": "O(n/k)"},
}


class UnrolledLSTM(nn.Module):
    """An LSTM layer run step by step (h_t depends on h_{t-1}): (B, n, D) -> (B, n, D)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(d, d)

    def forward(self, x: Tensor) -> Tensor:
        h = c = x.new_zeros(x.size(0), x.size(2))  # (B, D)
        outputs = []
        for t in range(x.size(1)):
            h, c = self.cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.stack(outputs, dim=1)  # (B, n, D)


class GLUConv(nn.Module):
    """A ConvS2S layer: width-k convolution to 2D channels, gated linear unit, residual."""

    def __init__(self, d: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, 2 * d, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x.transpose(1, 2))  # (B, 2D, n)
        return x + nn.functional.glu(h, dim=1).transpose(1, 2)  # (B, n, D)


class SelfAttentionLayer(nn.Module):
    """Multi-head self-attention with a residual: (B, n, D) -> (B, n, D)."""

    def __init__(self, d: int, n_heads: int = 4) -> None:
        super().__init__()
        self.attn = ATTENTION.build("multi_head", d_model=d, n_heads=n_heads, kernel="reference")

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(x).output


def build_layer(kind: str, d: int = 32, kernel_size: int = 3) -> nn.Module:
    if kind == "self_attention":
        return SelfAttentionLayer(d)
    if kind == "recurrent":
        return UnrolledLSTM(d)
    if kind == "convolution":
        return GLUConv(d, kernel_size)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _graph(output: Tensor) -> dict[Any, list[Any]]:
    """Autograd graph as node -> input nodes, from `output` back to the leaves."""
    edges: dict[Any, list[Any]] = {}
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in edges:
            continue
        edges[node] = [n for n, _ in node.next_functions if n is not None]
        stack.extend(edges[node])
    return edges


def longest_chain(output: Tensor) -> int:
    """Operations on the longest dependent chain from the leaves to `output`."""
    edges = _graph(output)
    depth: dict[Any, int] = {}
    for root in edges:  # iterative post-order depth, the graph is a DAG
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in depth:
                continue
            if expanded:
                depth[node] = 1 + max((depth[n] for n in edges[node]), default=0)
            else:
                stack.append((node, True))
                stack.extend((n, False) for n in edges[node] if n not in depth)
    return depth[output.grad_fn]



def _leaves(n: int, d: int) -> tuple[list[Tensor], Tensor]:
    leaves = [torch.randn(1, d, requires_grad=True) for _ in range(n)]
    return leaves, torch.stack(leaves, dim=1)  # (1, n, D), one leaf per position


def sequential_steps(layer: nn.Module, n: int, d: int) -> tuple[int, float]:
    """(critical-path ops at n, dependent steps): 1 when the critical path does not grow with
    n, else how many times the per-position chain repeats (n for a recurrence)."""
    chain = {m: longest_chain(layer(_leaves(m, d)[1])) for m in sorted({2, 3, n})}
    per_step = chain[3] - chain[2]
    steps = 1.0 if per_step <= 0 else 2 + (chain[n] - chain[2]) / per_step
    return chain[n], round(steps, 2)


def measure(kind: str, n: int, *, d: int = 32, kernel_size: int = 3,
            max_layers: int = 128) -> dict[str, Any]:
    """Critical-path ops of one layer, sequential steps, layers needed and path length."""
    if n < 2:
        raise ValueError(f"n must be at least 2 positions, got {n}")
    torch.manual_seed(0)
    first = build_layer(kind, d, kernel_size)
    chain, steps = sequential_steps(first, n, d)
    record: dict[str, Any] = {"kind": kind, "n": n, "critical_path_ops": chain,
                              "sequential_steps": steps, "layers_needed": None,
                              "path_length": None}
    leaves, x = _leaves(n, d)
    for count in range(1, min(max_layers, n + 1) + 1):  # stack layers until position 0 reaches
        x = (first if count == 1 else build_layer(kind, d, kernel_size))(x)
        (grad,) = torch.autograd.grad(x[0, -1].sum(), leaves[0], retain_graph=True,
                                      allow_unused=True)
        if grad is not None and bool(grad.abs().sum() > 0):
            record.update(layers_needed=count, path_length=round(count * steps, 2))
            break
    return record


def growth(records: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares exponent b of value ~ n^b (0: constant, 1: linear)."""
    points = [(math.log(r["n"]), math.log(r[key])) for r in records if r.get(key)]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else None


def table1(lengths: list[int], *, kernel_size: int = 3,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measured Table 1 for every layer kind over `lengths`."""
    result: dict[str, Any] = {}
    for kind in KINDS:
        records = []
        for n in lengths:
            if progress:
                progress(f"{kind} n={n}")
            records.append(measure(kind, n, kernel_size=kernel_size))
        result[kind] = {
            "paper": PAPER[kind], "records": records,
            "sequential_growth": growth(records, "sequential_steps"),
            "path_growth": growth(records, "path_length"),
        }
    return result
