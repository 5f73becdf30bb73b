"""attnlab's one tokenizer type over the Hugging Face `tokenizers` library (`tokenizer.json`),
and the recipes that train it: metaspace and byte-level BPE, characters."""

from attnlab.tokenizers.audio_features import AudioFeatures, fbank
from attnlab.tokenizers.bpe import SPECIAL_TOKENS
from attnlab.tokenizers.chars import train_char_tokenizer
from attnlab.tokenizers.tokenizer import ROLE_NAMES, Tokenizer

__all__ = ["ROLE_NAMES", "SPECIAL_TOKENS", "AudioFeatures", "Tokenizer", "fbank",
           "train_char_tokenizer"]
