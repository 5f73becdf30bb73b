"""The roofline arithmetic against hand counts for gpt2-tiny (tied table, learned positions,
biases) and llama-tiny (GQA 4/2, untied head, no biases); the measurements return positive
finite numbers on tiny sizes (no test asserts speed)."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.evaluation.roofline import (
    cpu_flags,
    generation_bytes_per_token,
    generation_roofline,
    matmul_peak,
    read_bandwidth,
    training_flops_per_token,
    training_roofline,
)
from attnlab.models import build_model

# gpt2-tiny: V=1000, positions 128, d=64, 4 heads, 2 layers, d_ff=256, tied output table.
# Per layer: q, k, v, out 4 x (64*64 + 64); up 256*64 + 256; down 64*256 + 64; 2 LayerNorms
# 2 x 2*64.  = 16640 + 16640 + 16448 + 256 = 49984.  Final LayerNorm 128.
GPT2_MATMUL_PARAMS = 2 * 49984 + 128 + 1000 * 64  # the tied table is the output matmul
GPT2_POSITIONS = 128 * 64  # a lookup: a step reads B rows
# llama-tiny: V=1000, d=64, 4 heads, 2 kv heads (head_dim 16), 2 layers, d_ff=172, no biases.
# Per layer: q 64*64, k 32*64, v 32*64, out 64*64, gate/up/down 3 x 172*64, 2 RMSNorms 2*64.
LLAMA_LAYER = 4096 + 2048 + 2048 + 4096 + 3 * 11008 + 128  # 45440
LLAMA_MATMUL_PARAMS = 2 * LLAMA_LAYER + 64 + 1000 * 64  # + final norm + lm_head


def test_hand_counts_match_the_presets():
    assert sum(p.numel() for p in build_model("gpt2-tiny").parameters()) == (
        GPT2_MATMUL_PARAMS + GPT2_POSITIONS)
    assert sum(p.numel() for p in build_model("llama-tiny").parameters()) == (
        LLAMA_MATMUL_PARAMS + 1000 * 64)  # + the untied embedding table


@pytest.mark.parametrize(("batch", "context"), [(1, 1), (1, 128), (8, 512), (3, 7)])
def test_generation_bytes_gpt2_tiny(batch, context):
    kv = 2 * 2 * 4 * 16 * context * batch * 4  # K and V x layers x heads x head_dim x fp32
    expected = GPT2_MATMUL_PARAMS * 4 + batch * 64 * 4 + kv  # + one position row per sequence
    assert generation_bytes_per_token(build_model("gpt2-tiny"), batch, context) == expected


@pytest.mark.parametrize(("batch", "context"), [(1, 1), (1, 128), (8, 512), (3, 7)])
def test_generation_bytes_llama_tiny_gqa(batch, context):
    kv = 2 * 2 * 2 * 16 * context * batch * 4  # 2 kv heads, not 4
    expected = LLAMA_MATMUL_PARAMS * 4 + batch * 64 * 4 + kv  # + one embedding row per sequence
    assert generation_bytes_per_token(build_model("llama-tiny"), batch, context) == expected


def test_tied_llama_counts_its_table_once():
    tied = build_model("llama-tiny", tie_embeddings=True)
    kv = 2 * 2 * 2 * 16 * 10 * 1 * 4
    assert generation_bytes_per_token(tied, 1, 10) == LLAMA_MATMUL_PARAMS * 4 + kv
    assert training_flops_per_token(tied, 10) == 6 * LLAMA_MATMUL_PARAMS + 12 * 2 * 10 * 64


def test_bf16_model_reads_half_the_bytes():
    model = build_model("llama-tiny").to(torch.bfloat16)
    kv = 2 * 2 * 2 * 16 * 32 * 2 * 2
    assert generation_bytes_per_token(model, 2, 32) == LLAMA_MATMUL_PARAMS * 2 + 2 * 64 * 2 + kv


def test_training_flops():
    assert training_flops_per_token(build_model("gpt2-tiny"), 128) == (
        6 * GPT2_MATMUL_PARAMS + 12 * 2 * 128 * 64)
    assert training_flops_per_token(build_model("llama-tiny"), 256) == (
        6 * LLAMA_MATMUL_PARAMS + 12 * 2 * 256 * 64)


def test_rooflines_are_the_ratios():
    model = build_model("llama-tiny")
    per_step = generation_bytes_per_token(model, 8, 100)
    assert generation_roofline(model, 8, 100, bandwidth_gb_s=20.0) == pytest.approx(
        20e9 / per_step * 8)
    flops = training_flops_per_token(model, 128)
    assert training_roofline(model, 128, peak_flops=3e11) == pytest.approx(3e11 / flops)


def test_bad_input_is_named():
    model = build_model("gpt2-tiny")
    with pytest.raises(ConfigError, match="batch must be a positive integer, got 0"):
        generation_bytes_per_token(model, 0, 10)
    with pytest.raises(ConfigError, match="context"):
        generation_bytes_per_token(model, 1, -1)
    with pytest.raises(ConfigError, match="seq_len"):
        training_flops_per_token(model, 0)
    with pytest.raises(ConfigError, match="bandwidth_gb_s must be positive"):
        generation_roofline(model, 1, 1, bandwidth_gb_s=0.0)
    with pytest.raises(ConfigError, match="model must have a config"):
        training_flops_per_token(torch.nn.Linear(2, 2), 8)
    with pytest.raises(ConfigError, match="dtype must be a floating"):
        matmul_peak(torch.int32, n=8)
    with pytest.raises(ConfigError, match="nbytes"):
        read_bandwidth(nbytes=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_peak_measures(dtype):
    m = matmul_peak(dtype, n=64, repeats=2)
    assert math.isfinite(m.value) and m.value > 0
    assert m.unit == "FLOP/s" and m.threads == torch.get_num_threads() and "64x64" in m.op


def test_read_bandwidth_measures():
    m = read_bandwidth(nbytes=2**20, repeats=2)
    assert math.isfinite(m.value) and m.value > 0
    assert m.unit == "GB/s" and "torch.sum" in m.op and m.as_dict()["threads"] >= 1


def test_cpu_flags_are_known_names():
    assert set(cpu_flags()) <= {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                                "amx_tile", "amx_bf16", "amx_int8", "amx_fp16"}
