"""An OPUS-MT (Marian) folder's tokenizer as attnlab's one Tokenizer type: `source.spm` (a
SentencePiece unigram model, Kudo & Richardson 2018) segments the text, `vocab.json` gives each
piece the id the weights use, and `</s>` ends every source, as transformers' `MarianTokenizer`
(Tiedemann & Thottingal 2020, "OPUS-MT") does.

The converted `tokenizers.Tokenizer` is a Unigram model whose ids are vocab.json's: pieces of
`source.spm` keep their scores; every other vocab.json entry (target-only pieces, specials)
costs 1e6 per character, so a segmentation never uses it while the source model can cover the
text, and a character the source model lacks becomes the target's piece for it when there is
one (MarianTokenizer looks the unknown surface up in vocab.json the same way), else `<unk>`.
The normaliser is SentencePiece's own (its precompiled character map, extra spaces removed,
spaces as "▁", the "▁" dummy prefix); `</s>`, `<unk>`, `<pad>` and the `>>lang<<` codes of
multilingual models are special tokens matched in the text, as MarianTokenizer matches them.
Decoding joins the pieces ("▁" -> space), drops `<unk>` and strips the ends, as
`MarianTokenizer.decode(ids, skip_special_tokens=True)`; no SentencePiece model is needed for
that (a piece's text is its spelling), so `target.spm` is only checked (no byte fallback, no
denormalisation rules). The `.spm` files are read here from the protobuf wire format (the few
fields of sentencepiece_model.proto the conversion needs), so no extra package is needed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from attnlab.errors import FolderError
from attnlab.tokenizers.tokenizer import Tokenizer

SOURCE_SPM, TARGET_SPM, VOCAB = "source.spm", "target.spm", "vocab.json"
SPACE = "\u2581"  # "▁", SentencePiece's visible space
UNREACHABLE = -1e6  # per character: more than any segmentation from the source model's pieces
NORMAL, USER_DEFINED = 1, 4  # SentencePiece piece types (sentencepiece_model.proto)
UNIGRAM = 1
UNSPELLED = "\uffff"  # a noncharacter: no vocabulary piece holds it, so it encodes as <unk>


def is_marian_folder(directory: Path) -> bool:
    """True for a folder holding an OPUS-MT tokenizer: source.spm and vocab.json."""
    return (directory / SOURCE_SPM).is_file() and (directory / VOCAB).is_file()


@dataclass(frozen=True)
class SpmModel:
    """What the conversion reads of a SentencePiece ModelProto (sentencepiece_model.proto)."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type) by SentencePiece id
    model_type: int = UNIGRAM
    byte_fallback: bool = False
    charsmap: bytes = b""  # normalizer_spec.precompiled_charsmap
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    denormalizer_charsmap: bytes = b""


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, 32-bit values and
    length-delimited ones as bytes (the wire format; groups do not occur in a ModelProto)."""
    i = 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[i:i + size]
            i += size
        elif wire == 2:
            size = varint()
            yield number, data[i:i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire} at byte {i}")
        if i > len(data):
            raise ValueError("truncated message")


def parse_spm(data: bytes) -> SpmModel:
    """A ModelProto's pieces (1: piece 1, score 2, type 3), trainer_spec (2: model_type 3,
    byte_fallback 35), normalizer_spec (3: precompiled_charsmap 2, add_dummy_prefix 3,
    remove_extra_whitespaces 4, escape_whitespaces 5) and denormalizer_spec (5)."""
    pieces: list[tuple[str, float, int]] = []
    values: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            piece, score, kind = "", 0.0, NORMAL
            for n, v in fields(value):
                if n == 1 and isinstance(v, bytes):
                    piece = v.decode("utf-8")
                elif n == 2 and isinstance(v, bytes):
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and isinstance(v, int):
                    kind = v
            pieces.append((piece, score, kind))
        elif number == 2 and isinstance(value, bytes):
            for n, v in fields(value):
                if n == 3:
                    values["model_type"] = v
                elif n == 35:
                    values["byte_fallback"] = bool(v)
        elif number in (3, 5) and isinstance(value, bytes):
            names = {2: "charsmap", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces",
                     5: "escape_whitespaces"}
            for n, v in fields(value):
                if number == 5 and n == 2:
                    values["denormalizer_charsmap"] = v
                elif number == 3 and n in names:
                    values[names[n]] = v if n == 2 else bool(v)
    return SpmModel(pieces, **values)


def read_spm(path: Path) -> SpmModel:
    """A `.spm` file, refusing what the conversion does not reproduce."""
    try:
        model = parse_spm(path.read_bytes())
    except (OSError, ValueError, IndexError, UnicodeDecodeError, struct.error) as error:
        raise FolderError(f"{path}: not a readable SentencePiece model ({error})") from None
    if not model.pieces:
        raise FolderError(f"{path}: a SentencePiece model with pieces expected, got none")
    if model.byte_fallback:
        raise FolderError(f"{path}: trainer_spec.byte_fallback must be false (byte pieces are "
                          "not converted), got true")
    if model.denormalizer_charsmap:
        raise FolderError(f"{path}: denormalizer_spec must have no rules (decoding does not "
                          "apply them), got a precompiled_charsmap")
    return model


def read_vocab(path: Path) -> list[str]:
    """vocab.json (piece -> id) as the list of pieces by id; ids must be 0..n-1."""
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FolderError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise FolderError(f"{path}: a JSON object of piece -> integer id expected, got "
                          f"{type(vocab).__name__}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise FolderError(f"{path}: ids must be 0..{len(vocab) - 1}, each once; got "
                          f"{len(set(vocab.values()))} distinct ids from "
                          f"{min(vocab.values(), default=None)} to "
                          f"{max(vocab.values(), default=None)}")
    pieces = [""] * len(vocab)
    for piece, i in vocab.items():
        pieces[i] = piece
    return pieces


def read_settings(directory: Path) -> dict[str, Any]:
    """tokenizer_config.json's special token names (MarianTokenizer's defaults without it)."""
    settings = {"unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>"}
    path = directory / "tokenizer_config.json"
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise FolderError(f"{path}: not a readable JSON file ({error})") from None
        if found.get("separate_vocabs"):
            raise FolderError(f"{path}: separate_vocabs must be false (one vocab.json for both "
                              "sides), got true")
        settings.update({k: found[k] for k in settings if isinstance(found.get(k), str)})
    return settings


def unigram(source: SpmModel, pieces: list[str], unk: str, where: Path) -> models.Unigram:
    """A Unigram model with vocab.json's ids: the source model's normal pieces at their scores,
    every other entry priced out of reach (UNREACHABLE per character, longer ones first)."""
    if source.model_type != UNIGRAM:
        raise FolderError(f"{where}: trainer_spec.model_type must be UNIGRAM (1), got "
                          f"{source.model_type}")
    user_defined = [piece for piece, _, kind in source.pieces if kind == USER_DEFINED]
    if user_defined:
        raise FolderError(f"{where}: user-defined pieces are not converted, got "
                          f"{user_defined[:5]}")
    scores = {piece: score for piece, score, kind in source.pieces if kind == NORMAL}
    if unk not in pieces:
        raise FolderError(f"{where.parent / VOCAB}: the unknown token {unk!r} must be in the "
                          "vocabulary")
    vocab = [(piece, scores.get(piece, UNREACHABLE * len(piece) - 1.0)) for piece in pieces]
    return models.Unigram(vocab, unk_id=pieces.index(unk), byte_fallback=False)


def normalizer(spec: SpmModel) -> normalizers.Normalizer:
    """SentencePiece's normalisation, in its order: character map, extra spaces, escaping."""
    steps: list[normalizers.Normalizer] = []
    if spec.charsmap:
        steps.append(normalizers.Precompiled(spec.charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""),
                  normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPACE))
    if spec.add_dummy_prefix:  # SentencePiece prefixes "▁" even to text starting with one
        steps.append(normalizers.Replace(Regex(r"\A" + SPACE), SPACE * 2))
    # SentencePiece fuses a run of characters it lacks into one unknown piece, which
    # MarianTokenizer looks up in vocab.json: such a run of two or more becomes <unk> (a
    # character no piece spells), where the target's pieces could otherwise spell it.
    known = "".join(f"\\x{{{ord(c):x}}}" for c in sorted(
        {piece for piece, _, kind in spec.pieces if kind == NORMAL and len(piece) == 1}))
    if known:
        steps.append(normalizers.Replace(Regex(f"[^{known}]{{2,}}"), UNSPELLED))
    return normalizers.Sequence(steps)


def marian_tokenizer(directory: str | Path) -> Tokenizer:
    """The OPUS-MT tokenizer of `directory` (source.spm, vocab.json, tokenizer_config.json;
    target.spm checked when present) as attnlab's Tokenizer."""
    directory = Path(directory)
    settings = read_settings(directory)
    source = read_spm(directory / SOURCE_SPM)
    if (directory / TARGET_SPM).is_file():
        read_spm(directory / TARGET_SPM)  # its byte fallback would decode differently
    pieces = read_vocab(directory / VOCAB)
    backend = HFTokenizer(unigram(source, pieces, settings["unk_token"], directory / SOURCE_SPM))
    backend.normalizer = normalizer(source)
    if source.add_dummy_prefix:  # "always": every chunk between specials
        backend.pre_tokenizer = pre_tokenizers.Metaspace(SPACE, prepend_scheme="always",
                                                         split=False)
    specials = [settings["eos_token"], settings["unk_token"], settings["pad_token"]]
    codes = [p for p in pieces if p.startswith(">>") and p.endswith("<<")]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in specials + codes if t in pieces])
    eos = settings["eos_token"]
    if eos not in pieces:
        raise FolderError(f"{directory / VOCAB}: the end-of-sequence token {eos!r} must be in "
                          "the vocabulary")
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, pieces.index(eos))])
    # MarianTokenizer.decode(skip_special_tokens=True): no <unk>, "▁" as spaces, ends stripped.
    backend.decoder = decoders.Sequence([
        decoders.Replace(settings["unk_token"], ""), decoders.Replace(SPACE, " "),
        decoders.Fuse(), decoders.Strip(" ", 1 << 16, 1 << 16)])
    return Tokenizer(backend)
