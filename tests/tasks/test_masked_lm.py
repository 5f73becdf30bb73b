"""`attnlab train mlm`: BERT's corruption rule, learning, exact resume, a transformers folder."""

from __future__ import annotations

import random

import pytest
import torch

from attnlab.cli.main import main
from attnlab.errors import DataError
from attnlab.interop.hf_folder import from_pretrained
from attnlab.tasks.masked_lm import (
    CLS,
    MASK,
    MLMSettings,
    evaluate,
    mask_tokens,
    train_masked_lm,
)


def test_mask_tokens_follows_80_10_10():
    ids = torch.randint(10, 1000, (200, 101))
    ids[:, 0] = CLS
    inputs, labels = mask_tokens(ids, 1000, 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert not chosen[:, 0].any()
    assert abs(chosen.float().mean().item() - 0.15 * 100 / 101) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (inputs[chosen] == MASK).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02
    assert torch.equal(inputs[~chosen], ids[~chosen])


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = random.Random(0)
    pairs = [("the king", "rules"), ("a dog", "barks"), ("the bird", "sings"), ("a cat", "purrs")]
    lines = [" ".join(rng.choice(pairs)) + " ." for _ in range(600)]
    path = tmp_path_factory.mktemp("mlm") / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings(text_file, out, **values):
    return MLMSettings(**{**dict(text=str(text_file), out=str(out), vocab_size=300,
                                 block_size=32, batch_size=16, max_steps=120, warmup_steps=10,
                                 save_every=0, lr=3e-3), **values})


def test_learns_and_transformers_loads_the_folder(text_file, tmp_path, capsys):
    assert main(["train", "mlm", "--text", str(text_file), "--out", str(tmp_path / "run"),
                 "--vocab-size", "300", "--block-size", "32", "--batch-size", "16",
                 "--max-steps", "800", "--warmup-steps", "50", "--lr", "1e-3",
                 "--save-every", "0"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("masked-token accuracy ")[1].split("%")[0]) / 100
    assert accuracy > 0.4  # 4 repeated phrases; always guessing the commonest token: ~0.2
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path / "run").eval()
    ours = from_pretrained(tmp_path / "run")
    ids = torch.randint(4, 260, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_resume_equals_uninterrupted(text_file, tmp_path):
    train_masked_lm(settings(text_file, tmp_path / "a", max_steps=6, save_every=3))
    train_masked_lm(settings(text_file, tmp_path / "b", max_steps=3, save_every=3))
    train_masked_lm(settings(text_file, tmp_path / "b", max_steps=6, save_every=3),
                    resume=True)
    a, b = from_pretrained(tmp_path / "a"), from_pretrained(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0, msg=name)


def test_a_held_out_part_with_nothing_to_predict_is_an_error(tmp_path):
    """The mlm side of issue 16's "validation loss 0.000": a held-out part too short to hold a
    prediction stops the run before anything is written."""
    one_line = tmp_path / "one.txt"
    one_line.write_text("the king rules the land and the dog barks .\n")
    with pytest.raises(DataError, match=r"one.txt: the text has \d+ tokens and --valid-fraction "
                                        r"0.05 holds out 1, fewer than the 2 needed"):
        train_masked_lm(settings(one_line, tmp_path / "run", block_size=4))
    out = tmp_path / "run"
    assert not out.exists()


def test_evaluate_refuses_batches_that_choose_no_position():
    batch = {"input_ids": torch.tensor([[CLS, 7, 8]]), "labels": torch.full((1, 3), -100)}
    with pytest.raises(DataError, match="the held-out batches choose no position to predict"):
        evaluate(torch.nn.Linear(1, 1), [batch])
    with pytest.raises(ValueError, match=r"block_size must hold \[CLS\] and a token \(>= 2\), "
                                         r"got 1"):
        MLMSettings(text="x", block_size=1)
