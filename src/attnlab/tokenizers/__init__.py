"""A thin layer over the Hugging Face `tokenizers` library (BPE training, `tokenizer.json`)."""

from attnlab.tokenizers.bpe import SPECIAL_TOKENS, Tokenizer

__all__ = ["SPECIAL_TOKENS", "Tokenizer"]
