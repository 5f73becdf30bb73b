"""OPUS-MT (Marian) tokenizer folders (source.spm, target.spm, vocab.json) against transformers'
MarianTokenizer: tiny SentencePiece unigram models trained here (English-like source,
German-like target), vocab.json their union with Marian's ids, then ids and decoded text
compared on awkward sentences, and `attnlab translate` / `attnlab generate` on a MarianMTModel
folder against MarianMTModel.generate (greedy)."""

from __future__ import annotations

import io
import json
import random
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

import attnlab  # noqa: E402
from attnlab.cli.main import main  # noqa: E402
from attnlab.errors import FolderError, MissingFileError  # noqa: E402
from attnlab.io import load_tokenizer  # noqa: E402

SOURCE_WORDS = ("the old young farmer teacher sells buys red green apples houses quickly today "
                "café naïve résumé 12 345 2024 , . ? !").split()
TARGET_WORDS = ("der die das alte junge Bauer Lehrer verkauft kauft rote grüne Äpfel Häuser "
                "schnell heute Straße über Ökonom 12 345 2024 , . ? !").split()
SENTENCES = [
    "the old farmer sells red apples .", "The Old FARMER, today!", "café naïve résumé",
    "  leading and trailing spaces  ", "many    inner     spaces", "digits 12 345 2024 9876",
    "unknown ☃ 😀 字 characters", "Straße über Ökonom", "ß ü Ö", "ßßß ü aßßa ÄÖÜ ☃ß",
    "tabs\tand\nnewlines",
    "a </s> in the middle", "<unk> and <pad> written out", ">>deu<< the teacher buys apples",
    "▁already escaped", "x", "", "   ", "full-width ＡＢＣ ａｂｃ and ligature ﬁ", "zzzz qqq",
]


def sentences(words: tuple[str, ...], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]


def train_spm(words: tuple[str, ...], seed: int) -> bytes:
    """A unigram model with Marian's ids (</s> 0, <unk> 1, no <s>) and the default nmt_nfkc
    normalisation, trained on a few hundred generated sentences."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences(words, 400, seed)), model_writer=model, vocab_size=90,
        model_type="unigram", character_coverage=1.0, eos_id=0, unk_id=1, bos_id=-1,
        pad_id=-1, hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def piece_names(model: bytes) -> list[str]:
    processor = spm.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """source.spm, target.spm and vocab.json as an OPUS-MT folder holds them: the union of
    both models' pieces (shuffled, so no id is a SentencePiece id), </s> 0, <unk> 1, a
    language code, <pad> last (transformers' conversion script adds it)."""
    directory = tmp_path_factory.mktemp("opus")
    source, target = train_spm(SOURCE_WORDS, 0), train_spm(TARGET_WORDS, 1)
    (directory / "source.spm").write_bytes(source)
    (directory / "target.spm").write_bytes(target)
    pieces = [p for p in dict.fromkeys(piece_names(source) + piece_names(target))
              if p not in ("</s>", "<unk>")]
    random.Random(2).shuffle(pieces)
    vocab = {p: i for i, p in enumerate(["</s>", "<unk>", *pieces, ">>deu<<", "<pad>"])}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"source_lang": "en", "target_lang": "de", "separate_vocabs": False}))
    return directory


@pytest.fixture(scope="module")
def marian(folder):
    with pytest.warns(UserWarning, match="sacremoses"):
        return transformers.MarianTokenizer(str(folder / "source.spm"),
                                            str(folder / "target.spm"), str(folder / "vocab.json"))


def corpus() -> list[str]:
    return SENTENCES + sentences(SOURCE_WORDS, 100, 7) + sentences(TARGET_WORDS, 50, 8)


def test_source_ids_equal_marian_tokenizers(folder, marian):
    ours = load_tokenizer(folder)
    for text in corpus():
        expected = marian(text)["input_ids"]
        assert ours.encoding(text).ids == expected, text
        assert ours.encode(text, add_eos=True) == expected, text
    assert ours.encode_batch(SENTENCES, add_eos=True) == [marian(t)["input_ids"]
                                                          for t in SENTENCES]


def test_the_test_reaches_unknown_and_target_only_pieces(folder, marian):
    """The sentences above exercise what a vocabulary union makes hard: <unk>, and characters
    the source model lacks but the target's pieces spell (ß, Ö), which MarianTokenizer looks up
    by their surface: alone the target's piece, in a run ("ßß") one <unk>."""
    vocab = json.loads((folder / "vocab.json").read_text())
    source = set(piece_names((folder / "source.spm").read_bytes()))
    ids = [i for text in SENTENCES for i in marian(text)["input_ids"]]
    assert vocab["<unk>"] in ids
    target_only = {i for p, i in vocab.items() if p not in source}
    assert target_only & set(ids)
    assert "ß" not in source and "ß" in vocab and "ßß" not in vocab
    run, alone = marian("aßßa")["input_ids"], marian("a ß")["input_ids"]
    assert vocab["<unk>"] in run and vocab["ß"] not in run
    assert vocab["ß"] in alone and vocab["<unk>"] not in alone


def test_roles_and_special_ids(folder):
    ours = load_tokenizer(folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    assert (ours.eos_id, ours.unk_id, ours.pad_id, ours.bos_id) == (0, 1, vocab["<pad>"], None)
    assert ours.vocab_size == len(vocab)


@pytest.mark.parametrize("use_source", [True, False], ids=["source-spm", "target-spm"])
def test_decode_equals_marian_tokenizers(folder, marian, use_source):
    """Target ids (encoded target sentences, then random ids without </s> and <pad>) decode as
    MarianTokenizer.decode(skip_special_tokens=True) does, through either SentencePiece model:
    decoding pieces to text does not depend on the model."""
    ours = load_tokenizer(folder)
    targets = [marian(text_target=t)["input_ids"][:-1] for t in sentences(TARGET_WORDS, 30, 9)]
    rng = random.Random(3)
    pool = [i for i in range(ours.vocab_size) if i not in (ours.eos_id, ours.pad_id)]
    noise = [[rng.choice(pool) for _ in range(rng.randint(1, 25))] for _ in range(200)]
    for ids in targets + noise:
        expected = marian.decode(ids, skip_special_tokens=True, use_source_tokenizer=use_source)
        assert ours.decode(ids) == expected, ids
    assert ours.decode(targets[0] + [ours.eos_id, 5, 6]) == ours.decode(targets[0])


def test_folder_with_tokenizer_json_keeps_it_and_bad_files_are_named(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "vocab.json").write_text(json.dumps({"</s>": 0, "<unk>": 5}))
    with pytest.raises(FolderError, match="ids must be 0..1"):
        load_tokenizer(bad)
    (bad / "vocab.json").write_text(json.dumps({"</s>": 0, "x": 1}))
    with pytest.raises(FolderError, match="unknown token '<unk>'"):
        load_tokenizer(bad)
    (bad / "source.spm").write_bytes(b"not a model")
    with pytest.raises(FolderError, match="source.spm"):
        load_tokenizer(bad)
    (bad / "source.spm").unlink()
    with pytest.raises(MissingFileError):
        load_tokenizer(bad)
    load_tokenizer(folder).save(bad)  # a tokenizer.json wins over the SentencePiece files
    assert load_tokenizer(bad).vocab_size == load_tokenizer(folder).vocab_size


def marian_model(folder, tmp_path):
    """A random MarianMTModel over the folder's vocabulary, saved with its tokenizer files."""
    vocab = json.loads((folder / "vocab.json").read_text())
    pad = vocab["<pad>"]
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=128, pad_token_id=pad,
        decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=None, init_std=0.5,
        dropout=0.0)
    hf = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_(0.0, 0.1)
        hf.final_logits_bias[0, 0] += 1.5  # some outputs end with </s> before the limit
        for stack in (hf.model.encoder, hf.model.decoder):
            stack.embed_tokens.weight.copy_(hf.model.shared.weight)
    out = tmp_path / "opus"
    hf.save_pretrained(out)
    for name in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json"):
        shutil.copy(folder / name, out / name)
    return hf, out


@pytest.mark.parametrize("command, text", [("translate", "Straße über café 😀"),
                                           ("generate", "the old farmer sells red apples .")])
def test_cli_prints_marian_greedy_output(folder, marian, tmp_path, capsys, command, text):
    """`attnlab translate --beam-size 1` (at most the source length + 50 new tokens) and
    `attnlab generate` print MarianTokenizer's decoding of MarianMTModel's greedy output."""
    hf, out = marian_model(folder, tmp_path)
    assert attnlab.from_pretrained(out).config.vocab_size == hf.config.vocab_size
    ids = marian([text], return_tensors="pt")
    if command == "translate":
        argv, max_new = [command, "--model", str(out), "--beam-size", "1", text], \
            ids["input_ids"].shape[1] + 50
    else:
        argv, max_new = [command, "--model", str(out), "--prompt", text,
                         "--max-new-tokens", "20"], 20
    with torch.no_grad():
        expected = hf.generate(**ids, num_beams=1, do_sample=False, max_new_tokens=max_new)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed == marian.decode(expected[0], skip_special_tokens=True) + "\n"
    assert printed.strip()  # a real output, not an empty line that would match anything
