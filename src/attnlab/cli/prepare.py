"""Tokenize a corpus once into memory-mapped shards, for training on data larger than memory.

    attnlab prepare lm --text corpus.txt --out data/corpus-prepared
    attnlab train lm --text data/corpus-prepared
    attnlab prepare lm --text builtin:web --out data/web-prepared   # the World English Bible
    attnlab prepare translate --data data/bible-es-en --src-lang es --tgt-lang en \\
        --out data/es-en-prepared
    attnlab train translate --data data/es-en-prepared

The input is read a line at a time (never whole) and the folder appears only complete: it is
written under a temporary name and renamed at the end. It holds prepared.json, tokenizer.json
and, per shard, NAME.ids.bin (uint16 or uint32 token ids) and NAME.offsets.bin (int64);
translate keeps valid / test as text (they are decoded for BLEU). Training then reads only the
pages its batches touch (docs/data.md, "Data larger than memory"). The tokenizer flags are the
training task's own (same names, defaults and checks); the held-out part of an lm corpus is
still cut at training time by --valid-fraction (builtin:web's held-out books are shards too).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from functools import partial
from pathlib import Path
from typing import Any

from attnlab.cli.settings import add_settings_flags
from attnlab.data.web_corpus import WEB, is_web
from attnlab.errors import MissingFileError
from attnlab.tasks.language_model import LMSettings
from attnlab.tasks.lm_prepare import prepare_text, prepare_web
from attnlab.tasks.translation import TranslationSettings
from attnlab.tasks.translation_data import prepare_parallel

# The task settings each command takes its flags (and their checks) from.
LM_FIELDS = ("tokenizer", "vocab_size")
TRANSLATE_FIELDS = ("src_lang", "tgt_lang", "tsv", "normalize", "vocab_size")


def fields_of(cls: type, names: tuple[str, ...]) -> type:
    """A dataclass of some of `cls`'s fields (same types, defaults, help and choices), for
    `add_settings_flags`: the flags are generated from the training task's own settings."""
    hints = typing.get_type_hints(cls)
    found = {f.name: f for f in dataclasses.fields(cls)}
    return dataclasses.make_dataclass(f"{cls.__name__}Flags", [
        (name, hints[name], dataclasses.field(default=found[name].default,
                                              metadata=found[name].metadata))
        for name in names])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    lm = kinds.add_parser("lm", help="a text file for `attnlab train lm --text FOLDER`",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    lm.add_argument("--text", required=True, metavar="FILE",
                    help=f"UTF-8 text file, or {WEB} (the World English Bible, split by book)")
    add_settings_flags(lm, fields_of(LMSettings, LM_FIELDS))
    translate = kinds.add_parser(
        "translate", help="a parallel corpus for `attnlab train translate --data FOLDER`",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    translate.add_argument("--data", required=True, metavar="DIR",
                           help="corpus folder: {train,valid[,test]}.{src,tgt} or {split}.tsv")
    add_settings_flags(translate, fields_of(TranslationSettings, TRANSLATE_FIELDS))
    for command in (lm, translate):
        command.add_argument("--out", required=True, metavar="DIR",
                             help="the prepared folder to write (new or empty)")
        command.add_argument("--overwrite", action="store_true",
                             help="replace a prepared folder already in --out (once the new one "
                                  "is complete)")
        command.add_argument("--no-progress", dest="progress", action="store_false",
                             help="no progress bar")


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.kind == "lm":
        web = is_web(args.text)
        if not web and not Path(args.text).is_file():
            raise MissingFileError(f"--text {args.text}: file not found; expected a UTF-8 "
                                   f"text file or {WEB}")
        s = LMSettings(text=args.text, **given(args, LM_FIELDS))  # checks the values
        prepare = prepare_web if web else partial(prepare_text, Path(args.text))
        summary = prepare(out, tokenizer=s.tokenizer, vocab_size=s.vocab_size,
                          overwrite=args.overwrite, progress=args.progress)
        unit, train = "lines", f"attnlab train lm --text {out}"
    else:
        s = TranslationSettings(data=args.data, **given(args, TRANSLATE_FIELDS))
        summary = prepare_parallel(Path(args.data), out, src_lang=s.src_lang,
                                   tgt_lang=s.tgt_lang, tsv=s.tsv, normalize=s.normalize,
                                   vocab_size=s.vocab_size, overwrite=args.overwrite,
                                   progress=args.progress)
        unit, train = "training pairs", f"attnlab train translate --data {out}"
    print(f"prepared {out}: {summary['sequences']:,} {unit}, {summary['tokens']:,} tokens, "
          f"{summary['bytes'] / 1e6:,.1f} MB, {summary['seconds']:.1f} s")
    print(f"next: {train}")
    return 0
