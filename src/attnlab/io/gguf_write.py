"""Our LLaMA family written as a llama.cpp GGUF file (the `gguf` package's GGUFWriter), so a
model trained or converted here runs in llama.cpp and its tools, and so tests and benchmarks
have GGUF files without downloading one.

What llama.cpp's converter (`convert_hf_to_gguf.py`) would write for the same Hugging Face
model: its metadata keys, its tensor names (`io/gguf_names.py`), query/key rows in its
interleaved-RoPE order for architecture "llama" ("qwen2", for models with attention biases, is
stored unpermuted), norms in F32, projections in the type asked for (F32, F16, Q8_0, Q4_0,
Q4_1, ... whatever `gguf.quants.quantize` writes) except rows not a multiple of the block,
which fall back to F16 as the converter does. A byte-level BPE tokenizer goes in as "gpt2".

    write_gguf("model.Q4_1.gguf", model, "Q4_1", tokenizer)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from attnlab.io.gguf_names import BLOCK_NAMES, GLOBAL_NAMES
from attnlab.io.hf.llama import state_dict_to_hf
from attnlab.serialization import atomic_write
from attnlab.tokenizers import Tokenizer

NORMAL, CONTROL = 1, 3  # llama.cpp's llama_token_type
TO_GGUF = {hf: name for name, hf in (*GLOBAL_NAMES.items(), *BLOCK_NAMES.items())}


def gguf_tensor_name(hf: str) -> str:
    """GGUF's name of a Hugging Face LLaMA tensor name (model.layers.3.mlp.up_proj.weight ->
    blk.3.ffn_up.weight)."""
    stem, kind = hf.rsplit(".", 1)
    if stem.startswith("model.layers."):
        _, _, index, rest = stem.split(".", 3)
        return f"blk.{index}.{TO_GGUF[rest]}.{kind}"
    return f"{TO_GGUF[stem]}.{kind}"


def interleave_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's RoPE row order: within each head, rows (0, d/2, 1, d/2+1, ...); the inverse
    of `io/gguf_names.unpermute_rows`."""
    head = weight.shape[0] // n_heads
    return (weight.reshape(n_heads, 2, head // 2, *weight.shape[1:]).swapaxes(1, 2)
            .reshape(weight.shape))


def byte_level_vocab(tokenizer: Tokenizer) -> tuple[list[str], list[str], list[int]]:
    """(tokens in id order, merges, token types) of a byte-level BPE tokenizer."""
    if not tokenizer.is_byte_level:
        raise ValueError("write_gguf writes byte-level BPE tokenizers (llama.cpp's 'gpt2'); "
                         "got a tokenizer that is not byte-level")
    model = json.loads(tokenizer.backend.to_str())["model"]
    added = tokenizer.backend.get_added_tokens_decoder()  # {id: AddedToken}
    vocab = {**model["vocab"], **{token.content: i for i, token in added.items()}}
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    specials = tokenizer.special_token_ids()
    return tokens, merges, [CONTROL if i in specials else NORMAL for i in range(len(tokens))]


def add_metadata(writer: Any, config: Any, block_count: int) -> None:
    writer.add_block_count(block_count)
    writer.add_context_length(config.max_seq_len)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.d_ff)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads or config.n_heads)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.d_model // config.n_heads)


def add_tokenizer(writer: Any, tokenizer: Tokenizer, config: Any) -> None:
    tokens, merges, types = byte_level_vocab(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    if config.bos_token_id is not None:
        writer.add_bos_token_id(config.bos_token_id)
    if config.eos_token_id is not None:
        writer.add_eos_token_id(config.eos_token_id)


def write_gguf(path: str | Path, model: nn.Module, qtype: str = "F32",
               tokenizer: Tokenizer | None = None, block_count: int | None = None) -> Path:
    """Write our LLaMA-family `model` to `path` (a temporary name, renamed when complete) with
    projections in `qtype` (a gguf.GGMLQuantizationType name); `block_count` overrides the
    layer count written in the metadata (tests use it to write a file that does not fit)."""
    import gguf

    if qtype not in gguf.GGMLQuantizationType.__members__:
        raise ValueError(f"qtype must name a gguf.GGMLQuantizationType (F32, F16, Q8_0, Q4_0, "
                         f"Q4_1, ...), got {qtype!r}")
    kind = gguf.GGMLQuantizationType[qtype]
    config = model.config
    arch = "qwen2" if config.attention_bias else "llama"
    heads = {"q_proj": config.n_heads, "k_proj": config.n_kv_heads or config.n_heads}

    def write(temporary: Path) -> None:
        writer = gguf.GGUFWriter(str(temporary), arch)
        add_metadata(writer, config, block_count or config.n_layers)
        if tokenizer is not None:
            add_tokenizer(writer, tokenizer, config)
        for name, tensor in state_dict_to_hf(model).items():
            weight = tensor.detach().float().cpu().numpy()
            projection = name.rsplit(".", 2)[-2]
            if arch == "llama" and projection in heads:
                weight = interleave_rows(weight, heads[projection])
            stored = kind
            if weight.ndim == 1:
                stored = gguf.GGMLQuantizationType.F32
            elif kind.name not in ("F32", "F16") and weight.shape[-1] % gguf.GGML_QUANT_SIZES[
                    kind][0]:
                stored = gguf.GGMLQuantizationType.F16  # the converter's fallback
            data = gguf.quants.quantize(weight, stored)
            writer.add_tensor(gguf_tensor_name(name), data,
                              raw_dtype=stored if data.dtype == np.uint8 else None)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return atomic_write(Path(path), write)
