"""`attnlab train lm`: learns, resumes exactly, writes a folder transformers and `generate`
load (byte-level BPE or characters), and refuses bad input clearly."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer
from torch import nn

from attnlab.cli.main import main
from attnlab.data.parallel import DataError
from attnlab.interop.hf_folder import from_pretrained
from attnlab.io import load_tokenizer
from attnlab.models import list_models
from attnlab.tasks.language_model import (
    LanguageModelTask,
    LMSettings,
    decoder_only_presets,
    encode_text,
    train_language_model,
    validation_loss,
)


def settings(text_file, out, **values):
    base = dict(text=str(text_file), out=str(out), vocab_size=300, block_size=32,
                batch_size=8, max_steps=60, warmup_steps=10, save_every=0, seed=0)
    return LMSettings(**{**base, **values})


def test_learns_and_the_folder_works_everywhere(text_file, tmp_path, capsys):
    metrics = train_language_model(settings(text_file, tmp_path / "run"))
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["valid_loss"] == history["valid_loss"] < 3.5  # uniform would be ln(300)=5.7
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "run").eval()
    ours = from_pretrained(tmp_path / "run")
    ids = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
    assert main(["generate", "--model", str(tmp_path / "run"), "--prompt", "the cat",
                 "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith("the cat")


def test_resume_equals_uninterrupted(text_file, tmp_path):
    straight = settings(text_file, tmp_path / "a", max_steps=8, save_every=4)
    train_language_model(straight)
    first = settings(text_file, tmp_path / "b", max_steps=4, save_every=4)
    train_language_model(first)
    train_language_model(settings(text_file, tmp_path / "b", max_steps=8, save_every=4),
                         resume=True)
    a, b = from_pretrained(tmp_path / "a"), from_pretrained(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0, msg=name)


def test_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\ncaf\xe9 in latin-1\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not valid UTF-8"):
        train_language_model(settings(bad, tmp_path / "x"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="holds no text"):
        train_language_model(settings(empty, tmp_path / "y"))
    with pytest.raises(ValueError, match="preset must be a decoder-only model"):
        LMSettings(text="x", preset="transformer-tiny")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a b\n")
    with pytest.raises(DataError, match="fewer than --block-size"):
        train_language_model(settings(tiny, tmp_path / "z", block_size=64))


def test_character_tokenizer_trains_and_generates(text_file, tmp_path, capsys):
    out = tmp_path / "chars"
    assert main(["train", "lm", "--text", str(text_file), "--out", str(out), "--tokenizer",
                 "chars", "--block-size", "32", "--batch-size", "8", "--max-steps", "30",
                 "--warmup-steps", "5", "--save-every", "0", "--lr", "3e-3"]) == 0
    capsys.readouterr()
    text = text_file.read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 2 + len(set(text))  # EOS, <unk>, the characters
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokenizer"] == "chars" and metrics["vocab_size"] == 2 + len(set(text))
    assert metrics["valid_loss"] < math.log(metrics["vocab_size"])  # better than uniform
    assert not {"test_loss", "corpus", "moe", "expert_load"} & set(metrics)  # a dense model
    assert main(["generate", "--model", str(out), "--prompt", "the café", "--max-new-tokens",
                 "20", "--do-sample", "--seed", "0"]) == 0
    generated = capsys.readouterr().out
    assert generated.startswith("the café") and len(generated) > len("the café\n")
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        LMSettings(text="x", tokenizer="words")


def test_one_line_with_a_tiny_block_is_an_error_not_a_loss_of_zero(tmp_path):
    """Issue 16: a one-line text with --block-size 2 reported "validation loss 0.000
    (perplexity 1.0)": its 5% held out was a single token, so nothing had been scored."""
    one_line = tmp_path / "one.txt"
    one_line.write_text("the cat sat on the warm mat\n")
    with pytest.raises(DataError, match=r"one.txt: the text has \d+ tokens and --valid-fraction "
                                        r"0.05 holds out 1, fewer than the 2 needed to score one "
                                        r"prediction; use more text or a larger "
                                        r"--valid-fraction"):
        train_language_model(settings(one_line, tmp_path / "run", block_size=2))
    out = tmp_path / "run"
    assert not out.exists()  # no model, settings or tokenizer
    assert one_line.read_text() == "the cat sat on the warm mat\n"


def test_validation_loss_refuses_a_stream_with_no_prediction():
    model = torch.nn.Linear(1, 1)  # never called: the check comes first
    with pytest.raises(DataError, match=r"the held-out stream holds 1 token\(s\): nothing to "
                                        r"score"):
        validation_loss(model, torch.tensor([5]), block_size=4)


def test_prepare_new_run_checks_the_data_and_writes_nothing(text_file, tmp_path):
    """The tokenizer-dependent checks run in `prepare_new_run`, which touches no file, so the
    run routine can call it before it creates or clears (--overwrite) a run folder."""
    one_line = tmp_path / "one.txt"
    one_line.write_text("the cat sat on the warm mat\n")
    task = LanguageModelTask(settings(one_line, tmp_path / "run", block_size=2))
    task.load_data()
    with pytest.raises(DataError, match="fewer than the 2 needed to score one prediction"):
        task.prepare_new_run()
    assert sorted(tmp_path.iterdir()) == [one_line]
    task = LanguageModelTask(settings(text_file, tmp_path / "run"))
    task.load_data()
    task.prepare_new_run()
    tokenizer, held_out = task.tokenizer, task.valid
    assert sorted(tmp_path.iterdir()) == [one_line]
    (tmp_path / "run").mkdir()
    task.new_model(tmp_path / "run")  # builds on what was prepared, trains nothing again
    assert task.tokenizer is tokenizer and task.valid is held_out


# -- builtin:web ------------------------------------------------------------------------------

@pytest.fixture
def small_web(monkeypatch):
    """builtin:web made small: a few chapters per book (the held-out books' verses use a
    character, "ž", the train books never do), patched in where the task and prepare read it."""
    import random

    from attnlab.data import web_corpus
    from attnlab.tasks import language_model, lm_prepare

    rng = random.Random(0)
    words = "the man sat on a hill while his son ran after a red ox near a well".split()
    held = set(web_corpus.VALID_BOOKS) | set(web_corpus.TEST_BOOKS)
    verses = {}
    for book in ("Gen", *web_corpus.VALID_BOOKS, "Ps", *web_corpus.TEST_BOOKS, "Acts"):
        for chapter in range(1, (12 if book not in held else 3) + 1):
            for verse in range(1, 9):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 10)))
                verses[(f"{book}.{chapter}", verse)] = text + (" ž." if book in held else ".")
    corpus = web_corpus.split_verses(verses)
    for module in (language_model, lm_prepare):
        monkeypatch.setattr(module, "load_web", lambda: corpus)
    return corpus


def test_builtin_web_holds_out_books_and_reports_the_test_loss(small_web, tmp_path):
    out = tmp_path / "run"
    metrics = train_language_model(settings("builtin:web", out, tokenizer="chars",
                                            max_steps=20))
    saved = json.loads((out / "metrics.json").read_text())
    ours = load_tokenizer(out)
    assert ours.token_to_id("ž") is None  # trained on the train books alone
    valid = encode_text(ours, list(small_web.lines["valid"]))
    test = encode_text(ours, list(small_web.lines["test"]))
    assert saved["valid_stream_tokens"] == valid.numel()  # the books, not a tail
    assert saved["test_stream_tokens"] == test.numel()
    assert saved["train_stream_tokens"] == encode_text(
        ours, list(small_web.lines["train"])).numel()
    assert metrics["test_loss"] == saved["test_loss"] < math.log(saved["vocab_size"])
    assert saved["test_perplexity"] == pytest.approx(math.exp(saved["test_loss"]))
    assert saved["corpus"] == {"name": "builtin:web", "valid_books": list(
        small_web.books["valid"]), "test_books": list(small_web.books["test"])}
    assert json.loads((out / "run.json").read_text())["data"] == {}  # recorded by name
    assert json.loads((out / "train_settings.json").read_text())["text"] == "builtin:web"
    train_language_model(settings("builtin:web", out, tokenizer="chars", max_steps=22),
                         resume=True)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 22


def test_a_prepared_builtin_web_keeps_its_held_out_books(small_web, tmp_path, capsys):
    prepared = tmp_path / "web-prepared"
    assert main(["prepare", "lm", "--text", "builtin:web", "--out", str(prepared),
                 "--vocab-size", "300", "--no-progress"]) == 0
    assert "next: attnlab train lm --text" in capsys.readouterr().out
    memory = LanguageModelTask(settings("builtin:web", tmp_path / "a"))
    memory.load_data()
    memory.prepare_new_run()
    disk = LanguageModelTask(settings(str(prepared), tmp_path / "b"))
    disk.load_data()
    disk.prepare_new_run()
    for name in ("train", "valid", "test"):  # the same streams, token for token
        assert torch.equal(getattr(disk, name).long(), getattr(memory, name)), name
    metrics = train_language_model(settings(str(prepared), tmp_path / "run", max_steps=5))
    assert metrics["test_stream_tokens"] == memory.test.numel()
    assert metrics["corpus"]["name"] == "builtin:web"


def test_presets_include_mixtral_and_validation_is_batched_exactly(text_file):
    assert set(list_models("mixtral")) <= set(decoder_only_presets())
    torch.manual_seed(0)
    from attnlab.models import build_model

    model = build_model("gpt2-tiny", vocab_size=50, max_seq_len=64, bos_token_id=0,
                        eos_token_id=0)
    stream = torch.randint(0, 50, (200,))  # 6 full windows of 33 tokens and a tail of 9
    one_at_a_time = validation_loss(model, stream, 32, batch_size=1)
    assert validation_loss(model, stream, 32, batch_size=4) == pytest.approx(one_at_a_time,
                                                                            rel=1e-6)
    with torch.no_grad():  # every token but the first predicted once
        logits = torch.cat([model(stream[i:i + 33][None]).logits[0, :-1]
                            for i in range(0, 199, 32)])
    expected = torch.nn.functional.cross_entropy(logits[:199], stream[1:200])
    assert one_at_a_time == pytest.approx(expected.item(), rel=1e-5)


def test_valid_windows_score_fixed_evenly_spaced_windows_by_the_lm_loss():
    torch.manual_seed(0)
    from attnlab.models import build_model

    model = build_model("llama-tiny", vocab_size=50, d_model=16, n_layers=1, n_heads=2,
                        n_kv_heads=2, d_ff=32)
    stream = torch.randint(0, 50, (300,))
    got = validation_loss(model, stream, block_size=16, batch_size=2, windows=5)
    starts = torch.linspace(0, 300 - 17, 5).round().long()
    with torch.no_grad():
        expected = sum(float(model(stream[i:i + 17][None], labels=stream[i:i + 17][None]).loss)
                       for i in starts) / 5
    assert got == pytest.approx(expected, rel=1e-5)

    class Routed(nn.Module):  # an MoE-like output: loss = lm_loss + aux
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, ids, labels=None):
            return type("Out", (), {"loss": torch.tensor(9.0), "lm_loss": torch.tensor(2.0)})

    assert validation_loss(Routed(), stream, 16, windows=4) == pytest.approx(2.0)
    with pytest.raises(DataError, match="fewer than --block-size 16 \\+ 1"):
        validation_loss(model, stream[:10], 16, windows=4)




def test_the_schedule_decays_to_the_end_the_time_budget_allows(text_file, tmp_path):
    """With --time-budget the cosine ends at the steps the plan expects (not at max_steps,
    which a budgeted run never reaches); without one it ends at max_steps."""
    from attnlab.training.plan import StepPlan

    budgeted = LanguageModelTask(settings(text_file, tmp_path / "a", max_steps=10**9,
                                          time_budget=60.0, warmup_steps=10, lr=1e-3))
    budgeted.plan = plan = StepPlan(10**9, 60.0)
    plan.total = 200  # what the plan measured the budget allows
    assert budgeted.lr(10) == pytest.approx(1e-3)
    assert budgeted.lr(200) == pytest.approx(1e-4)
    assert 1e-4 < budgeted.lr(105) < 1e-3
    fixed = LanguageModelTask(settings(text_file, tmp_path / "b", max_steps=200,
                                       warmup_steps=10, lr=1e-3))
    fixed.plan = StepPlan(200)
    assert fixed.lr(200) == pytest.approx(1e-4)


@pytest.mark.parametrize("preset", ["mamba-tiny", "rwkv-tiny", "retnet-tiny", "lstm-lm-tiny"])
def test_recurrent_families_train_and_generate_from_the_cli(text_file, tmp_path, capsys,
                                                            preset):
    """`attnlab train lm --preset <recurrent>` then `attnlab generate` on its folder: the
    recurrent families go through the one run routine and the one generate."""
    out = tmp_path / preset
    assert main(["--threads", "1", "train", "lm", "--text", str(text_file), "--out", str(out),
                 "--preset", preset, "--tokenizer", "chars", "--block-size", "32",
                 "--batch-size", "8", "--max-steps", "12", "--warmup-steps", "2",
                 "--save-every", "0", "--lr", "3e-3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid_loss"] < math.log(metrics["vocab_size"])  # better than uniform
    model = from_pretrained(out)
    assert model.recurrent and model.new_cache().layers[0].self_attn.nbytes == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "the cat", "--max-new-tokens",
                 "12", "--num-beams", "2"]) == 0
    generated = capsys.readouterr().out
    assert generated.startswith("the cat") and len(generated) > len("the cat\n")
