"""Weight-only int8 quantization for inference: every linear layer's weight stored as int8 with
one float scale per output channel (symmetric, absmax / 127), activations left in floating
point. Decoding a small batch is bound by reading the weights, so a quarter of the bytes is
most of the speed to win (the weight-only scheme of gpt-fast and torchao's int8_weight_only;
Dettmers et al. 2022, "LLM.int8()", treat the harder weight-and-activation case).

The matmul is torch's fused CPU/GPU kernel `aten._weight_int8pack_mm` (int8 weights, scales
applied inside, no float copy of the weight ever made). It runs fastest with bfloat16
activations where the CPU computes bfloat16 natively (AMX / AVX512-BF16): `compute_dtype`
"auto" picks bfloat16 there, float32 elsewhere. The layer's input and output keep their dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.nn.quant.common import replace_linears, resolve_compute_dtype

K_BLOCK = 16  # the input width the fused kernel handles in blocks of


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(int8 weight (N, K), float32 scales (N,)): w ~= q * scale, |q| <= 127 per row."""
    w = weight.detach().float()  # (N, K)
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return q, scales


class Int8Linear(nn.Module):
    """y = x W^T (+ b) with W stored as int8 per-output-channel; built from an nn.Linear."""

    def __init__(self, weight: Tensor, bias: Tensor | None,
                 compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        q, scales = quantize_per_channel(weight)
        # The CPU kernel reads K in blocks of 16: with another K it returns wrong values
        # (K = 72) or crashes (K = 100, 172) in torch 2.13, so K is padded with zero columns.
        self.padding = -weight.size(1) % K_BLOCK
        q = torch.nn.functional.pad(q, (0, self.padding))  # (N, K + padding)
        self.register_buffer("weight", q)  # (N, K + padding) int8
        self.register_buffer("scales", scales.to(compute_dtype))  # (N,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.compute_dtype = compute_dtype
        self.in_features, self.out_features = weight.size(1), weight.size(0)

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype) -> Int8Linear:
        return cls(linear.weight, linear.bias, compute_dtype).to(linear.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape  # (..., K)
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype)  # (M, K)
        if self.padding:
            flat = torch.nn.functional.pad(flat, (0, self.padding))  # (M, K + padding)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)  # (M, N)
        out = out.to(x.dtype).reshape(*shape[:-1], self.out_features)  # (..., N)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def dequantized(self) -> Tensor:
        """The float32 weight the int8 one stands for (N, K)."""
        return self.weight[:, :self.in_features].float() * self.scales.float()[:, None]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, compute_dtype={self.compute_dtype}")


def quantize_int8(model: nn.Module, compute_dtype: str = "auto") -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by an Int8Linear; returns the model, for
    inference only (see `replace_linears`)."""
    device = next(model.parameters()).device
    dtype = resolve_compute_dtype(compute_dtype, device)
    return replace_linears(model, lambda linear: Int8Linear.from_linear(linear, dtype))
