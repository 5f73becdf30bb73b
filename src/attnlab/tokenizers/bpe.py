"""Subword tokenization with byte-pair encoding (Sennrich et al., 2016), trained and run by the
Hugging Face `tokenizers` library and saved as the standard `tokenizer.json`.

Text is split on whitespace with the SentencePiece "metaspace" convention (a word-initial
marker instead of spaces), so decoding restores text exactly (leading spaces aside); byte fallback
keeps characters unseen in training representable instead of collapsing them to <unk>.
Special ids are fixed: <pad>=0, <s>=1, </s>=2, <unk>=3 (the Transformer presets' defaults).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from attnlab.serialization import atomic_write

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))


class Tokenizer:
    """Encode text to ids and back; `add_eos` appends </s> as the translation targets need."""

    def __init__(self, backend: HFTokenizer) -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if backend.token_to_id(token) != expected_id:
                raise ValueError(
                    f"tokenizer must map {token} to id {expected_id}, "
                    f"got {backend.token_to_id(token)}"
                )
        self.backend = backend
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @classmethod
    def train_bpe(
        cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
        show_progress: bool = False,
    ) -> Tokenizer:
        """Learn a BPE vocabulary of (at most) `vocab_size` entries from `texts`."""
        minimum = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 1
        if vocab_size < minimum:
            raise ValueError(f"vocab_size must be at least {minimum}, got {vocab_size}")
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
        return cls(backend)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json found")
        return cls(HFTokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / "tokenizer.json"
        return atomic_write(path, lambda tmp: self.backend.save(tmp))

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ids + [self.eos_id] if add_eos else ids

    def encode_batch(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        encoded = self.backend.encode_batch(list(texts), add_special_tokens=False)
        tail = [self.eos_id] if add_eos else []
        return [e.ids + tail for e in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to text; stops at </s> and drops <pad> and <s>.

        (The byte tokens are registered as special so BPE never merges them; they must not be
        skipped here, or byte fallback could not restore unseen characters.)
        """
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id)]
        return self.backend.decode(ids, skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """The subword strings of `text` (for attention-map axes)."""
        return self.backend.encode(text, add_special_tokens=False).tokens
