"""A reader for Bible texts in the SWORD project's compressed zText format (crosswire.org), the
form Debian ships them in (`sword-text-web`, `sword-text-kjv`, `sword-text-sparv`): real text
that installs offline, for the translation development corpus (`data/bible.py`) and English
language modelling.

A module is a folder with, per testament (`ot`, `nt`), three files:

- `.bzs`: the block index, one (offset, compressed size, uncompressed size) uint32 triple per
  zlib-compressed block of `.bzz`;
- `.bzv`: the verse index, one (block uint32, offset uint32, size uint16) entry per slot of the
  module's versification: a module heading, then per book a heading slot, per chapter a heading
  slot and one slot per verse (empty where the text has no such verse);
- `.bzz`: the compressed blocks of OSIS XML.

Verses are keyed by the OSIS chapter id the text itself carries (`<chapter osisID="Matt.2"
sID=...>` in the chapter's heading slot) and their slot number after it, so two modules with
different versifications (KJV, NRSVA) are aligned by name, not by position. Notes, section
titles and cross-references are dropped with their content; word markup (Strong's numbers,
added words, red letters) keeps its words.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from attnlab.errors import DataError, MissingFileError

SWORD_ROOT = Path("/usr/share/sword")  # where Debian's sword-text-* packages install
TESTAMENTS = ("ot", "nt")

_DROPPED = re.compile(r"<(note|title|reference)\b[^>]*?(?<!/)>.*?</\1>", re.S)
# Tags between words: some modules put no space around them (`nada<transChange>alcanza`).
_BREAK_TAGS = re.compile(
    r"</?(div|milestone|lb|l|lg|p|chapter|verse|list|item|transChange)\b[^>]*>")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?)\]”])")  # ) ] and a closing quote
_SPACE_AFTER_OPENING = re.compile(r"([(\[¿¡“])\s+")  # ( [ ¿ ¡ and an opening quote
# A USFM character marker left in the OSIS by the converter (`\nd ` before the KJV's JEHOVAH).
_USFM_MARKER = re.compile(r"\\[a-z]+[0-9]*\*?")
_BOOK_END = re.compile(r'<div\b[^>]*\beID="[^"]*"[^>]*\btype="book"[^>]*>|'
                       r'<div\b[^>]*\btype="book"[^>]*\beID="[^"]*"[^>]*>')
_TAG = re.compile(r"<[^>]+>")
_BOOK_START = re.compile(r'<div\b[^>]*\btype="book"[^>]*>')
_CHAPTER_START = re.compile(r'<chapter\b[^>]*\bsID="[^"]*"[^>]*>')
_OSIS_ID = re.compile(r'osisID="([^"]+)"')
_START_ID = re.compile(r'\bsID="')
_MARKS = str.maketrans("", "", "\u00b6")  # pilcrow paragraph marks of the KJV


def module_path(module: str, root: Path = SWORD_ROOT) -> Path:
    """The data folder of an installed zText module, e.g. "engWEB2015eb"."""
    confs = {p.stem.lower(): p for p in (root / "mods.d").glob("*.conf")} if (
        root / "mods.d").is_dir() else {}
    conf = confs.get(module.lower())
    if conf is None:
        installed = sorted(p.stem for p in confs.values())
        raise MissingFileError(
            f"SWORD module {module!r} is not installed under {root} (installed: "
            f"{installed or 'none'}); on Debian: apt-get install sword-text-web sword-text-kjv "
            "sword-text-sparv")
    for line in conf.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("DataPath="):
            return (root / line.split("=", 1)[1].strip()).resolve()
    raise DataError(f"{conf}: no DataPath= line")


def is_installed(module: str, root: Path = SWORD_ROOT) -> bool:
    """Whether `module` is installed under `root` (for callers that skip rather than fail)."""
    try:
        return module_path(module, root).is_dir()
    except (MissingFileError, DataError):
        return False


def raw_slots(folder: Path, testament: str) -> Iterator[str]:
    """The OSIS text of every slot of one testament, in index order ("" for an empty slot)."""
    paths = [folder / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz")]
    for path in paths:
        if not path.is_file():
            raise MissingFileError(f"{path}: missing (not a complete zText module)")
    index, verses, data = (p.read_bytes() for p in paths)
    blocks = [struct.unpack_from("<III", index, i) for i in range(0, len(index) - 11, 12)]
    cache: dict[int, bytes] = {}
    for i in range(0, len(verses) - 9, 10):
        block, offset, size = struct.unpack_from("<IIH", verses, i)
        if size == 0:
            yield ""
            continue
        if block not in cache:
            start, length, _ = blocks[block]
            cache = {block: zlib.decompress(data[start:start + length])}  # blocks are in order
        yield cache[block][offset:offset + size].decode("utf-8", errors="replace")


def plain_text(osis: str) -> str:
    """The readable text of one slot: notes, titles and references dropped, word markup kept,
    stray USFM markers dropped, entities decoded, whitespace collapsed (none before closing
    punctuation, none after an opening bracket, quote or Spanish ¿ ¡)."""
    end = _BOOK_END.search(osis)  # what follows a book's end is not verse text (a glossary)
    text = _DROPPED.sub(" ", osis[:end.start()] if end else osis)
    text = _BREAK_TAGS.sub(" ", text)
    text = _USFM_MARKER.sub(" ", _TAG.sub("", text))
    text = " ".join(html.unescape(text).translate(_MARKS).split())
    return _SPACE_AFTER_OPENING.sub(r"\1", _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text))


def read_verses(module: str, root: Path = SWORD_ROOT) -> dict[tuple[str, int], str]:
    """{(chapter osisID, verse number): plain text} of every non-empty verse of a module, in
    canonical order (dicts keep insertion order)."""
    folder = module_path(module, root)
    verses: dict[tuple[str, int], str] = {}
    for testament in TESTAMENTS:
        chapter, number = None, 0
        for osis in raw_slots(folder, testament):
            book = _BOOK_START.search(osis)
            if book and _START_ID.search(book.group(0)):
                chapter = None  # a book's heading slot: its chapters come next
            heading = _CHAPTER_START.search(osis)
            if heading:
                found = _OSIS_ID.search(heading.group(0))
                chapter, number = (found.group(1) if found else None), 0
                continue
            if chapter is None:
                continue
            number += 1
            text = plain_text(osis)
            if text:
                verses[(chapter, number)] = text
    return verses
