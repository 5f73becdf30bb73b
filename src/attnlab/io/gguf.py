"""GGUF files, llama.cpp's one-file checkpoints (the GGUF format of ggml, read with the `gguf`
package of llama.cpp's gguf-py), loaded as our LLaMA family.

    model = attnlab.from_pretrained("SmolLM-135M.Q8_0.gguf")
    tokenizer = attnlab.io.load_tokenizer("SmolLM-135M.Q8_0.gguf")

The metadata becomes a Hugging Face style config dict and the tensors get Hugging Face names,
so `io/hf/llama.py` (the one LLaMA mapping) checks and renames both. Two things differ from a
Hugging Face folder: GGUF lists tensor dimensions innermost first (the `gguf` reader already
gives numpy shapes, `(out, in)` for a projection), and llama.cpp's converter (its
`convert_hf_to_gguf.py`, LlamaModel) reorders the rows of each query and key head for its
interleaved RoPE: rows (0..d/2-1, d/2..d-1) of a head become (0, d/2, 1, d/2+1, ...). That
reordering is undone here for architecture "llama"; "qwen2" files are stored unpermuted.

Projections stored as 4-bit blocks (Q4_0, Q4_1) stay 4-bit: `io/gguf_4bit.py` makes them
`Int4Linear` layers (torch's fused CPU int4 kernel; `with_weights(model, "fp32")` dequantizes).
Every other quantized tensor (Q8_0, Q4_K, Q6_K, F16, BF16, ...) is dequantized to float32 with
`gguf.quants.dequantize`: Q8_0's per-block scales do not fit our per-channel int8 kernel.
The embedded tokenizer becomes our `Tokenizer`: "gpt2" (byte-level BPE: tokens + merges) and
"llama" (SentencePiece BPE: tokens + scores, byte fallback).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.processors import TemplateProcessing
from torch import Tensor, nn

from attnlab.errors import FolderError, MissingFileError
from attnlab.io.files import checked
from attnlab.io.fit import check_weights_fit
from attnlab.io.gguf_4bit import keep_four_bit
from attnlab.io.gguf_names import hf_name, unpermute_rows
from attnlab.io.hf import llama
from attnlab.io.limits import check_sizes
from attnlab.serialization import load_state_strict
from attnlab.tokenizers import Tokenizer

log = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"
# GGUF general.architecture -> the Hugging Face model_type io/hf/llama.py maps, and whether
# llama.cpp's converter permuted the query/key rows of that architecture.
ARCHITECTURES: dict[str, tuple[str, bool]] = {"llama": ("llama", True),
                                              "qwen2": ("qwen2", False)}
# GGUF token types (llama.cpp's llama_token_type).
CONTROL, USER_DEFINED, BYTE = 3, 4, 6
# Pre-tokenizer regexes of the "gpt2" tokenizers llama.cpp names (tokenizer.ggml.pre); the
# rest use GPT-2's own (the ByteLevel pre-tokenizer's regex).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_SPLITS = {"llama-bpe": LLAMA3_SPLIT, "llama3": LLAMA3_SPLIT,
              "qwen2": LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")}
GPT2_PRES = ("default", "gpt-2", "gpt2", "smollm")


def is_gguf(path: str | Path) -> bool:
    """True for a path named *.gguf or a file that starts with GGUF's magic bytes."""
    path = Path(path)
    if path.suffix.lower() == GGUF_SUFFIX and not path.is_dir():
        return True
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(4) == GGUF_MAGIC


def open_gguf(path: str | Path) -> Any:
    """A `gguf.GGUFReader` of `path` (memory-mapped: nothing is read yet); a missing file is a
    MissingFileError, a truncated or corrupt one a FolderError naming it."""
    from gguf import GGUFReader  # imported on use: reading a folder never needs it

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such GGUF file")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as error:
        raise FolderError(f"{path}: not a readable GGUF file, truncated or corrupt "
                          f"({type(error).__name__}: {error})") from None


_MISSING = object()


def field(reader: Any, key: str, default: Any = _MISSING, where: str | Path = "") -> Any:
    """The value of metadata `key` (a list for arrays); `default` when absent, else a
    FolderError naming the key."""
    from gguf import GGUFValueType

    found = reader.get_field(key)
    if found is None:
        if default is _MISSING:
            raise FolderError(f"{where}: GGUF metadata {key!r} is missing")
        return default
    value = found.contents()
    if found.types == [GGUFValueType.FLOAT32]:  # 1e-06, not float32's 9.99999997e-07
        value = float(str(np.float32(value)))
    return value


def architecture(reader: Any, where: str | Path) -> tuple[str, bool]:
    """(Hugging Face model_type, rows permuted) of the file's general.architecture."""
    arch = field(reader, "general.architecture", where=where)
    if arch not in ARCHITECTURES:
        raise FolderError(f"{where}: GGUF architecture {arch!r} is not supported; attnlab "
                          f"reads {sorted(ARCHITECTURES)} (the LLaMA family)")
    return ARCHITECTURES[arch]


def _one_value(value: Any, key: str, where: str | Path) -> Any:
    """A per-layer array that holds one value (some files store head counts per layer)."""
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise FolderError(f"{where}: {key} differs between layers ({sorted(set(value))}); "
                              "attnlab's LLaMA has one value for every layer")
        return value[0]
    return value


def hf_config(reader: Any, where: str | Path) -> dict[str, Any]:
    """A Hugging Face LLaMA / Qwen2 config dict from the file's metadata."""
    model_type, _ = architecture(reader, where)
    arch = field(reader, "general.architecture")
    names = {t.name for t in reader.tensors}

    def get(key: str, default: Any = _MISSING) -> Any:
        full = f"{arch}.{key}"
        return _one_value(field(reader, full, default, where), full, where)

    heads = get("attention.head_count")
    d_model = get("embedding_length")
    if "rope_freqs.weight" in names:
        raise FolderError(f"{where}: rope_freqs.weight (LLaMA-3.1 rope scaling) is not "
                          "implemented; attnlab's RoPE is the plain one")
    scaling = get("rope.scaling.type", "none")
    head_dim = get("attention.key_length", None)
    rotary = get("rope.dimension_count", None)
    if rotary not in (None, head_dim or d_model // heads):
        raise FolderError(f"{where}: {arch}.rope.dimension_count={rotary} (partial RoPE) is "
                          f"not implemented; it must equal the head size")
    tokens = reader.get_field("tokenizer.ggml.tokens")  # counted, not decoded
    embedding = [t for t in reader.tensors if t.name == "token_embd.weight"]
    vocab_size = (len(tokens.data) if tokens is not None else
                  int(embedding[0].shape[-1]) if embedding else get("vocab_size"))
    values: dict[str, Any] = {
        "model_type": model_type, "hidden_act": "silu", "hidden_size": d_model,
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "num_hidden_layers": get("block_count"),
        "intermediate_size": get("feed_forward_length"),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": get("rope.freq_base", 10000.0),
        "max_position_embeddings": get("context_length", 2048),
        "vocab_size": vocab_size,
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": "blk.0.attn_q.bias" in names,
        "head_dim": head_dim,
        "rope_scaling": None if scaling == "none" else {"type": scaling},
    }
    for role in ("bos", "eos", "pad"):
        key = "padding" if role == "pad" else role
        values[f"{role}_token_id"] = field(reader, f"tokenizer.ggml.{key}_token_id", None)
    return values


def _numpy_shape(tensor: Any) -> tuple[int, ...]:
    """A GGUF tensor's numpy shape: its dimensions listed innermost first, reversed."""
    return tuple(int(n) for n in reversed(tensor.shape.tolist()))


def _dequantized(tensor: Any, where: str | Path) -> Tensor:
    """A GGUF tensor as a float32 torch tensor of its numpy shape."""
    from gguf.quants import dequantize

    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise FolderError(f"{where}: tensor {tensor.name} is stored as "
                          f"{tensor.tensor_type.name}, which gguf cannot dequantize") from None
    shape = _numpy_shape(tensor)
    values = np.asarray(values, dtype=np.float32).reshape(shape)
    return torch.from_numpy(values if values.flags.writeable else values.copy())


def hf_state(reader: Any, config: dict[str, Any], where: str | Path,
             meta: bool) -> dict[str, Tensor]:
    """The file's tensors under Hugging Face names: shapes only on the meta device (`meta`),
    else dequantized to float32 with llama.cpp's query/key row order undone."""
    _, permuted = architecture(reader, where)
    heads = {"q_proj": config["num_attention_heads"],
             "k_proj": config["num_key_value_heads"] or config["num_attention_heads"]}
    state: dict[str, Tensor] = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if meta:
            state[name] = torch.empty(_numpy_shape(tensor), device="meta")
            continue
        value = _dequantized(tensor, where)
        projection = name.rsplit(".", 2)[-2]
        if permuted and projection in heads:
            value = unpermute_rows(value, heads[projection])
        state[name] = value
    return state


def load_gguf(path: str | Path, model_classes: Mapping[str, type]) -> nn.Module:
    """The LLaMA-family model in a GGUF file, in eval mode: Q4_0 / Q4_1 projections kept 4-bit
    (`keep_four_bit`), every other tensor dequantized to float32.
    As for a folder, the config's sizes and the tensors' shapes are checked before anything is
    allocated (a FolderError names the key or the tensors)."""
    path = Path(path)
    reader = open_gguf(path)
    hf = hf_config(reader, path)
    ours = checked(path, llama.config_values_from_hf, hf)
    check_sizes(ours, str(path), FolderError)
    model_class = model_classes[llama.MODEL_TYPE]
    config = checked(path, lambda v: model_class.config_class(**v), ours)
    shapes = checked(path, llama.state_dict_from_hf, hf_state(reader, hf, path, True), config)
    check_weights_fit(model_class, config, shapes, path, path, file_values=hf)
    state = checked(path, llama.state_dict_from_hf, hf_state(reader, hf, path, False), config)
    model = model_class(config)
    load_state_strict(model, state, path)
    kept = keep_four_bit(model, reader, architecture(reader, path)[1])
    stored = Counter(t.tensor_type.name for t in reader.tensors)
    quantized = {k: n for k, n in stored.items() if k != "F32"}
    if quantized:
        log.info("%s: %s dequantized to float32, %s kept 4-bit", path,
                 ", ".join(f"{n - kept.get(kind, 0)} {kind} tensors"
                           for kind, n in sorted(quantized.items()) if n > kept.get(kind, 0))
                 or "none",
                 ", ".join(f"{n} {kind}" for kind, n in sorted(kept.items())) or "none")
    return model.eval()


def load_gguf_tokenizer(path: str | Path, required: bool = True) -> Tokenizer | None:
    """The tokenizer a GGUF file embeds, as our Tokenizer; None when it has none (or a kind
    attnlab cannot build) and not `required`."""
    path = Path(path)
    reader = open_gguf(path)
    kind = field(reader, "tokenizer.ggml.model", None)
    tokens = field(reader, "tokenizer.ggml.tokens", None)
    if kind not in ("gpt2", "llama") or tokens is None:
        if not required:
            return None
        raise FolderError(f"{path}: the GGUF tokenizer.ggml.model must be 'gpt2' (byte-level "
                          f"BPE) or 'llama' (SentencePiece) with its tokens, got {kind!r}")
    types = field(reader, "tokenizer.ggml.token_type", None) or [1] * len(tokens)
    if kind == "gpt2":
        backend = _byte_level(tokens, field(reader, "tokenizer.ggml.merges", [], path),
                              field(reader, "tokenizer.ggml.pre", "default"), path)
    else:
        scores = field(reader, "tokenizer.ggml.scores", None) or [0.0] * len(tokens)
        backend = _sentencepiece(tokens, scores, types)
    _add_specials(backend, tokens, types)
    add_bos = field(reader, "tokenizer.ggml.add_bos_token", kind == "llama")
    bos = field(reader, "tokenizer.ggml.bos_token_id", None)
    if add_bos and bos is not None and 0 <= bos < len(tokens):
        backend.post_processor = TemplateProcessing(
            single=f"{tokens[bos]}:0 $A:0", pair=f"{tokens[bos]}:0 $A:0 $B:1",
            special_tokens=[(tokens[bos], bos)])
    return Tokenizer(backend)


def _byte_level(tokens: list[str], merges: list[str], pre: str, where: Path) -> Any:
    """GPT-2's byte-level BPE from the file's vocabulary and merges."""
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    backend = HFTokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, pairs))
    if pre in PRE_SPLITS:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRE_SPLITS[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        if pre not in GPT2_PRES:
            log.warning("%s: pre-tokenizer %r is not known to attnlab; using GPT-2's split "
                        "(text may be cut into different tokens than llama.cpp's)", where, pre)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(tokens: list[str], scores: list[float], types: list[int]) -> Any:
    """LLaMA's SentencePiece BPE: pieces merge in the order of their scores (higher first),
    spaces are "▁", a character outside the vocabulary falls back to its <0xXX> bytes."""
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for i, (token, score) in enumerate(zip(tokens, scores, strict=True)):
        if types[i] in (CONTROL, BYTE):
            continue
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((-score, i, vocab[left], (left, right)))
    merges.sort(key=lambda m: m[:3])
    unk = next((t for t, k in zip(tokens, types, strict=True) if k == 2), None)
    backend = HFTokenizer(models.BPE(vocab, [m[3] for m in merges], unk_token=unk,
                                     fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return backend


def _add_specials(backend: Any, tokens: list[str], types: list[int]) -> None:
    """Control tokens (<s>, <|endoftext|>) become special tokens, user-defined ones added
    tokens, so neither is split by the model."""
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, k in zip(tokens, types, strict=True) if k == CONTROL])
    backend.add_tokens([AddedToken(t, normalized=False)
                        for t, k in zip(tokens, types, strict=True) if k == USER_DEFINED])
