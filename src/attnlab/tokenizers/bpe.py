"""Byte-pair encoding (Sennrich et al., 2016) trained by the Hugging Face `tokenizers` library:
the two recipes attnlab's tasks use; `Tokenizer.train_bpe` / `train_byte_level` wrap them.

- metaspace BPE (translation): text split on whitespace with the SentencePiece "metaspace"
  convention (Kudo & Richardson, 2018: a word-initial marker "▁" instead of spaces), so
  decoding restores text exactly (leading spaces aside: "  a" decodes to " a"; spaces inside
  and at the end, doubled ones included, are kept, one "▁" each); byte fallback keeps
  characters unseen in training representable instead of collapsing them to <unk>. By default
  every punctuation character is a pre-token of its own ("world," is "▁world" + ",", so
  "world", "world," and "world." share one subword) and numbers are split into single digits
  (as SentencePiece's split_digits and LLaMA do), so no arbitrary multi-digit merges are
  learnt. A space before the character stays attached to it ("a ." is "▁a" + "▁.", "in 2023"
  is "▁in" + "▁2" "0" "2" "3"), so text that already had spaces around its punctuation and no
  digits (the built-in corpus) is pre-tokenized exactly as by Metaspace alone. Splitting only
  cuts between characters and the Metaspace decoder joins pieces without inserting anything,
  so decode(encode(text)) == text still holds. Text is put in Unicode NFC
  by the tokenizer itself (saved in tokenizer.json), so input at inference is normalised like
  the training data (`data.normalize`). Special ids are fixed: <pad>=0, <s>=1, </s>=2,
  <unk>=3 (the Transformer presets' defaults).
- byte-level BPE (GPT-2, Radford et al. 2019): every byte is in the alphabet, so nothing is
  unknown; the given special tokens take the first ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from attnlab.data.normalize import check_normal_form
from attnlab.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
# One punctuation character (Unicode P*, plus the ASCII symbols the `tokenizers` library's own
# Punctuation pre-tokenizer counts) or one numeric character (Unicode N*: digits, "²", "½"),
# each with the word-initial marker when a space came before it.
PUNCTUATION_PATTERN = r"▁?[\p{P}$+<=>^`|~]"
DIGIT_PATTERN = r"▁?\p{N}"


def metaspace_pre_tokenizer(split_punctuation: bool = True,
                            split_digits: bool = True) -> pre_tokenizers.PreTokenizer:
    """Metaspace, then (optionally) every punctuation character on its own and every digit on
    its own, each with the "▁" before it; none of them drops or adds a character."""
    steps: list[pre_tokenizers.PreTokenizer] = [
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    for wanted, pattern in ((split_punctuation, PUNCTUATION_PATTERN),
                            (split_digits, DIGIT_PATTERN)):
        if wanted:
            steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    return steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)


def unicode_normalizer(form: str) -> normalizers.Normalizer | None:
    """The `tokenizers` normalizer for a `data.normalize` form; None for "none"."""
    check_normal_form(form)
    return {"nfc": normalizers.NFC(), "nfkc": normalizers.NFKC()}.get(form)


def train_metaspace_bpe(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                        show_progress: bool = False, *, split_punctuation: bool = True,
                        split_digits: bool = True, normalize: str = "nfc") -> HFTokenizer:
    """A BPE vocabulary of (at most) `vocab_size` entries learnt from `texts`; punctuation and
    digits split off before merges are learnt (`metaspace_pre_tokenizer`), text in Unicode
    normal form `normalize` ("nfc", "nfkc", "none") at training and at every encode."""
    minimum = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 1
    if vocab_size < minimum:
        raise ConfigError(f"vocab_size must be at least {minimum}, got {vocab_size}")
    backend = HFTokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    normalizer = unicode_normalizer(normalize)
    if normalizer is not None:
        backend.normalizer = normalizer
    backend.pre_tokenizer = metaspace_pre_tokenizer(split_punctuation, split_digits)
    backend.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS], show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


# GPT-2's byte-level alphabet: a printable character standing for each of the 256 bytes
# (Radford et al. 2019): printable Latin-1 bytes stand for themselves, the others are shifted
# to 256 + n. A byte-level token's string spells its bytes in these characters.
_PRINTABLE_BYTES = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                    *range(ord("®"), ord("ÿ") + 1)]
_SHIFTED_BYTES = [b for b in range(256) if b not in _PRINTABLE_BYTES]
BYTE_OF_CHAR = ({chr(b): b for b in _PRINTABLE_BYTES}
                | {chr(256 + i): b for i, b in enumerate(_SHIFTED_BYTES)})


def byte_level_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token's string spells (None when it is not made of the
    alphabet's characters, e.g. a special token)."""
    if not token or any(c not in BYTE_OF_CHAR for c in token):
        return None
    return bytes(BYTE_OF_CHAR[c] for c in token)


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
