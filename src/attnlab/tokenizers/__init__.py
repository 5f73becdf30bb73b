"""A thin layer over the Hugging Face `tokenizers` library (BPE training, character-level
vocabularies, `tokenizer.json`)."""

from attnlab.tokenizers.bpe import SPECIAL_TOKENS, Tokenizer
from attnlab.tokenizers.chars import train_char_tokenizer

__all__ = ["SPECIAL_TOKENS", "Tokenizer", "train_char_tokenizer"]
