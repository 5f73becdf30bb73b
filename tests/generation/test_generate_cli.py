"""`attnlab generate` and `attnlab translate` on saved folders of every model kind: a T5 folder
with its own tokenizer (T5's special ids), an attnlab Transformer folder, a GPT-2 folder with
beam search, and a BERT folder, refused by its declared kind."""

from __future__ import annotations

import io

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, processors

from attnlab.cli.main import main
from attnlab.models import build_model
from attnlab.models.io import save_pretrained
from attnlab.tasks.translation import translate
from attnlab.tokenizers import Tokenizer

WORDS = "the a house dog cat is big small red green and runs sleeps translate English German :"


def t5_tokenizer() -> HFTokenizer:
    """A word-level tokenizer with T5's special ids (<pad>=0, </s>=1, <unk>=2) that appends
    </s> to every input, as T5's tokenizer.json does."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in WORDS.split():
        vocab.setdefault(word, len(vocab))
    tokenizer = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)])
    return tokenizer


def decoded(tokenizer: HFTokenizer, ids: list[int], eos: int, drop: set[int]) -> str:
    ids = ids[: ids.index(eos)] if eos in ids else ids
    return tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5")
    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    model = build_model("t5-tiny", vocab_size=tokenizer.get_vocab_size()).eval()
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder, model, tokenizer


def test_generate_on_a_t5_folder_prints_its_output(t5_folder, capsys):
    folder, model, tokenizer = t5_folder
    prompt = "translate English to German : the big dog runs"
    ids = tokenizer.encode(prompt).ids
    assert ids[-1] == model.config.eos_token_id  # the tokenizer appended </s>
    for flags, settings in (([], {}), (["--num-beams", "3"], dict(num_beams=3))):
        assert main(["generate", "--model", str(folder), "--prompt", prompt,
                     "--max-new-tokens", "6", *flags]) == 0
        out = model.generate(torch.tensor([ids]), max_new_tokens=6, **settings)[0].tolist()
        expected = decoded(tokenizer, out, model.config.eos_token_id, {0})
        assert capsys.readouterr().out == expected + "\n"
    assert main(["generate", "--model", str(folder), "--prompt", prompt, "--do-sample",
                 "--seed", "0", "--top-k", "5", "--max-new-tokens", "4"]) == 0


def test_translate_on_a_t5_folder(t5_folder, capsys):
    folder, model, tokenizer = t5_folder
    sentences = ["translate English to German : the cat sleeps", "a red house"]
    assert main(["translate", "--model", str(folder), "--beam-size", "2", *sentences]) == 0
    expected = []
    for sentence in sentences:
        ids = tokenizer.encode(sentence).ids
        out = model.generate(torch.tensor([ids]), num_beams=2, max_new_tokens=len(ids) + 50)
        expected.append(decoded(tokenizer, out[0].tolist(), 1, {0}).strip())
    assert capsys.readouterr().out.splitlines() == expected


@pytest.mark.parametrize("preset", ["transformer-tiny", "rnn-luong-tiny", "convs2s-tiny"])
def test_translate_and_generate_on_an_attnlab_translation_folder(tmp_path, capsys, preset):
    text = [f"{w} {v} {w}" for w in WORDS.split() for v in WORDS.split()[:5]]
    tokenizer = Tokenizer.train_bpe(text, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    model = build_model(preset, vocab_size=tokenizer.vocab_size).eval()
    save_pretrained(model, tmp_path)
    tokenizer.save(tmp_path / "tokenizer.json")
    sentences = ["the dog runs", "a green cat sleeps"]
    assert main(["translate", "--model", str(tmp_path), *sentences]) == 0
    assert capsys.readouterr().out.splitlines() == translate(model, tokenizer, sentences)
    assert main(["generate", "--model", str(tmp_path), "--prompt", "the dog runs",
                 "--max-new-tokens", "5"]) == 0
    source = tokenizer.encode("the dog runs", add_eos=True)  # sources end with </s>
    out = model.generate(torch.tensor([source]), max_new_tokens=5)[0].tolist()
    assert capsys.readouterr().out == tokenizer.decode(out) + "\n"


def test_generate_beam_search_on_a_decoder_only_folder(tmp_path, capsys):
    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    model = build_model("gpt2-tiny", vocab_size=tokenizer.get_vocab_size(), bos_token_id=1,
                        eos_token_id=1).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert main(["generate", "--model", str(tmp_path), "--prompt", "the big dog",
                 "--num-beams", "3", "--max-new-tokens", "4"]) == 0
    prompt = tokenizer.encode("the big dog").ids
    out = model.generate(torch.tensor([prompt]), num_beams=3, max_new_tokens=4)[0]
    continuation = decoded(tokenizer, out[len(prompt):].tolist(), 1, set())
    assert capsys.readouterr().out == "the big dog" + continuation + "\n"
    # translate: a decoder-only model continues each line (beam search, length + 50 at most)
    assert main(["translate", "--model", str(tmp_path), "--beam-size", "2", "the big dog"]) == 0
    out = model.generate(torch.tensor([prompt]), num_beams=2, max_new_tokens=len(prompt) + 50)
    continuation = decoded(tokenizer, out[0, len(prompt):].tolist(), 1, set()).strip()
    assert capsys.readouterr().out == continuation + "\n"


@pytest.mark.parametrize("command", [["generate", "--prompt", "the dog"], ["translate", "a b"]])
def test_an_encoder_only_folder_is_refused_by_its_kind(tmp_path, capsys, command):
    build_model("bert-tiny").save_pretrained(tmp_path)
    assert main([command[0], "--model", str(tmp_path), *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(tmp_path) in err and "encoder-only" in err and "Bert" in err
    assert "`attnlab viz`" in err and f"`attnlab {command[0]}` cannot use it" in err


# -- input handling (issue 16): blank lines keep their place, flags are checked before output --


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    build_model("gpt2-tiny", vocab_size=tokenizer.get_vocab_size(), bos_token_id=1,
                eos_token_id=1).eval().save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_translate_keeps_blank_lines_in_place(tmp_path, capsys, monkeypatch):
    text = [f"{w} {v} {w}" for w in WORDS.split() for v in WORDS.split()[:5]]
    tokenizer = Tokenizer.train_bpe(text, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    model = build_model("transformer-tiny", vocab_size=tokenizer.vocab_size).eval()
    save_pretrained(model, tmp_path)
    tokenizer.save(tmp_path / "tokenizer.json")
    monkeypatch.setattr("sys.stdin", io.StringIO("the dog runs\n\na green cat sleeps\n   \r\n"))
    assert main(["translate", "--model", str(tmp_path)]) == 0
    first, second = translate(model, tokenizer, ["the dog runs", "a green cat sleeps"])
    assert capsys.readouterr().out.split("\n") == [first, "", second, "", ""]
    # only blank lines: as many blank lines out, nothing decoded
    monkeypatch.setattr("sys.stdin", io.StringIO("\n\n\n"))
    assert main(["translate", "--model", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "\n\n\n"


def test_translate_numbers_a_too_long_line_among_blank_lines_by_its_input_line(gpt2_folder,
                                                                                capsys):
    long = " ".join(["the big dog"] * 60)  # 181 tokens with </s>: more than max_seq_len 128
    assert main(["translate", "--model", str(gpt2_folder), "", "the dog", "", long]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sentence 4 has 181 tokens, no room left in the model's max_seq_len=128" in captured.err


@pytest.mark.parametrize("flags, message", [
    (["--do-sample", "--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--temperature", "-1"], "--temperature must be > 0, got -1.0"),
    (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
    (["--top-k", "-1"], "--top-k must be >= 0 (0 = off), got -1"),
    (["--repetition-penalty", "0"], "--repetition-penalty must be > 0 (1 = off), got 0.0"),
    (["--length-penalty", "-1"], "--length-penalty must be a finite number >= 0, got -1.0"),
    (["--do-sample", "--num-beams", "2"],
     "--do-sample needs --num-beams 1 (beam sampling is not supported), got --num-beams 2"),
    (["--num-beams", "0"], "--num-beams: expected a positive integer, got 0"),
    (["--prompt", ""], "--prompt must be non-empty text, got ''"),
    (["--prompt", "   "], "--prompt must be non-empty text, got '   '"),
    (["--max-new-tokens", "200"], "prompt length 4 + max_new_tokens 200 exceeds the model's "
                                  "context of 128 positions"),
])
def test_generate_checks_every_flag_before_writing_anything(gpt2_folder, capsys, flags, message):
    args = ["generate", "--model", str(gpt2_folder), "--prompt", "the big dog", *flags]
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own type check (--num-beams 0)
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) <= 2  # argparse adds its usage line


@pytest.mark.parametrize("model", ["missing", "bert"])
def test_generate_checks_the_folder_and_its_kind_before_writing_anything(tmp_path, capsys,
                                                                         model):
    folder = tmp_path / model
    if model == "bert":
        build_model("bert-tiny").save_pretrained(folder)
    assert main(["generate", "--model", str(folder), "--prompt", "the dog"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (f"{folder} is not a folder" if model == "missing" else "encoder-only") in captured.err


def test_translate_checks_its_flags_before_loading(tmp_path, capsys):
    assert main(["translate", "--model", str(tmp_path / "nowhere"), "--length-penalty", "-1",
                 "a b"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "length_penalty must be a finite number >= 0, got -1.0" in captured.err


@pytest.mark.parametrize("weights", ["bf16", "int8", "int4"])
def test_generate_with_lower_precision_weights(gpt2_folder, capsys, weights):
    """--weights bf16 / int8 / int4 decode the folder's model with those weights (nn/quant.py): the
    output is the model's own greedy continuation with them, and the prompt comes first."""
    from attnlab import from_pretrained
    from attnlab.nn.quant import with_weights

    assert main(["generate", "--model", str(gpt2_folder), "--prompt", "the big dog",
                 "--max-new-tokens", "5", "--weights", weights]) == 0
    tokenizer = t5_tokenizer()
    prompt = tokenizer.encode("the big dog").ids
    model = with_weights(from_pretrained(gpt2_folder), weights)
    out = model.generate(torch.tensor([prompt]), max_new_tokens=5)[0]
    continuation = decoded(tokenizer, out[len(prompt):].tolist(), 1, set())
    assert capsys.readouterr().out == "the big dog" + continuation + "\n"


def test_translate_with_int8_weights(tmp_path, capsys, monkeypatch):
    """translate takes the same --weights: an encoder-decoder decodes with int8 linear layers."""
    from attnlab import from_pretrained
    from attnlab.cli import generate as decoding
    from attnlab.nn.quant import with_weights

    converted = []
    monkeypatch.setattr(decoding, "with_weights",
                        lambda model, weights: converted.append(weights) or with_weights(
                            model, weights))

    tokenizer = t5_tokenizer()
    torch.manual_seed(0)
    build_model("transformer-tiny", vocab_size=tokenizer.get_vocab_size(), pad_token_id=0,
                bos_token_id=0, eos_token_id=1).eval().save_pretrained(tmp_path)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert main(["translate", "--model", str(tmp_path), "--weights", "int8", "--beam-size", "2",
                 "the big dog"]) == 0
    from attnlab.io import load_tokenizer
    from attnlab.nn.quant import Int8Linear
    from attnlab.tasks.translation_decode import translate

    model = with_weights(from_pretrained(tmp_path), "int8")
    assert isinstance(model.lm_head, Int8Linear)
    expected = translate(model, load_tokenizer(tmp_path), ["the big dog"], beam_size=2,
                         length_penalty=0.6)
    assert capsys.readouterr().out == expected[0] + "\n" and converted == ["int8"]


def test_generate_compiled_prints_what_eager_does(gpt2_folder, capsys, monkeypatch):
    """--compile compiles each block (dynamic shapes: the attended length grows every step) and
    the greedy continuation is the eager one."""
    from attnlab.cli import generate as decoding

    argv = ["generate", "--model", str(gpt2_folder), "--prompt", "the big dog",
            "--max-new-tokens", "6"]
    assert main(argv) == 0
    eager = capsys.readouterr().out
    compiled = []
    real = decoding.compile_blocks
    monkeypatch.setattr(decoding, "compile_blocks",
                        lambda model, dynamic, scope: compiled.append((dynamic, scope))
                        or real(model, dynamic, scope))
    assert main([*argv, "--compile"]) == 0
    assert capsys.readouterr().out == eager and compiled == [(True, "blocks")]
    with pytest.raises(SystemExit):
        main([*argv, "--compile", "everything"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_device_flag_names_what_is_wrong(gpt2_folder, capsys, monkeypatch):
    """--device cuda without a GPU is a one-line error; a model with int4 weights asked onto a
    GPU is refused naming the flag, while --device auto keeps it on the CPU."""
    import attnlab.training.device as devices

    argv = ["generate", "--model", str(gpt2_folder), "--prompt", "the big dog",
            "--max-new-tokens", "3"]
    if not torch.cuda.is_available():
        assert main([*argv, "--device", "cuda"]) == 2
        assert "torch sees no CUDA GPU" in capsys.readouterr().err
    real = devices.resolve_device
    monkeypatch.setattr(devices, "resolve_device",
                        lambda device: torch.device("cuda") if device != "cpu" else real(device))
    assert main([*argv, "--weights", "int4", "--device", "cuda"]) == 2
    assert "--device cuda: int4 weights run on the CPU only" in capsys.readouterr().err
    assert main([*argv, "--weights", "int4"]) == 0  # auto: stays on the CPU
    assert capsys.readouterr().out.startswith("the big dog")
