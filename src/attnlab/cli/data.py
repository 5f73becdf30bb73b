"""Build a development corpus of real text from what installs offline, ready for
`attnlab train translate --data DIR`.

    attnlab data bible --pair es-en --out data/bible-es-en
    attnlab data bible --pair kjv-web --out data/bible-kjv-web

`bible`: verse-aligned pairs from Debian's public-domain SWORD Bible modules (apt-get install
sword-text-web sword-text-kjv sword-text-sparv): `es-en` is Reina-Valera 1909 (Spanish) ->
World English Bible, `kjv-web` King James Version -> World English Bible (modernising Early
Modern English). Held-out splits are whole chapters (attnlab.data.bible; Resnik, Olsen and
Diab 1999, "The Bible as a parallel corpus"). DIR gets {train,valid,test}.{src,tgt} and a
README.txt. A DIR that holds files is refused unless --overwrite, which replaces the corpus
files (of any pair) and leaves other files alone.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from attnlab.data.bible import PAIRS, BibleCorpus, build_bible_corpus
from attnlab.data.parallel import SPLITS
from attnlab.data.sword import SWORD_ROOT
from attnlab.errors import FolderError
from attnlab.training.run_folder import remove_path

TIME_BUDGET = 600  # seconds, in the training command printed at the end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    corpora = parser.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    bible = corpora.add_parser(
        "bible", help="verse-aligned Bible translations (Debian's sword-text-* packages)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bible.add_argument("--pair", required=True, choices=sorted(PAIRS),
                       help="; ".join(f"{name}: {PAIRS[name][4]}" for name in sorted(PAIRS)))
    bible.add_argument("--out", required=True, metavar="DIR", help="the corpus folder to write")
    bible.add_argument("--overwrite", action="store_true",
                       help="replace the corpus files in a DIR that already holds files")
    bible.add_argument("--sword-root", default=str(SWORD_ROOT), metavar="DIR",
                       help="where the SWORD modules are installed (mods.d/ and modules/)")


def corpus_files() -> set[str]:
    """Every file name a Bible corpus of any pair writes."""
    langs = {lang for pair in PAIRS.values() for lang in pair[2:4]}
    return {f"{split}.{lang}" for split in SPLITS for lang in langs} | {"README.txt"}


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a folder that holds anything without --overwrite; nothing is written."""
    if out.exists() and not out.is_dir():
        raise FolderError(f"--out {out} is a file; expected a folder for the corpus")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise FolderError(f"--out {out} already holds files ({shown}); expected an empty or new "
                          "folder; add --overwrite to replace the corpus files there")


def next_command(corpus: BibleCorpus, out: Path) -> str:
    return (f"attnlab train translate --data {shlex.quote(str(out))} --src-lang "
            f"{corpus.src_lang} --tgt-lang {corpus.tgt_lang} --time-budget {TIME_BUDGET}")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_out(out, args.overwrite)  # before the build: a refusal costs nothing
    corpus = build_bible_corpus(args.pair, Path(args.sword_root))
    written = {f"{split}.{lang}" for split in corpus.splits
               for lang in (corpus.src_lang, corpus.tgt_lang)} | {"README.txt"}
    if out.is_dir():  # --overwrite: no file of another pair is left beside the new ones,
        for name in sorted(corpus_files() - written):  # which replace theirs atomically
            remove_path(out / name)
    corpus.write(out)
    sizes = ", ".join(f"{split} {len(pairs):,}" for split, pairs in corpus.splits.items())
    print(f"wrote {out}: {PAIRS[args.pair][4]}")
    print(f"  pairs: {sizes} ({len(corpus.chapters_skipped)} chapter(s) left out for different "
          "verse numbering)")
    print(f"next: {next_command(corpus, out)}")
    return 0
