"""attnlab's one tokenizer type: any `tokenizer.json` (Hugging Face `tokenizers`), with its
special ids found by role, and the training recipes the tasks use (bpe.py, chars.py).

    tok = Tokenizer.train_bpe(texts, vocab_size=8000)          # translation (Sennrich et al.)
    tok = Tokenizer.train_byte_level(lines, 2000, ["<|endoftext|>"])   # GPT-2's byte-level BPE
    tok = Tokenizer.train_chars(texts, ["<|endoftext|>"])       # one token per character
    tok = Tokenizer.load("runs/x")                              # any folder's tokenizer.json
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Encoding, decoders
from tokenizers import Tokenizer as HFTokenizer

from attnlab.errors import ConfigError, FolderError, MissingFileError
from attnlab.serialization import atomic_write
from attnlab.tokenizers.bpe import BYTE_TOKENS, train_byte_level_bpe, train_metaspace_bpe
from attnlab.tokenizers.chars import train_char_tokenizer

# Names each special role goes by in the tokenizers people bring (attnlab's BPE, GPT-2,
# BERT, RoBERTa, SentencePiece): the first one the tokenizer has wins, its special tokens first.
ROLE_NAMES = {
    "pad": ("<pad>", "[PAD]"),
    "bos": ("<s>", "[CLS]", "<bos>", "<|startoftext|>", "<|endoftext|>"),
    "eos": ("</s>", "[SEP]", "<eos>", "<|endoftext|>"),
    "unk": ("<unk>", "[UNK]"),
    "cls": ("[CLS]", "<s>", "<cls>"),
    "sep": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


class Tokenizer:
    """attnlab's one tokenizer type: any `tokenizer.json` (ours, or one `transformers` wrote),
    with its special ids found by role. `encode(text, add_eos=True)` appends </s> as
    translation targets need; `backend` is the `tokenizers.Tokenizer` underneath."""

    def __init__(self, backend: HFTokenizer) -> None:
        self.backend = backend
        self.pad_id = self.special_id("pad")
        self.bos_id = self.special_id("bos")
        self.eos_id = self.special_id("eos")
        self.unk_id = self.special_id("unk")

    def special_id(self, role: str) -> int | None:
        """The id of a special role ("pad", "bos", "eos", "unk", "cls", "sep", "mask"), the
        tokenizer's special tokens first (a learnt subword that reads "[CLS]" never wins);
        None when it has none."""
        names = ROLE_NAMES[role]
        added = {t.content: i for i, t in self.backend.get_added_tokens_decoder().items()
                 if t.special}
        found = [added[name] for name in names if name in added] or [
            i for i in map(self.backend.token_to_id, names) if i is not None]
        return found[0] if found else None

    def special_token_ids(self) -> set[int]:
        """Ids of the special tokens (<pad>, [CLS], ...), byte-fallback tokens (<0x41>) not
        counted: they carry text."""
        return {i for i, t in self.backend.get_added_tokens_decoder().items()
                if t.special and t.content not in BYTE_TOKENS}

    def require_specials(self, expected: dict[str, int], where: str) -> None:
        """Refuse a tokenizer whose special ids differ from the ones a model was built with."""
        for role, expected_id in expected.items():
            got = self.special_id(role)
            if got != expected_id:
                raise FolderError(f"{where}: the tokenizer's {role} id must be {expected_id}, "
                                  f"got {got}")

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                  show_progress: bool = False, *, split_punctuation: bool = True,
                  split_digits: bool = True, normalize: str = "nfc") -> Tokenizer:
        """Metaspace BPE with byte fallback (`bpe.train_metaspace_bpe`): <pad>=0 <s>=1 </s>=2
        <unk>=3, the Transformer presets' special ids; punctuation and digits split off, text
        in Unicode normal form `normalize` ("nfc", "nfkc", "none")."""
        tokenizer = cls(train_metaspace_bpe(
            texts, vocab_size, min_frequency, show_progress, split_punctuation=split_punctuation,
            split_digits=split_digits, normalize=normalize))
        tokenizer.require_specials(dict(zip(("pad", "bos", "eos", "unk"), range(4),
                                            strict=True)), "train_bpe")
        return tokenizer

    @classmethod
    def train_byte_level(cls, lines: Iterable[str], vocab_size: int,
                         specials: Sequence[str]) -> Tokenizer:
        """GPT-2's byte-level BPE (`bpe.train_byte_level_bpe`): nothing is unknown;
        `specials` take the first ids."""
        return cls(train_byte_level_bpe(lines, vocab_size, specials))

    @classmethod
    def train_chars(cls, texts: Iterable[str], specials: Sequence[str] = (),
                    max_size: int | None = None) -> Tokenizer:
        """One token per character (`chars.train_char_tokenizer`)."""
        return cls(train_char_tokenizer(texts, specials, max_size=max_size))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise MissingFileError(f"{path}: no tokenizer.json found")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as error:  # the Rust library raises its own Exception type
            raise FolderError(f"{path}: not a readable tokenizer.json ({error})") from None

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
        return ids + [self._eos("add_eos")] if add_eos else ids

    def encode_batch(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        encoded = self.backend.encode_batch(list(texts), add_special_tokens=False)
        tail = [self._eos("add_eos")] if add_eos else []
        return [e.ids + tail for e in encoded]

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to text; stops at </s> and drops <pad> and <s>.

        (The byte tokens are registered as special so BPE never merges them; they must not be
        skipped here, or byte fallback could not restore unseen characters.)
        """
        ids = list(ids)
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id)]
        return self.backend.decode(ids, skip_special_tokens=False)

    def _eos(self, why: str) -> int:
        if self.eos_id is None:
            raise ConfigError(f"{why}=True needs an end-of-sequence token; this tokenizer has "
                              f"none of {list(ROLE_NAMES['eos'])}")
        return self.eos_id

    def encoding(self, text: str) -> Encoding:
        """The library's encoding of `text` framed by the tokenizer's own post-processor
        (BERT's [CLS] .. [SEP], LLaMA's <s>): ids, tokens, character offsets, special mask."""
        return self.backend.encode(text, add_special_tokens=True)

    @property
    def is_byte_level(self) -> bool:
        """True for GPT-2-style byte-level tokenizers (tokens spell bytes, not text)."""
        return isinstance(self.backend.decoder, decoders.ByteLevel)

    def tokens(self, text: str) -> list[str]:
        """The subword strings of `text` (for attention-map axes)."""
        return self.backend.encode(text, add_special_tokens=False).tokens
