"""The SWORD zText reader (attnlab.data.sword): OSIS to plain text on hand-made snippets, and
the compressed index read from a tiny module written here with struct + zlib, so none of it
needs Debian's sword-text-* packages.

`write_module` is also used by tests/data/test_bible.py.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from attnlab.data.sword import module_path, plain_text, raw_slots, read_verses
from attnlab.errors import DataError, MissingFileError

# book -> chapters -> verse slots (OSIS; "" for a verse the text does not have)
Books = dict[str, list[list[str]]]


def slots_of(books: Books) -> list[str]:
    """The slots of one testament in a module's versification order: two module heading slots,
    then per book a heading slot, per chapter a heading slot and its verses."""
    slots = ["", '<milestone type="x-importer" subType="x-osis2mod"/>']
    for book, chapters in books.items():
        slots.append(f'<div canonical="true" osisID="{book}" sID="b-{book}" type="book"/> '
                     f'<title type="main">The Book of {book}</title>')
        for number, verses in enumerate(chapters, 1):
            slots.append(f'<chapter n="{number}" osisID="{book}.{number}" '
                         f'sID="{book}.{number}"/>')
            slots.extend(verses)
    return slots


def write_zbooks(folder: Path, testament: str, slots: list[str], per_block: int = 2) -> None:
    """`{testament}.bzs/.bzv/.bzz`: `per_block` non-empty slots per zlib block."""
    index, verses, data = bytearray(), bytearray(), bytearray()
    block: list[bytes] = []

    def flush() -> None:
        raw = b"".join(block)
        packed = zlib.compress(raw)
        index.extend(struct.pack("<III", len(data), len(packed), len(raw)))
        data.extend(packed)
        block.clear()

    for slot in slots:
        text = slot.encode("utf-8")
        if not text:
            verses.extend(struct.pack("<IIH", 0, 0, 0))
            continue
        if len(block) == per_block:
            flush()
        offset = sum(len(b) for b in block)
        verses.extend(struct.pack("<IIH", len(index) // 12, offset, len(text)))
        block.append(text)
    if block:
        flush()
    folder.mkdir(parents=True, exist_ok=True)
    for ext, content in (("bzs", index), ("bzv", verses), ("bzz", data)):
        (folder / f"{testament}.{ext}").write_bytes(bytes(content))


def write_module(root: Path, name: str, ot: Books, nt: Books) -> Path:
    """A zText module `name` under `root` (mods.d/<name>.conf + its data folder)."""
    data_path = f"./modules/texts/ztext/{name.lower()}/"
    (root / "mods.d").mkdir(parents=True, exist_ok=True)
    (root / "mods.d" / f"{name.lower()}.conf").write_text(
        f"[{name}]\nDataPath={data_path}\nModDrv=zText\nEncoding=UTF-8\n", encoding="utf-8")
    for testament, books in (("ot", ot), ("nt", nt)):
        write_zbooks(root / data_path, testament, slots_of(books))
    return root / data_path


# -- plain_text ---------------------------------------------------------------------------

@pytest.mark.parametrize("osis, expected", [
    # a footnote and its reference go with their content; the words around stay apart
    ('<w lemma="strong:H0430">God</w><note placement="foot"><reference type="annotateRef">1:1'
     ' </reference>The Hebrew word rendered “God” is Elohim.</note><w lemma="strong:H1254">'
     'created</w>', "God created"),
    # a section or psalm title is dropped; a self-closed title eats nothing
    ('<title type="psalm" canonical="true">A Psalm by David.</title> Blessed is the man',
     "Blessed is the man"),
    ('<title short="x"/>In the<title>Heading</title> beginning', "In the beginning"),
    # word markup (Strong's numbers, red letters) keeps its words
    ('<w lemma="strong:H7225">EN el principio</w> <w lemma="strong:H1254">crió</w> '
     '<q who="Jesus" marker=""><w lemma="strong:G2424">Dios</w></q>.',
     "EN el principio crió Dios."),
    # an added word glued to its neighbours gets a space on each side
    ('nada<transChange type="added">alcanza</transChange>todo', "nada alcanza todo"),
    ('darkness <transChange type="added">was</transChange> upon', "darkness was upon"),
    # no space before closing punctuation, none after an opening bracket or ¿ ¡
    ('the earth<note>a note</note>. And God <w>said</w> , Let there be light :',
     "the earth. And God said, Let there be light:"),
    ("Porque Dios ( dijo ella ) me ha dado ¿ no es así ? ¡ Cómo !",
     "Porque Dios (dijo ella) me ha dado ¿no es así? ¡Cómo!"),
    # entities decoded, the KJV's pilcrows and a stray USFM marker dropped
    ("¶ Salt &amp; light, by my name \\nd <w>JEHOVAH</w></divineName> was I",
     "Salt & light, by my name JEHOVAH was I"),
    # what follows a book's end (either attribute order) is a glossary, not the verse
    ('Amen. <chapter eID="Rev.22"/> <div canonical="true" eID="b1" osisID="Rev" type="book"/>'
     '<div sID="g1" type="glossary"/>Aaron: the brother of Moses.', "Amen."),
    ('Amen.<div type="book" eID="b1"/> Glossary: Abba', "Amen."),
    # a paragraph break between words is a space; an empty slot stays empty
    ('one<div type="x-p" sID="p1"/>two<lb/>three', "one two three"),
    ("", ""),
])
def test_plain_text(osis, expected):
    assert plain_text(osis) == expected


def test_plain_text_keeps_text_before_a_division_that_is_not_a_book_end():
    osis = '<div eID="p2" type="x-p"/>Then he said, Come.<div sID="p3" type="x-p"/>'
    assert plain_text(osis) == "Then he said, Come."


# -- the compressed module ----------------------------------------------------------------

OT: Books = {
    "Gen": [["In the <w>beginning</w>.", "The earth.", "Light<note>n</note>."],
            ["Finished.", "", "Rested."]],  # Gen.2.2 is a verse the text lacks
    "Exod": [["Names."]],
}
NT: Books = {"Matt": [["The book.", "Abraham."]]}


def test_raw_slots_reads_every_slot_across_blocks(tmp_path):
    slots = slots_of(OT)
    write_zbooks(tmp_path, "ot", slots, per_block=2)  # several blocks, one slot each split
    assert list(raw_slots(tmp_path, "ot")) == slots
    write_zbooks(tmp_path, "nt", slots, per_block=100)  # one block
    assert list(raw_slots(tmp_path, "nt")) == slots


def test_raw_slots_names_a_missing_file(tmp_path):
    write_zbooks(tmp_path, "ot", slots_of(OT))
    (tmp_path / "ot.bzz").unlink()
    with pytest.raises(MissingFileError, match=r"ot\.bzz: missing"):
        list(raw_slots(tmp_path, "ot"))


def test_read_verses_keys_by_chapter_and_slot(tmp_path):
    write_module(tmp_path, "tinyBible", OT, NT)
    verses = read_verses("tinybible", tmp_path)  # the name is matched without case
    assert verses == {
        ("Gen.1", 1): "In the beginning.", ("Gen.1", 2): "The earth.", ("Gen.1", 3): "Light.",
        ("Gen.2", 1): "Finished.", ("Gen.2", 3): "Rested.",  # not shifted by the empty 2
        ("Exod.1", 1): "Names.",
        ("Matt.1", 1): "The book.", ("Matt.1", 2): "Abraham.",
    }
    assert list(verses)[:3] == [("Gen.1", 1), ("Gen.1", 2), ("Gen.1", 3)]  # canonical order


def test_module_path_resolves_data_path_and_names_installed_modules(tmp_path):
    folder = write_module(tmp_path, "tinyBible", OT, NT)
    assert module_path("TINYBIBLE", tmp_path) == folder.resolve()
    with pytest.raises(MissingFileError) as error:
        module_path("engWEB2015eb", tmp_path)
    message = str(error.value)
    assert "'engWEB2015eb' is not installed" in message and "tinybible" in message
    assert "apt-get install sword-text-web sword-text-kjv sword-text-sparv" in message
    with pytest.raises(MissingFileError, match=r"installed: none"):
        module_path("engWEB2015eb", tmp_path / "empty")


def test_module_path_refuses_a_conf_without_data_path(tmp_path):
    (tmp_path / "mods.d").mkdir()
    (tmp_path / "mods.d" / "broken.conf").write_text("[broken]\nModDrv=zText\n")
    with pytest.raises(DataError, match=r"broken\.conf: no DataPath= line"):
        module_path("broken", tmp_path)
