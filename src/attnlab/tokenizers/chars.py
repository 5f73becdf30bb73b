"""Character-level tokenization (as in Karpathy's char-rnn and nanoGPT's shakespeare_char), built
with the Hugging Face `tokenizers` library and saved as the standard `tokenizer.json`.

Every character of the training text is one token: a BPE model with no merges over the
characters seen, no normalizer and no pre-tokenizer, so nothing is lowercased, split or
dropped, and a `Fuse` decoder that joins the tokens back without separators, so decoding
reproduces the text exactly (spaces, tabs and newlines included). Characters never seen in
training map to the unknown token, which decodes as itself. The special tokens (e.g. GPT-2's
`<|endoftext|>`) are matched when written literally in a text, as in GPT-2, and are skipped
by `decode` unless `skip_special_tokens=False`. Any loader of `tokenizer.json`
(`tokenizers.Tokenizer.from_file`, `transformers.PreTrainedTokenizerFast`, `attnlab generate`)
reads it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models

log = logging.getLogger(__name__)

UNK = "<unk>"


def train_char_tokenizer(texts: Iterable[str], specials: Sequence[str] = (),
                         max_size: int | None = None, unk_token: str = UNK) -> Tokenizer:
    """A character-level `tokenizers.Tokenizer` for `texts`.

    Ids: `specials` first (in order), then `unk_token` (unless it is among them), then the
    characters, commonest first (ties by code point). `max_size` caps the whole vocabulary; the
    rarest characters beyond it become `unk_token` (a warning says how many).
    """
    if not unk_token or any(not s for s in specials):
        raise ValueError(f"specials and unk_token must be non-empty strings, got {specials} "
                         f"and {unk_token!r}")
    added = list(dict.fromkeys(specials))
    specials = list(dict.fromkeys([*specials, unk_token]))
    if max_size is not None and max_size <= len(specials):
        raise ValueError(f"max_size must exceed the {len(specials)} special tokens "
                         f"{specials}, got {max_size}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    if not counts:
        raise ValueError("texts hold no characters to build a character vocabulary from")
    chars = sorted(counts, key=lambda c: (-counts[c], c))
    if max_size is not None and len(specials) + len(chars) > max_size:
        dropped = chars[max_size - len(specials):]
        log.warning("character vocabulary capped at %d: %d rare characters (%d occurrences) "
                    "become %s", max_size, len(dropped), sum(counts[c] for c in dropped),
                    unk_token)
        chars = chars[:max_size - len(specials)]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk_token))
    # The unknown token is a plain vocabulary entry, not an added token: "<unk>" written in the
    # text stays five characters (exact round trip), and an unknown character decodes visibly.
    tokenizer.add_special_tokens(added)
    tokenizer.decoder = decoders.Fuse()  # without it, decode would put a space between tokens
    return tokenizer
