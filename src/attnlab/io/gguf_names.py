"""GGUF tensor names and row order against Hugging Face LLaMA's (llama.cpp's converter,
`convert_hf_to_gguf.py`, names and reorders them; `io/gguf.py` and `io/gguf_4bit.py` undo it)."""

from __future__ import annotations

from torch import Tensor

# GGUF tensor names (per block after "blk.N.") -> Hugging Face LLaMA names.
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                "output": "lm_head"}
BLOCK_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(name: str) -> str:
    """The Hugging Face name of a GGUF tensor name (unknown names are returned unchanged, so
    the LLaMA mapping names them as unexpected)."""
    stem, _, kind = name.rpartition(".")
    if stem in GLOBAL_NAMES:
        return f"{GLOBAL_NAMES[stem]}.{kind}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{kind}"
    return name


def unpermute_rows(weight: Tensor, n_heads: int) -> Tensor:
    """Undo llama.cpp's RoPE row order: within each head, rows (0, d/2, 1, d/2+1, ...) back to
    (0, 1, ..., d-1). weight (n_heads * d, ...) -> same shape."""
    rest = weight.shape[1:]
    head = weight.shape[0] // n_heads
    return (weight.reshape(n_heads, head // 2, 2, *rest).transpose(1, 2)
            .reshape(weight.shape))
