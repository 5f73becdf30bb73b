"""Weight-only 4-bit quantization for inference: each linear layer's weight stored as 4-bit
integers in groups of `group_size` input columns, each group of each output row with its own
scale and offset (asymmetric min/max, w ~= (q - 8) * scale + zero, q in 0..15), activations in
floating point. An eighth of fp32's bytes: the scheme of GPTQ/AWQ-style "w4" inference without
their calibration (Frantar et al. 2023, "GPTQ"; Lin et al. 2024, "AWQ"), and of llama.cpp's
Q4_0 / Q4_1 blocks of 32, which `from_blocks` takes as they are.

The matmul is torch's fused CPU kernel `aten._weight_int4pack_mm_for_cpu` (unpacks and
dequantizes inside the product, no float copy of the weight). It needs the output width N a
multiple of 16 and K a multiple of the group size (32, 64, 128 or 256): both are padded with
zeros here and the output sliced. CPU only: torch's CUDA int4 kernel packs differently and is
not wired up (a clear error says so).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.nn.quant.common import replace_linears, resolve_compute_dtype

GROUP_SIZES = (32, 64, 128, 256)
N_BLOCK = 16  # the output width the CPU kernel handles in blocks of


def check_group_size(group_size: int) -> None:
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, got {group_size!r}")


def quantize_groupwise(weight: Tensor, group_size: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    """(q (N, K) int32 in 0..15, scales (N, K / g), zeros (N, K / g)) for a weight (N, K)
    whose K is a multiple of g: w ~= (q - 8) * scale + zero within each group."""
    n, k = weight.shape
    groups = weight.detach().float().reshape(n, k // group_size, group_size)  # (N, G, g)
    low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, G)
    scales = ((high - low) / 15).clamp(min=1e-12)  # (N, G)
    q = torch.round((groups - low[..., None]) / scales[..., None]).clamp(0, 15)  # (N, G, g)
    zeros = low + 8 * scales  # (N, G)
    return q.reshape(n, k).to(torch.int32), scales, zeros


class Int4Linear(nn.Module):
    """y = x W^T (+ b) with W stored as group-wise 4-bit integers; built from an nn.Linear
    (`from_linear`) or from 4-bit values already quantized (`from_blocks`)."""

    def __init__(self, q: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None,
                 group_size: int, compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_group_size(group_size)
        n, k = q.shape  # q (N, K) in 0..15; scales, zeros (N, K / g)
        if k % group_size or scales.shape != (n, k // group_size) or zeros.shape != scales.shape:
            raise ValueError(f"4-bit weight {tuple(q.shape)} with group size {group_size} needs "
                             f"scales and zeros of shape {(n, k // group_size)}, got "
                             f"{tuple(scales.shape)} and {tuple(zeros.shape)}")
        if q.device.type != "cpu":
            raise ValueError(f"int4 weights run on the CPU only (torch's CPU int4 kernel), "
                             f"got a weight on {q.device}")
        self.in_features, self.out_features = k, n
        self.group_size, self.compute_dtype = group_size, compute_dtype
        pad_n = -n % N_BLOCK
        q = torch.nn.functional.pad(q.to(torch.int32), (0, 0, 0, pad_n), value=8)  # (Np, K)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)  # (Np, K / 2) uint8
        affine = torch.stack([scales, zeros], dim=-1).float()  # (N, G, 2)
        affine = torch.nn.functional.pad(affine, (0, 0, 0, 0, 0, pad_n))  # (Np, G, 2)
        self.register_buffer("weight", packed)
        self.register_buffer("scales_and_zeros",
                             affine.transpose(0, 1).contiguous().to(compute_dtype))  # (G, Np, 2)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 32,
                    compute_dtype: torch.dtype = torch.float32) -> Int4Linear:
        check_group_size(group_size)
        weight = linear.weight.detach().float()  # (N, K)
        pad_k = -weight.size(1) % group_size
        q, scales, zeros = quantize_groupwise(torch.nn.functional.pad(weight, (0, pad_k)),
                                              group_size)
        layer = cls(q, scales, zeros, linear.bias, group_size, compute_dtype)
        layer.in_features = weight.size(1)  # the padded columns meet zero inputs
        return layer

    @classmethod
    def from_blocks(cls, q: Tensor, scales: Tensor, zeros: Tensor, bias: Tensor | None = None,
                    compute_dtype: torch.dtype = torch.float32) -> Int4Linear:
        """From 4-bit values q (N, K) in 0..15 with one scale and zero (N, K / 32) per block
        of 32 columns: w = (q - 8) * scale + zero (llama.cpp's Q4_1 is q * d + m, so
        scale = d and zero = m + 8 d; Q4_0 is (q - 8) * d, so zero = 0)."""
        return cls(q, scales, zeros, bias, 32, compute_dtype)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape  # (..., K)
        flat = x.reshape(-1, shape[-1]).to(self.compute_dtype)  # (M, K)
        pad_k = self.scales_and_zeros.size(0) * self.group_size - shape[-1]
        if pad_k:
            flat = torch.nn.functional.pad(flat, (0, pad_k))  # (M, Kp)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.weight, self.group_size, self.scales_and_zeros)  # (M, Np)
        if out.size(1) != self.out_features:
            out = out[:, : self.out_features]  # (M, N)
        out = out.to(x.dtype).reshape(*shape[:-1], self.out_features)  # (..., N)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def dequantized(self) -> Tensor:
        """The float32 weight the 4-bit one stands for (N, K), computed through the kernel (the
        packed layout is the kernel's own), so in the compute dtype: exact with float32
        compute, rounded to bfloat16 with bfloat16 compute."""
        eye = torch.eye(self.in_features, dtype=self.compute_dtype)  # (K, K)
        bias, self.bias = self.bias, None
        try:
            return self.forward(eye).float().T.contiguous()  # (N, K)
        finally:
            self.bias = bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, bias={self.bias is not None}, "
                f"compute_dtype={self.compute_dtype}")


def quantize_int4(model: nn.Module, group_size: int = 32,
                  compute_dtype: str = "auto") -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by an Int4Linear; returns the model, for
    inference only (see `replace_linears`)."""
    check_group_size(group_size)
    device = next(model.parameters()).device
    dtype = resolve_compute_dtype(compute_dtype, device)
    return replace_linears(model, lambda linear: Int4Linear.from_linear(linear, group_size,
                                                                        dtype))
