"""Byte-pair encoding (Sennrich et al., 2016) trained by the Hugging Face `tokenizers` library:
the two recipes attnlab's tasks use; `Tokenizer.train_bpe` / `train_byte_level` wrap them.

- metaspace BPE (translation): text split on whitespace with the SentencePiece "metaspace"
  convention (a word-initial marker instead of spaces), so decoding restores text exactly
  (leading spaces aside); byte fallback keeps characters unseen in training representable
  instead of collapsing them to <unk>. Special ids are fixed: <pad>=0, <s>=1, </s>=2, <unk>=3
  (the Transformer presets' defaults).
- byte-level BPE (GPT-2, Radford et al. 2019): every byte is in the alphabet, so nothing is
  unknown; the given special tokens take the first ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from attnlab.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))


def train_metaspace_bpe(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                        show_progress: bool = False) -> HFTokenizer:
    """A BPE vocabulary of (at most) `vocab_size` entries learnt from `texts`."""
    minimum = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 1
    if vocab_size < minimum:
        raise ConfigError(f"vocab_size must be at least {minimum}, got {vocab_size}")
    backend = HFTokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS], show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


def train_byte_level_bpe(lines: Iterable[str], vocab_size: int,
                         specials: Sequence[str]) -> HFTokenizer:
    """Byte-level BPE (GPT-2's scheme); `specials` take the first ids."""
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(lines, trainer=trainer)
    return backend
