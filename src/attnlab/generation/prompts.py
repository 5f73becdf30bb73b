"""Prompt text to the ids a generating model reads (shared by `attnlab generate` and
`attnlab serve`)."""

from __future__ import annotations

from typing import Any

from attnlab.tokenizers import Tokenizer


def source_ids(tokenizer: Tokenizer, text: str, config: Any) -> list[int]:
    """Encoder input ids of `text`, ending with EOS as encoder-decoders are trained (T5's
    tokenizer appends it itself; attnlab's translation data appends it to every source)."""
    ids = tokenizer.encoding(text).ids
    return ids if ids and ids[-1] == config.eos_token_id else [*ids, config.eos_token_id]
