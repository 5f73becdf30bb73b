"""Captions as model input, the one way CLIP (Radford et al. 2021) and the text-to-image
decoder (Ramesh et al. 2021) read text: a lower-cased byte-level BPE learnt on the training
captions, with CLIP's special tokens, and fixed-length framed id tensors.

    tokenizer = train_caption_tokenizer(captions, vocab_size=1000)
    ids, mask = encode_captions(tokenizer, ["a large three to the left of a small seven"], 24)
    ids   # (N, 24) long: <|startoftext|> tokens... <|endoftext|> <pad> ...
    mask  # (N, 24) long: 1 on the framed caption, 0 on padding

The specials are ordered so that <|endoftext|> is NOT id 2: transformers' CLIPTextModel pools
at argmax(input_ids) when eos_token_id == 2 (its legacy rule) and at the first
<|endoftext|> otherwise, which is what attnlab's CLIP does too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import normalizers
from torch import Tensor

from attnlab.errors import ConfigError, DataError
from attnlab.tokenizers.tokenizer import Tokenizer

CAPTION_SPECIALS = ("<|startoftext|>", "<|endoftext|>", "<pad>")  # bos 0, eos 1, pad 2


def train_caption_tokenizer(captions: Sequence[str], vocab_size: int = 1000) -> Tokenizer:
    """A byte-level BPE of at most `vocab_size` entries learnt on `captions` (lower-cased;
    the tokenizer lower-cases every text it encodes later, as CLIP's does)."""
    if not captions:
        raise DataError("train_caption_tokenizer: no captions to learn a vocabulary from")
    minimum = 256 + len(CAPTION_SPECIALS)
    if vocab_size < minimum:
        raise ConfigError(f"vocab_size must be at least {minimum} (the bytes and the "
                          f"specials), got {vocab_size}")
    tokenizer = Tokenizer.train_byte_level([c.lower() for c in captions], vocab_size,
                                           CAPTION_SPECIALS)
    tokenizer.backend.normalizer = normalizers.Lowercase()
    return Tokenizer(tokenizer.backend)  # special ids found again, now with the normaliser


def framed_length(tokenizer: Tokenizer, captions: Sequence[str]) -> int:
    """The longest caption's length with <|startoftext|> and <|endoftext|>."""
    return 2 + max((len(ids) for ids in tokenizer.encode_batch(list(captions))), default=0)


def caption_specials(tokenizer: Tokenizer) -> tuple[int, int, int]:
    """(bos, eos, pad) ids; a ConfigError naming what is missing."""
    ids = (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    if None in ids:
        raise ConfigError(f"a caption tokenizer needs {list(CAPTION_SPECIALS)} (bos, eos, pad);"
                          f" this one has bos={ids[0]}, eos={ids[1]}, pad={ids[2]}")
    return ids  # type: ignore[return-value]


def encode_captions(tokenizer: Tokenizer, captions: Sequence[str],
                    max_len: int) -> tuple[Tensor, Tensor]:
    """Captions -> ids (N, max_len) and mask (N, max_len): <|startoftext|> tokens
    <|endoftext|>, then <pad>. A caption too long keeps its first max_len - 2 tokens and still
    ends with <|endoftext|> (CLIP pools there)."""
    if isinstance(captions, str):
        raise DataError(f"captions must be a list of strings, got the string {captions!r}")
    if max_len < 3:
        raise ConfigError(f"max_len must be >= 3 (start, one token, end), got {max_len}")
    bos, eos, pad = caption_specials(tokenizer)
    ids = torch.full((len(captions), max_len), pad, dtype=torch.long)
    mask = torch.zeros((len(captions), max_len), dtype=torch.long)
    for row, tokens in enumerate(tokenizer.encode_batch(list(captions))):
        framed = [bos, *tokens[: max_len - 2], eos]
        ids[row, : len(framed)] = torch.tensor(framed)
        mask[row, : len(framed)] = 1
    return ids, mask


__all__ = ["CAPTION_SPECIALS", "caption_specials", "encode_captions", "framed_length",
           "train_caption_tokenizer"]
